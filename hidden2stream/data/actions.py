"""Labelled action videos: UCF101 / HMDB51 split files, class folders, and the TSN dataset.

Parsers return ``(samples, class_names)`` with 0-based labels and check that every listed
video exists, so a wrong root fails at once with one line rather than mid-epoch.
:class:`ActionVideoDataset` yields TSN clips ``(K, T+1, 3, H, W)`` (architecture.md).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from hidden2stream.data.clips import centre_crop, random_crop
from hidden2stream.data.flow_cache import FlowCache
from hidden2stream.data.frame_cache import read_window
from hidden2stream.data.probe import probe_videos, report_dropped
from hidden2stream.data.sampling import evenly_spaced_starts, item_generator, segment_starts, valid_starts
from hidden2stream.errors import UserError, VideoError

log = logging.getLogger(__name__)

#: Train-time frames are resized to this factor times ``max(size)`` on the shorter side, then cropped.
RESIZE_FACTOR = 1.15


@dataclass(frozen=True)
class VideoSample:
    """One labelled video: ``label`` is a 0-based class index."""

    path: Path
    label: int


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    """Non-blank lines of a text file as ``(line number, fields)``; UserError if missing."""
    if not path.is_file():
        raise UserError(f"split file {path} not found")
    text = path.read_text(encoding="utf-8", errors="replace")
    return [(n, line.split()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]


def _malformed(path: Path, line: int, expected: str) -> UserError:
    return UserError(f"{path}:{line}: malformed line, expected {expected}")


def _check_exist(samples: list[VideoSample], split_file: Path) -> None:
    missing = [s.path for s in samples if not s.path.is_file()]
    if missing:
        raise UserError(f"{split_file} names {len(missing)} absent videos, first: {missing[0]}")


def _check_args(split: int, subset: str) -> None:
    if split not in (1, 2, 3):
        raise ValueError(f"split must be 1, 2 or 3, got {split}")
    if subset not in ("train", "test"):
        raise ValueError(f"subset must be 'train' or 'test', got {subset!r}")


def parse_ucf101(video_root: str | Path, split_dir: str | Path, split: int = 1,
                 subset: str = "train") -> tuple[list[VideoSample], list[str]]:
    """UCF101 ``classInd.txt`` + ``trainlist0N.txt`` / ``testlist0N.txt`` -> samples, class names."""
    _check_args(split, subset)
    root, split_dir = Path(video_root), Path(split_dir)
    class_file = split_dir / "classInd.txt"
    indexed: dict[int, str] = {}
    for n, fields in _lines(class_file):
        if len(fields) != 2 or not fields[0].isdigit():
            raise _malformed(class_file, n, "'<index> <ClassName>'")
        indexed[int(fields[0])] = fields[1]
    if sorted(indexed) != list(range(1, len(indexed) + 1)):
        raise UserError(f"{class_file}: class indices must run 1..{len(indexed)}")
    names = [indexed[i] for i in range(1, len(indexed) + 1)]
    by_name = {name: i for i, name in enumerate(names)}
    list_file = split_dir / f"{subset}list0{split}.txt"
    samples = []
    for n, fields in _lines(list_file):
        if subset == "train":
            if len(fields) != 2 or not fields[1].isdigit() or not 1 <= int(fields[1]) <= len(names):
                raise _malformed(list_file, n, f"'<Class>/<video> <1..{len(names)}>'")
            label = int(fields[1]) - 1
        else:
            if len(fields) != 1 or "/" not in fields[0]:
                raise _malformed(list_file, n, "'<Class>/<video>'")
            folder = fields[0].split("/")[0]
            if folder not in by_name:
                raise UserError(f"{list_file}:{n}: class {folder!r} is not in {class_file}")
            label = by_name[folder]
        samples.append(VideoSample(root / fields[0], label))
    if not samples:
        raise UserError(f"{list_file} lists no videos")
    _check_exist(samples, list_file)
    return samples, names


def parse_hmdb51(video_root: str | Path, split_dir: str | Path, split: int = 1,
                 subset: str = "train") -> tuple[list[VideoSample], list[str]]:
    """HMDB51 ``<class>_test_split<N>.txt`` files (``<video> <0|1|2>``: unused/train/test)."""
    _check_args(split, subset)
    root, split_dir = Path(video_root), Path(split_dir)
    if not split_dir.is_dir():
        raise UserError(f"split folder {split_dir} not found")
    suffix = f"_test_split{split}.txt"
    files = sorted(p for p in split_dir.iterdir() if p.name.endswith(suffix))
    if not files:
        raise UserError(f"no *{suffix} files in {split_dir}")
    names = [p.name[: -len(suffix)] for p in files]
    wanted = "1" if subset == "train" else "2"
    samples = []
    for label, (name, path) in enumerate(zip(names, files)):
        for n, fields in _lines(path):
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise _malformed(path, n, "'<video> <0|1|2>'")
            if fields[1] == wanted:
                samples.append(VideoSample(root / name / fields[0], label))
    if not samples:
        raise UserError(f"split {split} in {split_dir} marks no {subset} videos")
    missing = [s for s in samples if not s.path.is_file()]
    if missing:
        first = missing[0]
        raise UserError(f"{split_dir / (names[first.label] + suffix)} names absent videos "
                        f"({len(missing)} in split {split}), first: {first.path}")
    return samples, names


def parse_class_folders(root: str | Path) -> tuple[list[VideoSample], list[str]]:
    """``root/<class>/<video files>`` -> samples (sorted) and class names (sorted folder names)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"video folder {root} does not exist")
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not names:
        raise UserError(f"{root} holds no class folders (expected {root}/<class>/<videos>)")
    samples = []
    for label, name in enumerate(names):
        videos = sorted(p for p in (root / name).iterdir() if p.is_file() and not p.name.startswith("."))
        if not videos:
            raise UserError(f"class folder {root / name} holds no videos")
        samples.extend(VideoSample(p, label) for p in videos)
    return samples, names


