"""Playback labels from unlabelled videos: how fast (x1, x2, x4) and which way (forwards, backwards).

A window of T+1 frames taken at frame stride 1, 2 or 4 and played forwards or backwards is labelled by
its playback, for free (SpeedNet, CVPR 2020; the arrow of time, CVPR 2018). One frame cannot tell
these classes apart; the motion between frames can, which makes them a real-footage test of a motion
stream and a pretext task for pretraining on a user's own videos.

Labels are two factors like the embedded action classes: ``label = speed * 2 + direction`` with
``speed`` indexing :data:`SPEEDS` and ``direction`` 0 = forwards, 1 = backwards
(``ActionReport.factor_accuracy(head, 2)`` -> speed and direction accuracy).

Every class of a window is centred on the same frame: the frame the spatial stream sees
(``frames[T // 2]``) is drawn from the same range whatever the speed and direction, so appearance
carries no label.
"""
from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import torch
from torch.utils.data import Dataset

from hidden2stream.data.actions import RESIZE_FACTOR, same_random_crop
from hidden2stream.data.clips import centre_crop
from hidden2stream.data.frame_cache import read_window
from hidden2stream.data.probe import probe_videos, report_dropped
from hidden2stream.data.sampling import evenly_spaced_starts, item_generator
from hidden2stream.errors import UserError, VideoError
from hidden2stream.data.flow_cache import FlowCache

log = logging.getLogger(__name__)

SPEEDS = (1, 2, 4)  # frame strides
DIRECTIONS = ("forwards", "backwards")
PLAYBACK_CLASSES = tuple(f"x{speed} {direction}" for speed in SPEEDS for direction in DIRECTIONS)
#: Train items per video and class in one epoch (random windows each).
WINDOWS_PER_VIDEO = 8


def playback_label(speed: int, backwards: bool) -> int:
    """The class of a window at frame stride ``speed`` (one of :data:`SPEEDS`)."""
    return SPEEDS.index(speed) * len(DIRECTIONS) + int(backwards)


def find_videos(root: str | Path) -> list[Path]:
    """Every file under ``root``, searched recursively (sorted; hidden files and folders left out):
    whatever PyAV cannot read is dropped later with one log line, so any container works."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"video folder {root} does not exist")
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [Path(folder) / n for n in sorted(names) if not n.startswith(".")]
    if not files:
        raise UserError(f"{root} holds no files (expected videos, searched recursively)")
    return files


def _identity(path: Path) -> tuple[int, bytes]:
    """What makes two files the same video: size and the first 64 KB (copies and links alike)."""
    with open(path, "rb") as handle:
        return path.stat().st_size, handle.read(1 << 16)


def check_disjoint(train: list[Path], test: list[Path]) -> None:
    """One-line UserError when a test video is also a training video (the same file, a link or a copy)."""
    seen = {_identity(p): p for p in train}
    for path in test:
        twin = seen.get(_identity(path))
        if twin is not None:
            raise UserError(f"the test set shares a video with the training set: {path} is {twin}")


def split_by_video(videos: list[Path], test_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Split a list of videos (never their windows) into (train, test): a seeded shuffle, at least one
    video on each side."""
    if len(videos) < 2:
        raise UserError(f"a train/test split by video needs at least 2 videos, found {len(videos)}")
    order = sorted(videos)
    random.Random(seed).shuffle(order)
    n_test = min(len(order) - 1, max(1, round(test_fraction * len(order))))
    return sorted(order[n_test:]), sorted(order[:n_test])


