"""TSN segment sampling: where the K windows of a video start.

Temporal Segment Networks split a video into K equal segments and take one window per
segment, so a clip covers the whole video. Training draws a random start inside each
segment; testing takes fixed, evenly spaced starts.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hidden2stream.errors import VideoError


def valid_starts(num_frames: int, window: int, video: str | Path | None = None) -> int:
    """Number of valid window starts ``0 .. num_frames - window``; a one-line :class:`VideoError`
    naming ``video`` (the file, or what part of it) when not even one window fits."""
    if window < 1:
        raise ValueError(f"window must be >= 1 frame, got {window}")
    if num_frames < window:
        frames = f"{num_frames} frame{'' if num_frames == 1 else 's'}, a window needs {window}"
        raise VideoError(f"{video} is too short: {frames}" if video is not None else f"video too short: {frames}")
    return num_frames - window + 1


def segment_starts(num_frames: int, segments: int, window: int,
                   generator: torch.Generator | None = None, video: str | Path | None = None) -> list[int]:
    """One window start per segment of the valid start range ``[0, num_frames - window]``.

    The range is split into ``segments`` equal parts; with a ``generator`` each start is
    uniform inside its part (training), without one it is the part's centre (deterministic).
    When there are fewer valid starts than segments, parts overlap and starts repeat. A video too
    short for one window is a :class:`VideoError` naming ``video``.
    """
    if segments < 1:
        raise ValueError(f"segments must be >= 1, got {segments}")
    n = valid_starts(num_frames, window, video)
    starts = []
    for k in range(segments):
        lo, hi = k * n / segments, (k + 1) * n / segments
        if generator is None:
            offset = (lo + hi) / 2
        else:
            offset = lo + torch.rand((), generator=generator).item() * (hi - lo)
        starts.append(min(int(offset), n - 1))
    return starts


def evenly_spaced_starts(num_frames: int, count: int, window: int,
                         video: str | Path | None = None) -> list[int]:
    """``count`` window starts spread evenly from the first to the last valid start (test time); a
    video too short for one window is a :class:`VideoError` naming ``video``."""
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    n = valid_starts(num_frames, window, video)
    if count == 1:
        return [(n - 1) // 2]
    return [round(k * (n - 1) / (count - 1)) for k in range(count)]


def item_generator(seed: int, index: int, epoch: int = 0) -> torch.Generator:
    """A generator seeded by ``(seed, index, epoch)``: reproducible per item, new each epoch."""
    state = np.random.SeedSequence([seed, index, epoch]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