def _five_crops(frames: torch.Tensor, size: tuple[int, int]) -> list[torch.Tensor]:
    """Centre and four corner crops of ``(..., H, W)``."""
    h, w = size
    H, W = frames.shape[-2:]
    corners = [(0, 0), (0, W - w), (H - h, 0), (H - h, W - w)]
    return [centre_crop(frames, size)] + [frames[..., t:t + h, l:l + w] for t, l in corners]


TEST_CROPS = ("centre", "multi")


def eval_views(clip: torch.Tensor, size: tuple[int, int], crops: str = "centre", flip: bool = False) -> torch.Tensor:
    """The test views ``(V, ...)`` of a clip ``(..., H, W)``: its centre crop (``crops="centre"``) or
    centre and four corner crops (``"multi"``), then the same horizontally flipped when ``flip``."""
    if crops not in TEST_CROPS:
        raise ValueError(f"test crops must be 'centre' or 'multi', got {crops!r}")
    views = _five_crops(clip, size) if crops == "multi" else [centre_crop(clip, size)]
    if flip:
        views += [v.flip(-1) for v in views]
    return torch.stack(views)


def mirror_flow(flow: torch.Tensor) -> torch.Tensor:
    """The flows ``(..., 2, H, W)`` of the left-right mirrored frames: flipped along W, u negated."""
    return flow.flip(-1) * flow.new_tensor([-1.0, 1.0]).view(2, 1, 1)