class PlaybackDataset(Dataset):
    """Playback-labelled TSN clips from unlabelled videos (labels: :data:`PLAYBACK_CLASSES`).

    Train item ``i``: video ``i // (6 * windows_per_video)``, class ``i % 6``; ``{"frames": (K, T+1, 3,
    H, W), "label"}`` with K = ``segments`` windows, each centred at a random frame of its segment
    (generator seeded by ``(seed, i, epoch)``), one random ``size`` crop for the clip after resizing
    the shorter side to ``1.15 * max(size)``. Test item ``i``: video ``i // 6``, class ``i % 6``,
    ``{"frames": (1, K, T+1, 3, H, W)}`` with K = ``test_windows`` evenly spaced centres, centre crop.

    A window at stride s played forwards shows frames ``c - m*s, ..., c + (T-m)*s`` with m = T // 2;
    played backwards, frames ``c + m*s, ..., c - (T-m)*s``: frame m of every window is the centre c.
    Videos are probed when the dataset is built; unreadable ones and those too short for a window
    at stride 4 are dropped with one log line each (:attr:`dropped`); UserError when none is left.
    With ``flow_cache`` (a :class:`~hidden2stream.data.flow_cache.FlowCache`) items also hold the
    window's classical flows ``"flows"`` ``(K, T, 2, H, W)`` (test: ``(1, K, T, 2, H, W)``), cropped
    like the frames.
    """

    def __init__(self, videos: list[Path], frames: int = 6, size: tuple[int, int] = (64, 64),
                 train: bool = True, segments: int = 1, test_windows: int = 4,
                 windows_per_video: int = WINDOWS_PER_VIDEO, seed: int = 0,
                 cache_dir: str | Path | None = None, flow_cache: FlowCache | None = None) -> None:
        if frames < 2 or segments < 1 or test_windows < 1 or windows_per_video < 1:
            raise ValueError("frames must be >= 2; segments, test_windows, windows_per_video >= 1")
        if not videos:
            raise ValueError("no videos given to PlaybackDataset")
        self.frames, self.size, self.train = frames, tuple(size), train
        self.segments, self.test_windows, self.windows_per_video = segments, test_windows, windows_per_video
        self.seed, self.cache_dir, self.flow_cache = seed, cache_dir, flow_cache
        self.short_side = round(RESIZE_FACTOR * max(self.size))
        self.class_names = list(PLAYBACK_CLASSES)
        self.num_classes = len(PLAYBACK_CLASSES)
        flows = frames - 1
        self.before = flows // 2  # frames before the centre in the played order
        self.margin = max(SPEEDS) * max(self.before, flows - self.before)  # centre to either end, any class
        self.epoch = 0
        self.videos: list[Path] = []
        self.dropped: list[str] = []
        self._num_frames: list[int] = []
        for path, info in zip(videos, probe_videos(videos, cache_dir)):
            if isinstance(info, VideoError):
                self.dropped.append(str(info))
            elif info.num_frames < 2 * self.margin + 1:
                self.dropped.append(f"{path} is too short: {info.num_frames} frames, a window of {frames} "
                                    f"frames at stride {max(SPEEDS)} needs {2 * self.margin + 1}")
            else:
                self.videos.append(Path(path))
                self._num_frames.append(info.num_frames)
        where = Path(os.path.commonpath([str(Path(p).absolute().parent) for p in videos]))
        report_dropped(self.dropped, len(videos), f"unreadable or shorter than {2 * self.margin + 1} frames",
                       where)
        if flow_cache is not None:  # every stride and direction of every video, once, before training
            for speed in SPEEDS:
                for backwards in (False, True):
                    flow_cache.extract(self.videos, self.short_side, stride=speed, reverse=backwards)

    def set_epoch(self, epoch: int) -> None:
        """New random windows and crops for ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        per_video = len(PLAYBACK_CLASSES) * (self.windows_per_video if self.train else 1)
        return len(self.videos) * per_video

    def _centres(self, video: int, generator: torch.Generator | None) -> list[int]:
        """Window centres: one random centre per TSN segment (train) or evenly spaced ones (test)."""
        n, lo = self._num_frames[video], self.margin
        span = n - 2 * self.margin  # valid centres lo .. lo + span - 1
        if generator is None:
            return [lo + s for s in evenly_spaced_starts(span, self.test_windows, 1)]
        return [lo + min(span - 1, int((k + float(torch.rand((), generator=generator))) * span / self.segments))
                for k in range(self.segments)]

    def _indices(self, centre: int, label: int) -> list[int]:
        """The frame numbers of one window in played order."""
        stride, backwards = SPEEDS[label // len(DIRECTIONS)], bool(label % len(DIRECTIONS))
        step = -stride if backwards else stride
        return [centre + (j - self.before) * step for j in range(self.frames)]

    def _window(self, video: int, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Frames ``(T+1, 3, H', W')`` at ``indices`` (played order) and, with a flow cache, their
        flows ``(T, 2, H', W')``."""
        path, first, last = self.videos[video], min(indices), max(indices)
        span = read_window(path, first, last - first + 1, self.short_side, self.cache_dir)
        frames = span[[i - first for i in indices]]
        if self.flow_cache is None:
            return frames, None
        stride, backwards = abs(indices[1] - indices[0]), indices[1] < indices[0]
        flows = self.flow_cache.read(path, self.short_side, first, self.frames - 1, stride=stride,
                                     reverse=backwards)
        return frames, flows

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        label = index % len(PLAYBACK_CLASSES)
        video = index // (len(self) // len(self.videos))
        generator = item_generator(self.seed, index, self.epoch) if self.train else None
        windows = [self._window(video, self._indices(c, label)) for c in self._centres(video, generator)]
        clips = [torch.stack([frames for frames, _ in windows])]  # (K, T+1, 3, H', W')
        if self.flow_cache is not None:
            clips.append(torch.stack([flows for _, flows in windows]))  # (K, T, 2, H', W')
        if generator is None:
            clips = [centre_crop(clip, self.size).contiguous() for clip in clips]
        else:
            clips = same_random_crop(clips, self.size, generator)
        item = dict(zip(("frames", "flows"), clips))
        item["label"] = torch.tensor(label, dtype=torch.long)
        if not self.train:  # one view: (V=1, K, ...)
            item = {k: v.unsqueeze(0) if k != "label" else v for k, v in item.items()}
        return item
