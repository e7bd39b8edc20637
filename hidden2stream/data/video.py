"""PyAV video decoding: probe a file and read a window of consecutive RGB frames.

Frames come back as float tensors in ``[0, 1]``, shape ``(count, 3, H, W)`` (see
docs/architecture.md). Frame ``i`` is the ``i``-th frame in presentation order.

Counting frames: container headers are unreliable (``tree.avi`` announces 444 AVI ticks but
holds 68 frames; a truncated file announces frames it no longer holds), so the frame index is
built by demuxing the packets of the video stream (no decoding, milliseconds per file): one
frame per packet carrying data. It is an exact count for intact files; a packet that fails to
decode (corrupt data) still makes :func:`read_frames` raise :class:`VideoError` for windows
that reach it. The index is cached per (path, size, mtime).

A file whose packets end before the frames its header announces (a truncated download or copy)
is logged once per process as a warning naming both counts; its frame count is what it holds.
"""
from __future__ import annotations

import bisect
import functools
import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch

from hidden2stream.errors import VideoError

__all__ = ["VideoInfo", "VideoError", "probe_video", "read_frames", "read_frames_uint8", "scaled_size",
           "warn_if_truncated"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInfo:
    """What a video holds: ``num_frames`` decodable frames (packet count) at ``fps``;
    ``announced_frames`` is set only when the file ends before the frames its header announces."""

    path: Path
    num_frames: int
    fps: float
    width: int
    height: int
    announced_frames: int | None = None


_warned: set[Path] = set()  # files (links resolved) whose truncation this process has logged


def warn_if_truncated(info: VideoInfo) -> None:
    """Log once per file and process that ``info``'s file is truncated, with both frame counts."""
    if info.announced_frames is None or info.path.resolve() in _warned:
        return
    _warned.add(info.path.resolve())
    log.warning("%s is truncated: it holds %d of the %d frames its header announces", info.path,
                info.num_frames, info.announced_frames)


def _announced_if_short(announced: int, time_base: Fraction | None, pts: list[int], fps: float) -> int | None:
    """``announced`` (the header's frame count) when the packets at ``pts`` end more than a frame
    (and 1 %) before it, else None.

    Compares time spans, not counts: a variable-rate AVI announces its time ticks
    (``tree.avi``: 444 for 68 frames spread over them), which its last packet does reach."""
    if not announced or not fps or time_base is None:
        return None
    span = float((pts[-1] - pts[0]) * time_base) * fps + 1  # frames' worth of time the packets cover
    return announced if span < announced - max(1.0, 0.01 * announced) else None


@dataclass(frozen=True)
class _FrameIndex:
    info: VideoInfo
    pts: tuple[int, ...]  # presentation timestamps of all frames, sorted (index -> pts)
    keyframes: tuple[int, ...]  # frame indices of keyframes, sorted


def _unreadable(path: Path, reason: str) -> VideoError:
    return VideoError(f"{path} is not a readable video ({reason})")


def _reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0]