def eval_flow_views(flows: torch.Tensor, size: tuple[int, int], crops: str = "centre",
                    flip: bool = False) -> torch.Tensor:
    """The test views ``(V, ..., 2, H, W)`` of flows ``(..., 2, H, W)``, cut as :func:`eval_views` cuts
    their frames; a flipped view mirrors the motion, so its u is negated (:func:`mirror_flow`)."""
    views = eval_views(flows, size, crops, flip)
    if flip:
        views[views.shape[0] // 2:, ..., 0, :, :] *= -1.0
    return views


def same_random_crop(clips: list[torch.Tensor], size: tuple[int, int],
                     generator: torch.Generator) -> list[torch.Tensor]:
    """:func:`random_crop` of each of ``clips (..., H, W)`` (one H, W) at one position: one draw
    from ``generator``, as for a single clip."""
    joined = random_crop(torch.cat([c.flatten(0, -3) for c in clips]), size, generator)
    parts = joined.split([c.shape[:-2].numel() for c in clips])
    return [part.reshape(*c.shape[:-2], *part.shape[-2:]).contiguous() for part, c in zip(parts, clips)]


class ActionVideoDataset(Dataset):
    """TSN clips from labelled videos.

    Train item: ``{"frames": (K, T+1, 3, H, W), "label": long}`` with K = ``segments`` windows
    of T+1 = ``frames`` frames at random starts in K equal segments (generator seeded by
    ``(seed, index, epoch)``, see :meth:`set_epoch`), one random ``size`` crop for the whole
    clip after resizing the shorter side to ``1.15 * max(size)``.

    Test item: ``{"frames": (V, K, T+1, 3, H, W), "label"}`` with K = ``test_windows`` evenly
    spaced windows and V views = crops x flips, cut from frames resized as in training:
    ``test_crops="centre"`` (1) or ``"multi"`` (centre + 4 corners, 5), times 2 when
    ``test_flip`` (the flipped views follow the others). A model averages over V and K.

    With a ``flow_cache`` (:class:`~hidden2stream.data.flow_cache.FlowCache`, the two-stage model's
    classical flow) items also hold ``"flows"``: train ``(K, T, 2, H, W)``, test ``(V, K, T, 2, H,
    W)``, forward flows between consecutive frames of each window, computed at the resized
    resolution and cut with the same crop and views as the frames (a flipped view negates u). The
    flows of every kept video are extracted when the dataset is built (those already in the cache
    are reused).

    Every video is probed when the dataset is built (:mod:`~hidden2stream.data.probe`, cached per
    file and in ``cache_dir``): unreadable ones and those shorter than one window are dropped with a
    log line each and a count line, and listed in :attr:`dropped`; :attr:`samples` holds the kept
    ones, and windows stay within the frames a video really holds. A kept video that fails to decode
    later is, in training, logged once and replaced by another random kept video with its own label;
    in testing the :class:`VideoError` is raised (``evaluate_actions`` records the video as skipped).
    UserError when no video is usable.
    """

    def __init__(self, samples: list[VideoSample], num_classes: int, segments: int = 3,
                 frames: int = 11, size: tuple[int, int] = (112, 112), train: bool = True,
                 test_windows: int = 5, test_crops: str = "centre", test_flip: bool = False,
                 seek: bool = True, seed: int = 0, cache_dir: str | Path | None = None,
                 flow_cache: FlowCache | None = None) -> None:
        if not samples:
            raise ValueError("no videos given to ActionVideoDataset")
        bad = [s for s in samples if not 0 <= s.label < num_classes]
        if bad:
            raise ValueError(f"label {bad[0].label} of {bad[0].path} is outside 0..{num_classes - 1}")
        if test_crops not in ("centre", "multi"):
            raise ValueError(f"test_crops must be 'centre' or 'multi', got {test_crops!r}")
        if segments < 1 or frames < 1 or test_windows < 1:
            raise ValueError("segments, frames and test_windows must be >= 1")
        self.num_classes = num_classes
        self.segments, self.frames, self.size = segments, frames, tuple(size)
        self.train, self.test_windows = train, test_windows
        self.test_crops, self.test_flip = test_crops, test_flip
        self.seek, self.seed, self.cache_dir, self.flow_cache = seek, seed, cache_dir, flow_cache
        self.short_side = round(RESIZE_FACTOR * max(self.size))
        self.epoch = 0
        self.samples: list[VideoSample] = []
        self.dropped: list[str] = []  # why each left-out video was dropped, one line each naming the file
        self._num_frames: list[int] = []  # frames each kept video holds
        for sample, info in zip(samples, probe_videos([s.path for s in samples], cache_dir)):
            if isinstance(info, VideoError):
                self.dropped.append(str(info))
                continue
            try:
                valid_starts(info.num_frames, frames, sample.path)
            except VideoError as too_short:
                self.dropped.append(str(too_short))
                continue
            self.samples.append(sample)
            self._num_frames.append(info.num_frames)
        where = Path(os.path.commonpath([str(s.path.absolute().parent) for s in samples]))
        report_dropped(self.dropped, len(samples), f"unreadable or shorter than {frames} frames", where)
        self._failed: set[int] = set()
        if flow_cache is not None:
            if frames < 2:
                raise ValueError(f"flows need windows of at least 2 frames, got {frames}")
            flow_cache.extract([s.path for s in self.samples], self.short_side)

    def set_epoch(self, epoch: int) -> None:
        """New random training windows and crops for ``epoch``."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def _clip(self, index: int) -> dict[str, torch.Tensor]:
        """``{"frames"}`` (and ``"flows"`` with a flow cache) of item ``index``, cropped or in views."""
        path, n = self.samples[index].path, self._num_frames[index]
        if self.train:
            generator = item_generator(self.seed, index, self.epoch)
            starts = segment_starts(n, self.segments, self.frames, generator, path)
        else:
            starts = evenly_spaced_starts(n, self.test_windows, self.frames, path)
        windows = [read_window(path, s, self.frames, self.short_side, self.cache_dir, self.seek)
                   for s in starts]
        clip = torch.stack(windows)  # (K, T+1, 3, H', W')
        if self.flow_cache is None:
            if self.train:
                return {"frames": random_crop(clip, self.size, generator).contiguous()}
            return {"frames": eval_views(clip, self.size, self.test_crops, self.test_flip)}
        flows = torch.stack([self.flow_cache.read(path, self.short_side, s, self.frames - 1)
                             for s in starts])  # (K, T, 2, H', W')
        if self.train:
            clip, flows = same_random_crop([clip, flows], self.size, generator)
            return {"frames": clip, "flows": flows}
        return {"frames": eval_views(clip, self.size, self.test_crops, self.test_flip),
                "flows": eval_flow_views(flows, self.size, self.test_crops, self.test_flip)}

    def _item(self, index: int) -> dict[str, torch.Tensor]:
        return {**self._clip(index), "label": torch.tensor(self.samples[index].label, dtype=torch.long)}

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(index)
        if not self.train:
            return self._item(index)  # a test video is scored as itself or not at all
        pick = item_generator(self.seed, index, self.epoch)
        while True:
            if index not in self._failed:
                try:
                    return self._item(index)
                except VideoError as exc:
                    self._failed.add(index)
                    log.warning("training on other videos instead: %s", exc)
            kept = [i for i in range(len(self.samples)) if i not in self._failed]
            if not kept:
                raise UserError(f"every video of the training set failed to decode ({len(self.samples)} "
                                f"videos, see the log)")
            index = kept[int(torch.randint(len(kept), (), generator=pick))]
