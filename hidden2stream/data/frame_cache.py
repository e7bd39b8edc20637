"""Decode a video once into a uint8 ``.npy`` of frames, then read windows by memory map.

Datasets read many windows of the same videos every epoch; decoding is the bottleneck, so
frames are extracted once (shorter side resized to ``short_side``) and later windows are
plain memory-mapped slices. Files are written atomically (temporary file + ``os.replace``),
so a crash or a parallel worker never leaves a half-written cache entry.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from hidden2stream.data.video import probe_video, read_frames, read_frames_uint8, scaled_size
from hidden2stream.atomic import write_atomic
from hidden2stream.errors import VideoError


def cache_path(video_path: str | Path, cache_dir: str | Path, short_side: int) -> Path:
    """Where :func:`extract_frames` stores ``video_path`` (name + hash of its absolute path)."""
    video = Path(video_path).resolve()
    digest = hashlib.sha1(str(video).encode()).hexdigest()[:10]
    return Path(cache_dir) / f"{video.stem}-{digest}-s{short_side}.npy"


def extract_frames(video_path: str | Path, cache_dir: str | Path, short_side: int) -> Path:
    """Decode every frame of ``video_path`` into uint8 ``(N, H, W, 3)`` at ``cache_dir``.

    The shorter side is resized to ``short_side`` (aspect kept). Skips the work when the
    file exists already. Raises :class:`VideoError` if the video cannot be decoded fully.
    """
    out = cache_path(video_path, cache_dir, short_side)
    if out.exists():
        return out
    info = probe_video(video_path)
    size = scaled_size(info.width, info.height, short_side)
    frames = read_frames_uint8(video_path, 0, info.num_frames, size=size, seek=False)
    return write_atomic(out, lambda handle: np.save(handle, frames))


def cached_num_frames(npy_path: str | Path) -> int:
    """Number of frames in a cache file (reads only the header)."""
    return int(np.load(npy_path, mmap_mode="r").shape[0])


def read_cached_frames(npy_path: str | Path, start: int, count: int) -> torch.Tensor:
    """Frames ``start .. start+count-1`` of a cache file -> float ``(count, 3, H, W)`` in ``[0, 1]``."""
    frames = np.load(npy_path, mmap_mode="r")
    if start < 0 or count < 1 or start + count > frames.shape[0]:
        raise VideoError(f"{npy_path} holds {frames.shape[0]} frames; "
                         f"frames {start}..{start + count - 1} requested")
    window = torch.from_numpy(np.array(frames[start:start + count]))
    return window.permute(0, 3, 1, 2).float().div_(255.0)


def read_window(video_path: str | Path, start: int, count: int, short_side: int,
                cache_dir: str | Path | None = None, seek: bool = True) -> torch.Tensor:
    """Frames ``start .. start+count-1`` with the shorter side resized to ``short_side``.

    Float ``(count, 3, H, W)`` in ``[0, 1]``. With ``cache_dir`` the video is extracted once
    (:func:`extract_frames`) and read by memory map; otherwise decoded directly with PyAV.
    """
    if cache_dir is not None:
        return read_cached_frames(extract_frames(video_path, cache_dir, short_side), start, count)
    info = probe_video(video_path)
    size = scaled_size(info.width, info.height, short_side)
    return read_frames(video_path, start, count, size=size, seek=seek)