@functools.lru_cache(maxsize=4096)
def _index_cached(path: str, _size: int, _mtime_ns: int) -> _FrameIndex:
    p = Path(path)
    try:
        container = av.open(path)
    except (av.error.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise _unreadable(p, _reason(exc)) from None
    with container:
        if not container.streams.video:
            raise _unreadable(p, "no video stream")
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else 0.0
        width, height = stream.codec_context.width, stream.codec_context.height
        announced, time_base = stream.frames, stream.time_base
        packets: list[tuple[int, bool]] = []
        try:
            for packet in container.demux(stream):
                if packet.size > 0 and packet.pts is not None:
                    packets.append((packet.pts, packet.is_keyframe))
        except av.error.FFmpegError:
            pass  # truncated: keep the frames demuxed so far
    if not packets:
        raise _unreadable(p, "zero frames")
    pts = sorted(t for t, _ in packets)
    keys = sorted({bisect.bisect_left(pts, t) for t, key in packets if key} | {0})
    info = VideoInfo(path=p, num_frames=len(pts), fps=fps, width=width, height=height,
                     announced_frames=_announced_if_short(announced, time_base, pts, fps))
    warn_if_truncated(info)
    return _FrameIndex(info=info, pts=tuple(pts), keyframes=tuple(keys))


def _index(path: str | Path) -> _FrameIndex:
    p = Path(path)
    try:
        stat = p.stat()
    except OSError:
        raise _unreadable(p, "file not found") from None
    if not p.is_file():
        raise _unreadable(p, "not a file")
    if stat.st_size == 0:
        raise _unreadable(p, "empty file")
    return _index_cached(str(p), stat.st_size, stat.st_mtime_ns)


def probe_video(path: str | Path) -> VideoInfo:
    """Frame count, fps and size of ``path``; one-line :class:`VideoError` if unreadable."""
    return _index(path).info


def scaled_size(width: int, height: int, short_side: int) -> tuple[int, int]:
    """``(H, W)`` with the shorter side resized to ``short_side``, keeping the aspect ratio."""
    if height <= width:
        return short_side, max(short_side, round(width * short_side / height))
    return max(short_side, round(height * short_side / width)), short_side


def _decode(path: Path, index: _FrameIndex, start: int, count: int,
            size: tuple[int, int] | None, seek: bool) -> list[np.ndarray]:
    """Decoded frames ``start .. start+count-1`` as RGB uint8 ``(H, W, 3)`` arrays."""
    fmt = {"format": "rgb24"}
    if size is not None:
        fmt.update(height=size[0], width=size[1])
    out: list[np.ndarray] = []
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            first = 0
            if seek:
                # Last keyframe at or before `start`; decoding starts there and moves forward.
                first = index.keyframes[bisect.bisect_right(index.keyframes, start) - 1]
                if first > 0:
                    container.seek(index.pts[first], stream=stream, backward=True)
            position = None
            for frame in container.decode(stream):
                if position is None:
                    # Identify the first frame by its pts; later ones by decode-order count
                    # (some AVI files attach out-of-order pts to frames in display order).
                    position = bisect.bisect_left(index.pts, frame.pts) if frame.pts is not None else first
                    if position > start:  # seek landed past the window: decode from the start
                        return _decode(path, index, start, count, size, seek=False)
                if position >= start:
                    out.append(frame.to_ndarray(**fmt))
                    if len(out) == count:
                        break
                position += 1
    except av.error.FFmpegError:
        pass  # corrupt data mid-file: report how many frames were found below
    return out


def read_frames_uint8(path: str | Path, start: int, count: int,
                      size: tuple[int, int] | None = None, seek: bool = True) -> np.ndarray:
    """Frames ``start .. start+count-1`` as uint8 RGB ``(count, H, W, 3)``; see :func:`read_frames`."""
    index = _index(path)
    if start < 0 or count < 1:
        raise ValueError(f"invalid frame range start={start} count={count} for {path}")
    frames = _decode(Path(path), index, start, count, size, seek)
    if len(frames) < count:
        found = start + len(frames)
        raise VideoError(f"{path} holds fewer frames than asked: frames {start}..{start + count - 1} "
                         f"requested, only {found} decodable")
    return np.stack(frames)


def read_frames(path: str | Path, start: int, count: int,
                size: tuple[int, int] | None = None, seek: bool = True) -> torch.Tensor:
    """Decode frames ``start .. start+count-1`` -> float ``(count, 3, H, W)`` in ``[0, 1]``.

    ``size`` is ``(H, W)`` to resize to (in the decoder, fast) or ``None`` for the native size.
    ``seek=True`` seeks to the keyframe before ``start`` and decodes forward; ``seek=False``
    decodes from the first frame (slow baseline, same frames). Raises :class:`VideoError` when
    fewer than ``count`` frames can be decoded.
    """
    frames = torch.from_numpy(read_frames_uint8(path, start, count, size, seek))
    return frames.permute(0, 3, 1, 2).float().div_(255.0)
