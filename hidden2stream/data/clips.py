"""Unlabelled windows of T+1 consecutive frames from a folder of videos (MotionNet training).

Each video is split in time: the first ``1 - val_fraction`` of its frames feed training
windows, the rest held-out validation windows, so validation never sees training frames.
Every file is probed when the dataset is built (:mod:`~hidden2stream.data.probe`): unreadable
videos and those too short for a window in the part are dropped with one log line each and a
count line. A kept video that fails to decode later (corrupt data) is, for training windows,
logged once and replaced by another video (the item's ``"video"`` names the one it came from);
a validation window raises the :class:`VideoError`, so held-out scores never count a video twice.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch.utils.data import Dataset

from hidden2stream.data.frame_cache import read_window
from hidden2stream.data.probe import probe_videos, report_dropped
from hidden2stream.data.sampling import item_generator, valid_starts
from hidden2stream.errors import UserError, VideoError

log = logging.getLogger(__name__)


def centre_crop(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Centre crop ``(..., H, W)`` to ``size = (h, w)``."""
    h, w = size
    top, left = (frames.shape[-2] - h) // 2, (frames.shape[-1] - w) // 2
    return frames[..., top:top + h, left:left + w]


def random_crop(frames: torch.Tensor, size: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Crop ``(..., H, W)`` to ``size = (h, w)`` at a random position (same for all frames)."""
    h, w = size
    top = int(torch.randint(frames.shape[-2] - h + 1, (), generator=generator))
    left = int(torch.randint(frames.shape[-1] - w + 1, (), generator=generator))
    return frames[..., top:top + h, left:left + w]


class VideoWindowDataset(Dataset):
    """Windows ``{"frames": (T+1, 3, H, W), "video": int}`` from every video file in ``folder``
    (``video`` indexes :attr:`video_names`).

    Item ``i`` comes from video ``i % n`` at a random start drawn from a generator seeded by
    ``(seed, i, epoch)`` (call :meth:`set_epoch`); the validation part ignores the epoch so
    its windows are fixed. Frames are resized (shorter side to ``short_side``, default
    ``max(size)``) and cropped to ``size = (H, W)``: at a random position for training windows,
    in the centre for validation windows. A ``short_side`` above ``max(size)`` keeps more of the
    video's resolution (larger motions in pixels) at the cost of a crop of ``size``.

    ``max_stride`` > 1 (training windows only): each window takes every s-th frame, s drawn
    uniformly from 1..max_stride, so the same videos also give motions s times larger; validation
    windows keep consecutive frames.
    """

    def __init__(self, folder: str | Path, frames: int = 11, size: tuple[int, int] = (64, 64),
                 windows_per_video: int = 64, part: str = "train", val_fraction: float = 0.2,
                 seed: int = 0, seek: bool = True, cache_dir: str | Path | None = None,
                 short_side: int | None = None, max_stride: int = 1) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"video folder {folder} does not exist")
        if part not in ("train", "val"):
            raise ValueError(f"part must be 'train' or 'val', got {part!r}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        if frames < 2 or windows_per_video < 1 or max_stride < 1:
            raise ValueError(f"need frames >= 2, windows_per_video >= 1 and max_stride >= 1, got {frames}, "
                             f"{windows_per_video}, {max_stride}")
        self.short_side = max(size) if short_side is None else short_side
        if self.short_side < max(size):
            raise UserError(f"short_side {self.short_side} is smaller than the crop {size[0]}x{size[1]}")
        self.frames, self.size, self.part = frames, tuple(size), part
        self.windows_per_video, self.seed, self.seek = windows_per_video, seed, seek
        self.cache_dir = cache_dir
        self.max_stride = max_stride if part == "train" else 1
        self.epoch = 0
        self.videos: list[tuple[Path, int, int]] = []  # (path, first frame, frames in part)
        self.dropped: list[str] = []  # why each left-out file was dropped, one line each naming it
        self._failed: set[int] = set()
        paths = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        for path, info in zip(paths, probe_videos(paths, cache_dir)):
            if isinstance(info, VideoError):
                self.dropped.append(str(info))
                continue
            split = int(info.num_frames * (1.0 - val_fraction))
            first, length = (0, split) if part == "train" else (split, info.num_frames - split)
            try:
                valid_starts(length, frames, f"the {part} part of {path}")
            except VideoError as too_short:
                self.dropped.append(str(too_short))
                continue
            self.videos.append((path, first, length))
        report_dropped(self.dropped, len(paths), f"unreadable or shorter than {frames} frames in the {part} part",
                       folder)

    @property
    def video_names(self) -> list[str]:
        """File names of the usable videos; an item's ``"video"`` indexes this list."""
        return [path.name for path, _, _ in self.videos]

    def set_epoch(self, epoch: int) -> None:
        """Draw new training windows for ``epoch`` (validation windows stay fixed)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.videos) * self.windows_per_video

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        generator = item_generator(self.seed, index, self.epoch if self.part == "train" else 0)
        offset = torch.rand((), generator=generator).item()
        stride = int(torch.randint(1, self.max_stride + 1, (), generator=generator)) if self.max_stride > 1 else 1
        n = len(self.videos)
        for step in range(n):
            v = (index + step) % n
            if v in self._failed:
                continue
            path, first, length = self.videos[v]
            span = min((self.frames - 1) * stride + 1, length)  # a short video takes a smaller stride
            every = (span - 1) // (self.frames - 1)
            span = (self.frames - 1) * every + 1
            start = first + min(int(offset * (length - span + 1)), length - span)
            try:
                window = read_window(path, start, span, self.short_side, self.cache_dir, self.seek)[::every]
            except VideoError as exc:
                if self.part == "val":
                    raise
                self._failed.add(v)
                log.warning("video %s failed to decode, using other videos instead: %s", path.name, exc)
                continue
            if self.part == "train":
                crop = random_crop(window, self.size, generator)
            else:
                crop = centre_crop(window, self.size)
            return {"frames": crop.contiguous(), "video": v}
        raise UserError(f"every video failed to decode ({n} videos, e.g. {self.videos[0][0]})")
