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

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from torch.utils.data import Dataset

from hidden2stream.cli import existing_dir, frame_count, image_size, options_check, positive_int, probability
from hidden2stream.data.actions import (TEST_CROPS, ActionVideoDataset, VideoSample, parse_class_folders,
                                        parse_hmdb51, parse_ucf101)
from hidden2stream.data.playback import PlaybackDataset, check_disjoint, find_videos, split_by_video
from hidden2stream.data.synthetic_actions import SyntheticActionConfig, SyntheticActionDataset
from hidden2stream.errors import UserError

if TYPE_CHECKING:
    from hidden2stream.flow.cache import FlowCache

log = logging.getLogger(__name__)

DATASETS = ("synthetic", "ucf101", "hmdb51", "folder", "playback")
VIDEO_TEST_WINDOWS = 5  # evenly spaced test windows per real video unless --test-windows says otherwise
PLAYBACK_TEST_WINDOWS = 4  # --dataset playback: test windows per video and class (centre crop only)
TEST_SEED_OFFSET = 10_000


def add_action_data_args(parser: argparse.ArgumentParser, *, train: bool = True, frames: int | None = 6,
                         segments: int | None = 3, size: tuple[int, int] | None = (64, 64),
                         appearances: int | None = 3, motions: int | None = 4,
                         test_items: int | None = 240) -> argparse._ArgumentGroup:
    """The ``data`` option group; ``train=False`` leaves out the training-set options. A default of
    None means "the caller fills it in" (``evaluate.py``: from the checkpoint)."""
    data = parser.add_argument_group("data")
    data.add_argument("--dataset", default="synthetic", choices=DATASETS)
    data.add_argument("--video-root", type=existing_dir, help="videos (ucf101/hmdb51/folder of class folders)")
    data.add_argument("--split-dir", type=existing_dir, help="folder of the official split files")
    data.add_argument("--split", type=int, default=1, choices=[1, 2, 3])
    data.add_argument("--test-root", type=existing_dir,
                      help="--dataset folder: test class folders; --dataset playback: test videos (any folder)")
    data.add_argument("--test-fraction", type=probability, default=0.25,
                      help="--dataset playback without --test-root: share of --video-root's videos held out")
    data.add_argument("--appearances", type=positive_int, default=appearances, help="synthetic: colour schemes")
    data.add_argument("--motions", type=positive_int, default=motions, help="synthetic: motion kinds (<= 8)")
    if train:
        data.add_argument("--train-items", type=positive_int, default=3000, help="synthetic train clips")
    data.add_argument("--test-items", type=positive_int, default=test_items, help="synthetic test clips")
    data.add_argument("--frames", type=frame_count, default=frames, help="T+1 frames per window (paper: 11)")
    data.add_argument("--segments", type=positive_int, default=segments, help="TSN segments K")
    data.add_argument("--size", type=image_size, default=size)
    data.add_argument("--frame-cache", type=Path,
                      help="decode each video once into uint8 frames under DIR, then read those")
    data.add_argument("--test-windows", type=positive_int,
                      help=f"evenly spaced test windows per video (default: {VIDEO_TEST_WINDOWS} for videos; "
                           "synthetic: the K segments at their TSN offsets); the paper: 25")
    data.add_argument("--test-crops", choices=TEST_CROPS, default="centre",
                      help="centre crop, or centre + 4 corners (multi, the paper)")
    data.add_argument("--test-flip", action="store_true", help="also the flipped crops (the paper)")
    return data


def views_per_video(args: argparse.Namespace) -> tuple[int, int]:
    """``(windows, views)`` per test video under the options: views = crops x flips."""
    if args.dataset == "playback":
        return args.test_windows or PLAYBACK_TEST_WINDOWS, 1
    windows = args.test_windows or (args.segments if args.dataset == "synthetic" else VIDEO_TEST_WINDOWS)
    return windows, (5 if args.test_crops == "multi" else 1) * (2 if args.test_flip else 1)


def protocol_name(args: argparse.Namespace) -> str:
    """A short description of the test protocol, e.g. ``25 windows x 10 views (multi crops, flipped)``."""
    windows, views = views_per_video(args)
    return (f"{windows} windows x {views} view{'s' if views > 1 else ''} "
            f"({args.test_crops} crop{'s' if args.test_crops == 'multi' else ''}{', flipped' if args.test_flip else ''})")


def _synthetic_config(args: argparse.Namespace) -> SyntheticActionConfig:
    """The synthetic clips the options describe; a combination that cannot work (more motions than
    there are, objects moving out of the frame) is refused in one line naming the options."""
    height, width = args.size
    return options_check("--segments / --frames / --size / --appearances / --motions", SyntheticActionConfig,
                         segments=args.segments, frames=args.frames, height=height, width=width,
                         appearances=args.appearances, motions=args.motions)


