"""The action datasets the scripts read, from their command-line options.

``train_two_stream.py`` and ``evaluate.py`` share these options and this construction, so a
checkpoint is evaluated on exactly the test set its training run evaluated on (same options,
same videos, same order):

* ``synthetic``: the embedded (appearance x motion) clips, no files; the test set is seeded with
  ``10_000 + seed``, the training set with ``seed``;
* ``ucf101`` / ``hmdb51``: the official split files under ``--split-dir``, videos under ``--video-root``;
* ``folder``: class folders of your own videos, ``--video-root`` for training, ``--test-root`` for testing;
* ``playback``: unlabelled videos (any folder, searched recursively) labelled by playback speed and
  direction (:mod:`~hidden2stream.data.playback`): ``--video-root`` for training, ``--test-root`` for
  testing, or without it a split of ``--video-root`` by video (``--test-fraction``).

The test protocol: ``--test-windows`` evenly spaced windows per video (default: 5 for videos; for
the synthetic data, the K training segments at their TSN offsets), ``--test-crops centre|multi``
(1 or 5 crops) and ``--test-flip`` (x2). The paper: ``--test-windows 25 --test-crops multi --test-flip``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from hidden2stream.data.actions import (TEST_CROPS, ActionVideoDataset, VideoSample, parse_class_folders,
                                        parse_hmdb51, parse_ucf101)
from hidden2stream.data.flow_cache import FlowCache
from hidden2stream.data.playback import PlaybackDataset, check_disjoint, find_videos, split_by_video
from hidden2stream.data.synthetic_actions import SyntheticActionConfig, SyntheticActionDataset
from hidden2stream.errors import UserError
from hidden2stream.options import (Options, existing_dir, frame_count, image_size, option, options_check,
                                   positive_int, probability)

log = logging.getLogger(__name__)

DATASETS = ("synthetic", "ucf101", "hmdb51", "folder", "playback")
VIDEO_TEST_WINDOWS = 5  # evenly spaced test windows per real video unless --test-windows says otherwise
PLAYBACK_TEST_WINDOWS = 4  # --dataset playback: test windows per video and class (centre crop only)
TEST_SEED_OFFSET = 10_000


@dataclass(frozen=True)
class ActionDataOptions(Options):
    """The test set and its protocol (``evaluate.py`` takes these; training adds :class:`TrainDataOptions`).
    A default of None means "the caller fills it in" (``evaluate.py``: from the checkpoint)."""

    dataset: str = option("synthetic", choices=DATASETS, group="data")
    video_root: Path | None = option(None, "videos (ucf101/hmdb51/folder of class folders)", parse=existing_dir,
                                     group="data")
    split_dir: Path | None = option(None, "folder of the official split files", parse=existing_dir, group="data")
    split: int = option(1, parse=int, choices=(1, 2, 3), group="data")
    test_root: Path | None = option(None, "--dataset folder: test class folders; --dataset playback: test videos "
                                    "(any folder)", parse=existing_dir, group="data")
    test_fraction: float = option(0.25, "--dataset playback without --test-root: share of --video-root's videos "
                                  "held out", parse=probability, group="data")
    appearances: int | None = option(3, "synthetic: colour schemes", parse=positive_int, group="data")
    motions: int | None = option(4, "synthetic: motion kinds (<= 8)", parse=positive_int, group="data")
    test_items: int | None = option(240, "synthetic test clips", parse=positive_int, group="data")
    frames: int | None = option(6, "T+1 frames per window (paper: 11)", parse=frame_count, group="data")
    segments: int | None = option(3, "TSN segments K", parse=positive_int, group="data")
    size: tuple[int, int] | None = option((64, 64), parse=image_size, group="data")
    frame_cache: Path | None = option(None, "decode each video once into uint8 frames under DIR, then read those",
                                      parse=Path, group="data")
    test_windows: int | None = option(None, f"evenly spaced test windows per video (default: {VIDEO_TEST_WINDOWS} "
                                      "for videos; synthetic: the K segments at their TSN offsets); the paper: 25",
                                      parse=positive_int, group="data")
    test_crops: str = option("centre", "centre crop, or centre + 4 corners (multi, the paper)", choices=TEST_CROPS,
                             group="data")
    test_flip: bool = option(False, "also the flipped crops (the paper)", group="data")


@dataclass(frozen=True)
class TrainDataOptions(ActionDataOptions):
    """:class:`ActionDataOptions` and the size of the synthetic training set."""

    train_items: int = option(3000, "synthetic train clips", parse=positive_int, group="data")


def views_per_video(options: ActionDataOptions) -> tuple[int, int]:
    """``(windows, views)`` per test video under the options: views = crops x flips."""
    if options.dataset == "playback":
        return options.test_windows or PLAYBACK_TEST_WINDOWS, 1
    windows = options.test_windows or (options.segments if options.dataset == "synthetic" else VIDEO_TEST_WINDOWS)
    return windows, (5 if options.test_crops == "multi" else 1) * (2 if options.test_flip else 1)


def protocol_name(options: ActionDataOptions) -> str:
    """A short description of the test protocol, e.g. ``25 windows x 10 views (multi crops, flipped)``."""
    windows, views = views_per_video(options)
    return (f"{windows} windows x {views} view{'s' if views > 1 else ''} "
            f"({options.test_crops} crop{'s' if options.test_crops == 'multi' else ''}"
            f"{', flipped' if options.test_flip else ''})")


def _synthetic_config(options: ActionDataOptions) -> SyntheticActionConfig:
    """The synthetic clips the options describe; a combination that cannot work (more motions than
    there are, objects moving out of the frame) is refused in one line naming the options."""
    height, width = options.size
    return options_check("--segments / --frames / --size / --appearances / --motions", SyntheticActionConfig,
                         segments=options.segments, frames=options.frames, height=height, width=width,
                         appearances=options.appearances, motions=options.motions)


def _video_samples(options: ActionDataOptions, subset: str) -> tuple[list[VideoSample], list[str]]:
    """The labelled videos of ``subset`` (``train``/``test``) and the class names."""
    if options.video_root is None:
        raise UserError(f"--dataset {options.dataset} needs --video-root")
    if options.dataset == "folder":
        if options.test_root is None:
            raise UserError("--dataset folder needs --test-root (class folders of test videos)")
        classes = parse_class_folders(options.video_root)[1]
        samples, found = parse_class_folders(options.video_root if subset == "train" else options.test_root)
        if found != classes:
            raise UserError(f"{options.test_root} has other classes than {options.video_root}")
        return samples, classes
    if options.split_dir is None:
        raise UserError(f"--dataset {options.dataset} needs --split-dir (official split files)")
    parse = parse_ucf101 if options.dataset == "ucf101" else parse_hmdb51
    return parse(options.video_root, options.split_dir, options.split, subset)


def _video_common(options: ActionDataOptions, seed: int, classes: list[str],
                  flow_cache: FlowCache | None = None) -> dict:
    return dict(num_classes=len(classes), segments=options.segments, frames=options.frames, size=options.size,
                seed=seed, cache_dir=options.frame_cache, flow_cache=flow_cache)


def _playback_videos(options: ActionDataOptions, seed: int, subset: str) -> list[Path]:
    """The ``train`` or ``test`` videos of ``--dataset playback``: two folders that share no video,
    or one folder split by video (the same split for both subsets)."""
    if options.video_root is None:
        raise UserError("--dataset playback needs --video-root (a folder of videos)")
    if options.test_root is None:
        train, test = split_by_video(find_videos(options.video_root), options.test_fraction, seed)
    else:
        train, test = find_videos(options.video_root), find_videos(options.test_root)
        check_disjoint(train, test)
    return train if subset == "train" else test


def _playback_set(options: ActionDataOptions, seed: int, subset: str,
                  flow_cache: FlowCache | None) -> tuple[Dataset, list[str]]:
    dataset = PlaybackDataset(_playback_videos(options, seed, subset), frames=options.frames, size=options.size,
                              train=subset == "train", segments=options.segments,
                              test_windows=options.test_windows or PLAYBACK_TEST_WINDOWS, seed=seed,
                              cache_dir=options.frame_cache, flow_cache=flow_cache)
    return dataset, dataset.class_names


def action_test_set(options: ActionDataOptions, seed: int,
                    flow_cache: FlowCache | None = None) -> tuple[Dataset, list[str]]:
    """The test set under the options' test protocol, and the class names; with ``flow_cache`` (the
    two-stage model) its items hold their classical ``flows`` too."""
    if options.dataset == "playback":
        return _playback_set(options, seed, "test", flow_cache)
    if options.dataset == "synthetic":
        if options.test_flip:
            log.warning("--test-flip on the synthetic data mirrors its motions (right <-> left, clockwise <-> "
                        "counter-clockwise): the flipped views show another class's motion")
        test_set = SyntheticActionDataset(options.test_items, _synthetic_config(options), seed=TEST_SEED_OFFSET + seed,
                                          test_windows=options.test_windows, test_crops=options.test_crops,
                                          test_flip=options.test_flip, flow_cache=flow_cache)
        return test_set, test_set.class_names
    samples, classes = _video_samples(options, "test")
    windows = options.test_windows or VIDEO_TEST_WINDOWS
    return ActionVideoDataset(samples, train=False, test_windows=windows, test_crops=options.test_crops,
                              test_flip=options.test_flip, **_video_common(options, seed, classes, flow_cache)), classes


def action_train_set(options: TrainDataOptions, seed: int,
                     flow_cache: FlowCache | None = None) -> tuple[Dataset, list[str]]:
    """The training set and the class names (``flow_cache``: as :func:`action_test_set`)."""
    if options.dataset == "playback":
        return _playback_set(options, seed, "train", flow_cache)
    if options.dataset == "synthetic":
        train_set = SyntheticActionDataset(options.train_items, _synthetic_config(options), seed=seed,
                                           flow_cache=flow_cache)
        return train_set, train_set.class_names
    samples, classes = _video_samples(options, "train")
    return ActionVideoDataset(samples, train=True, **_video_common(options, seed, classes, flow_cache)), classes


def action_datasets(options: TrainDataOptions, seed: int,
                    flow_cache: FlowCache | None = None) -> tuple[Dataset, Dataset, list[str]]:
    """(train set, test set, class names); synthetic data needs no files. With ``flow_cache`` the
    items hold their classical ``flows`` too."""
    train_set, classes = action_train_set(options, seed, flow_cache)
    test_set, test_classes = action_test_set(options, seed, flow_cache)
    if list(test_classes) != list(classes):
        raise UserError(f"the test set's classes differ from the training set's ({len(test_classes)} "
                        f"vs {len(classes)})")
    return train_set, test_set, list(classes)


def class_factors(options: ActionDataOptions) -> tuple[tuple[str, str], int] | None:
    """For a dataset whose class is ``major * minor + minor_index``: the two factors' names and ``minor``
    (synthetic: appearance x motion; playback: speed x direction); None for other datasets."""
    if options.dataset == "synthetic":
        return ("appearance", "motion"), options.motions
    if options.dataset == "playback":
        return ("speed", "direction"), 2
    return None
