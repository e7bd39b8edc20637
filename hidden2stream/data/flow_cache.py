"""A disk cache of classical optical flow: the first stage of a two-stage two-stream pipeline.

Two-stage methods compute flow (TV-L1, DIS, Farneback) once per video and train the temporal
stream on the stored flow. :class:`FlowCache` does that under one folder:

* ``root/frames/``: the decoded frames (:func:`~hidden2stream.data.frame_cache.extract_frames`);
* ``root/videos/``: per video, short side, stride and direction, a float16 ``.npy`` of shape
  ``(N - stride, H, W, 2)``, ``A[i]`` = flow from frame i to frame i + stride (forward) or from
  frame i + stride to frame i (reverse), beside a small ``.json`` record (fps, frames) for
  :meth:`FlowCache.size_report`;
* ``root/items/``: the flows of generated clips (the synthetic action set), one ``.npy`` per key.

Flows are forward flows in pixels of the stored frames (docs/architecture.md): from frame a to
frame b, ``frame_a(x) ~ frame_b(x + flow(x))``. Files are written atomically, so parallel
DataLoader workers or runs sharing the folder never read half a file; an existing file is reused.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hidden2stream.atomic import write_atomic
from hidden2stream.data.frame_cache import extract_frames
from hidden2stream.data.video import probe_video
from hidden2stream.errors import VideoError
from hidden2stream.flow.classic import CLASSIC_METHODS, classic_flow
from hidden2stream.flow.parallel import FlowPool
from hidden2stream.progress import Progress

log = logging.getLogger(__name__)

#: A video with at least this many pairs shows its own progress while its flows are computed.
LONG_VIDEO = 1000


def _frame(frames: np.ndarray, i: int) -> Tensor:
    """uint8 ``(N, H, W, 3)`` -> frame ``i`` as float ``(3, H, W)`` in [0, 1]."""
    return torch.from_numpy(np.array(frames[i])).permute(2, 0, 1).float().div_(255.0)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size < 1e9 else f"{size / 1e9:.2f} GB"


class FlowCache:
    """Classical ``method`` flow (one of ``CLASSIC_METHODS``) stored under ``root``; see the module
    docstring. With ``workers`` > 1, :meth:`extract` computes the pairs in a
    :class:`~hidden2stream.flow.parallel.FlowPool` of that many processes."""

    def __init__(self, root: str | Path, method: str, workers: int = 1) -> None:
        if method not in CLASSIC_METHODS:
            raise ValueError(f"unknown classic flow method {method!r}; choose one of {', '.join(CLASSIC_METHODS)}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.root, self.method, self.workers = Path(root), method, workers

    # ------------------------------------------------------------------ videos

    def flow_path(self, video_path: str | Path, short_side: int, stride: int = 1, reverse: bool = False) -> Path:
        """Where :meth:`video_flows` stores these flows of ``video_path``."""
        video = Path(video_path).resolve()
        digest = hashlib.sha1(str(video).encode()).hexdigest()[:10]
        direction = "rev" if reverse else "fwd"
        return self.root / "videos" / f"{video.stem}-{digest}-{self.method}-s{short_side}-k{stride}-{direction}.npy"

    def video_flows(self, video_path: str | Path, short_side: int, stride: int = 1, reverse: bool = False) -> Path:
        """The flows of every frame pair ``(i, i + stride)`` of ``video_path`` (shorter side resized to
        ``short_side``), extracted once: float16 ``(N - stride, H, W, 2)``, ``A[i]`` = flow frame i ->
        i + stride, or frame i + stride -> i when ``reverse``. VideoError when the video has at most
        ``stride`` frames or cannot be decoded. A video of :data:`LONG_VIDEO` pairs or more shows
        its progress."""
        return self._video_flows(video_path, short_side, stride, reverse, None)

    def _video_flows(self, video_path: str | Path, short_side: int, stride: int, reverse: bool,
                     pool: FlowPool | None) -> Path:
        """:meth:`video_flows`, the pairs computed in ``pool`` when given."""
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        out = self.flow_path(video_path, short_side, stride, reverse)
        if out.exists():
            return out
        frames = np.load(extract_frames(video_path, self.root / "frames", short_side), mmap_mode="r")
        count = frames.shape[0] - stride
        if count < 1:
            raise VideoError(f"{video_path} holds {frames.shape[0]} frames: no pair {stride} frames apart")
        pairs = [(i + stride, i) if reverse else (i, i + stride) for i in range(count)]
        flows = np.empty((count, *frames.shape[1:3], 2), np.float16)
        with Progress(count, f"{self.method} flow {Path(video_path).name}", unit="pair",
                      enabled=count >= LONG_VIDEO) as bar:
            if pool is not None:
                computed = pool.pairs([(np.array(frames[a]), np.array(frames[b])) for a, b in pairs])
                flows[:] = np.stack(computed).transpose(0, 2, 3, 1)
                bar.update(count)
            else:
                for i, (a, b) in enumerate(pairs):
                    flows[i] = classic_flow(self.method, _frame(frames, a), _frame(frames, b)).permute(1, 2, 0).numpy()
                    bar.update()
        info = probe_video(video_path)
        record = {"video": str(Path(video_path).resolve()), "short_side": short_side, "stride": stride,
                  "reverse": reverse, "frames": int(frames.shape[0]), "fps": info.fps}
        write_atomic(out.with_suffix(".json"), lambda handle: json.dump(record, handle), binary=False)
        return write_atomic(out, lambda handle: np.save(handle, flows))

    def extract(self, videos: list[Path], short_side: int, stride: int = 1, reverse: bool = False) -> None:
        """Extract the flows of every video not in the cache yet, with progress; a video that fails
        to decode is logged and left out (reading its flows raises the :class:`VideoError` again)."""
        todo = [v for v in videos if not self.flow_path(v, short_side, stride, reverse).exists()]
        if not todo:
            return
        with contextlib.ExitStack() as stack:
            pool = stack.enter_context(FlowPool(self.method, self.workers)) if self.workers > 1 else None
            bar = stack.enter_context(Progress(len(todo), f"{self.method} flow extraction", unit="video"))
            for video in todo:
                try:
                    self._video_flows(video, short_side, stride, reverse, pool)
                except VideoError as exc:
                    log.warning("no %s flow extracted: %s", self.method, exc)
                bar.update()

    def read(self, video_path: str | Path, short_side: int, start: int, flows: int, stride: int = 1,
             reverse: bool = False) -> Tensor:
        """The ``flows`` flows ``(flows, 2, H, W)`` float32 of the window of frames ``start, start +
        stride, ..., e = start + flows * stride``, played forwards (flow j: frame start + j * stride ->
        start + (j + 1) * stride) or, with ``reverse``, backwards (the window ``e, e - stride, ...``;
        flow j: frame e - j * stride -> e - (j + 1) * stride). Extracts the video first if needed."""
        if flows < 1:
            raise ValueError(f"flows must be >= 1, got {flows}")
        path = self.video_flows(video_path, short_side, stride, reverse)
        stored = np.load(path, mmap_mode="r")
        end = start + flows * stride
        if start < 0 or end > stored.shape[0] + stride - 1:
            raise VideoError(f"{video_path} has {stored.shape[0] + stride} frames; frames {start}..{end} requested")
        window = np.array(stored[start:end:stride])  # A[start + j * stride], j = 0 .. flows - 1
        if reverse:
            window = window[::-1]  # A_rev[e - (j + 1) * stride]
        return torch.from_numpy(np.ascontiguousarray(window)).permute(0, 3, 1, 2).float()

    # ------------------------------------------------------------------ generated clips

    def item_flows(self, key: str, frames: Tensor) -> Tensor:
        """The flows ``(K, T, 2, H, W)`` float32 between consecutive frames of windows ``frames (K,
        T+1, 3, H, W)`` in [0, 1], computed once per ``key`` (which must name these frames exactly,
        e.g. a generated dataset's config, seed and item index) and read back later."""
        if frames.ndim != 5 or frames.shape[1] < 2 or frames.shape[2] != 3:
            raise ValueError(f"expected frames (K, T+1, 3, H, W) with T >= 1, got {tuple(frames.shape)}")
        k, count, _, height, width = frames.shape
        shape = (k, count - 1, 2, height, width)
        path = self.root / "items" / f"{self.method}-{hashlib.sha1(key.encode()).hexdigest()[:20]}.npy"
        if path.exists():
            stored = np.load(path)
            if stored.shape != shape:
                raise ValueError(f"{path} holds flows {stored.shape} for key {key!r}, expected {shape}")
            return torch.from_numpy(stored).float()
        flows = torch.stack([torch.stack([classic_flow(self.method, window[t], window[t + 1])
                                          for t in range(count - 1)]) for window in frames])
        stored = flows.half().numpy()
        write_atomic(path, lambda handle: np.save(handle, stored))
        return torch.from_numpy(stored).float()

    # ------------------------------------------------------------------ size

    def size_report(self) -> dict:
        """What the cache holds for this method on disk: ``bytes`` and ``files`` of the flow files,
        and per short side of the videos (``videos``: bytes, seconds of video, bytes per hour of
        video), with a ``text`` line, e.g. ``dis flow cache runs/flow_cache: 12.3 MB for 45.0 s of video =
        0.98 GB per hour of video at short side 74``."""
        files = sorted((self.root / "videos").glob(f"*-{self.method}-s*.npy"))
        items = sorted((self.root / "items").glob(f"{self.method}-*.npy"))
        sides: dict[int, dict] = defaultdict(lambda: {"bytes": 0, "seconds": {}})
        for path in files:
            record = json.loads(path.with_suffix(".json").read_text())
            side = sides[record["short_side"]]
            side["bytes"] += path.stat().st_size
            side["seconds"][record["video"]] = record["frames"] / record["fps"]
        videos = {}
        for short_side, side in sorted(sides.items()):
            seconds = sum(side["seconds"].values())
            videos[short_side] = {"bytes": side["bytes"], "videos": len(side["seconds"]), "seconds": seconds,
                                  "bytes_per_hour": side["bytes"] * 3600 / seconds if seconds else None}
        item_bytes = sum(p.stat().st_size for p in items)
        parts = [f"{_megabytes(v['bytes'])} for {v['seconds']:.1f} s of video = "
                 f"{v['bytes_per_hour'] / 1e9:.2f} GB per hour of video at short side {s}"
                 for s, v in videos.items() if v["bytes_per_hour"] is not None]
        if items:
            parts.append(f"{_megabytes(item_bytes)} for {len(items)} generated clips")
        text = f"{self.method} flow cache {self.root}: " + ("; ".join(parts) or "empty")
        return {"method": self.method, "root": str(self.root), "files": len(files) + len(items),
                "bytes": sum(v["bytes"] for v in videos.values()) + item_bytes, "videos": videos,
                "item_bytes": item_bytes, "items": len(items), "text": text}