def _video_samples(args: argparse.Namespace, subset: str) -> tuple[list[VideoSample], list[str]]:
    """The labelled videos of ``subset`` (``train``/``test``) and the class names."""
    if args.video_root is None:
        raise UserError(f"--dataset {args.dataset} needs --video-root")
    if args.dataset == "folder":
        if args.test_root is None:
            raise UserError("--dataset folder needs --test-root (class folders of test videos)")
        classes = parse_class_folders(args.video_root)[1]
        samples, found = parse_class_folders(args.video_root if subset == "train" else args.test_root)
        if found != classes:
            raise UserError(f"{args.test_root} has other classes than {args.video_root}")
        return samples, classes
    if args.split_dir is None:
        raise UserError(f"--dataset {args.dataset} needs --split-dir (official split files)")
    parse = parse_ucf101 if args.dataset == "ucf101" else parse_hmdb51
    return parse(args.video_root, args.split_dir, args.split, subset)


def _video_common(args: argparse.Namespace, classes: list[str], flow_cache: FlowCache | None = None) -> dict:
    return dict(num_classes=len(classes), segments=args.segments, frames=args.frames, size=args.size,
                seed=args.seed, cache_dir=args.frame_cache, flow_cache=flow_cache)


def _playback_videos(args: argparse.Namespace, subset: str) -> list[Path]:
    """The ``train`` or ``test`` videos of ``--dataset playback``: two folders that share no video,
    or one folder split by video (the same split for both subsets)."""
    if args.video_root is None:
        raise UserError("--dataset playback needs --video-root (a folder of videos)")
    if args.test_root is None:
        train, test = split_by_video(find_videos(args.video_root), args.test_fraction, args.seed)
    else:
        train, test = find_videos(args.video_root), find_videos(args.test_root)
        check_disjoint(train, test)
    return train if subset == "train" else test


def _playback_set(args: argparse.Namespace, subset: str,
                  flow_cache: FlowCache | None) -> tuple[Dataset, list[str]]:
    dataset = PlaybackDataset(_playback_videos(args, subset), frames=args.frames, size=args.size,
                              train=subset == "train", segments=args.segments,
                              test_windows=args.test_windows or PLAYBACK_TEST_WINDOWS, seed=args.seed,
                              cache_dir=args.frame_cache, flow_cache=flow_cache)
    return dataset, dataset.class_names


def action_test_set(args: argparse.Namespace, flow_cache: FlowCache | None = None) -> tuple[Dataset, list[str]]:
    """The test set under the options' test protocol, and the class names; with ``flow_cache`` (the
    two-stage model) its items hold their classical ``flows`` too."""
    if args.dataset == "playback":
        return _playback_set(args, "test", flow_cache)
    if args.dataset == "synthetic":
        if args.test_flip:
            log.warning("--test-flip on the synthetic data mirrors its motions (right <-> left, clockwise <-> "
                        "counter-clockwise): the flipped views show another class's motion")
        test_set = SyntheticActionDataset(args.test_items, _synthetic_config(args), seed=TEST_SEED_OFFSET + args.seed,
                                          test_windows=args.test_windows, test_crops=args.test_crops,
                                          test_flip=args.test_flip, flow_cache=flow_cache)
        return test_set, test_set.class_names
    samples, classes = _video_samples(args, "test")
    windows = args.test_windows or VIDEO_TEST_WINDOWS
    return ActionVideoDataset(samples, train=False, test_windows=windows, test_crops=args.test_crops,
                              test_flip=args.test_flip, **_video_common(args, classes, flow_cache)), classes


def action_train_set(args: argparse.Namespace, flow_cache: FlowCache | None = None) -> tuple[Dataset, list[str]]:
    """The training set and the class names (``flow_cache``: as :func:`action_test_set`)."""
    if args.dataset == "playback":
        return _playback_set(args, "train", flow_cache)
    if args.dataset == "synthetic":
        train_set = SyntheticActionDataset(args.train_items, _synthetic_config(args), seed=args.seed,
                                           flow_cache=flow_cache)
        return train_set, train_set.class_names
    samples, classes = _video_samples(args, "train")
    return ActionVideoDataset(samples, train=True, **_video_common(args, classes, flow_cache)), classes


def action_datasets(args: argparse.Namespace,
                    flow_cache: FlowCache | None = None) -> tuple[Dataset, Dataset, list[str]]:
    """(train set, test set, class names); synthetic data needs no files. With ``flow_cache`` the
    items hold their classical ``flows`` too."""
    train_set, classes = action_train_set(args, flow_cache)
    test_set, test_classes = action_test_set(args, flow_cache)
    if list(test_classes) != list(classes):
        raise UserError(f"the test set's classes differ from the training set's ({len(test_classes)} "
                        f"vs {len(classes)})")
    return train_set, test_set, list(classes)
