"""UCF101 / HMDB51 / class-folder parsing and the TSN ActionVideoDataset on tiny real videos."""
from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Callable

import pytest
import torch
from torch import nn

from helpers import run_script, write_video
from hidden2stream.data import actions as actions_module
from hidden2stream.data import probe as probe_module
from hidden2stream.data.actions import (ActionVideoDataset, VideoSample, parse_class_folders,
                                        parse_hmdb51, parse_ucf101)
from hidden2stream.errors import UserError, VideoError
from hidden2stream.evaluation.actions import evaluate_actions
from hidden2stream.evaluation.report import video_counts
from hidden2stream.runtime import Runtime

SMALL = ["carphone_lowbitrate.mp4", "carphone.mp4", "tree.avi"]


def _video_root(tmp_path: Path, clips_dir: Path, layout: dict[str, list[str]]) -> Path:
    """``root/<class>/<video>`` symlinks to small shared clips (round robin)."""
    root, k = tmp_path / "videos", 0
    for cls, videos in layout.items():
        (root / cls).mkdir(parents=True)
        for name in videos:
            (root / cls / name).symlink_to(clips_dir / SMALL[k % len(SMALL)])
            k += 1
    return root


def _refused(parse: Callable[[], object], split_file: Path, text: str, match: str) -> None:
    """With ``text`` written into ``split_file``, ``parse()`` refuses in one line matching ``match``."""
    split_file.write_text(text)
    with pytest.raises(UserError, match=match) as err:
        parse()
    assert "\n" not in str(err.value)


@pytest.fixture
def ucf(tmp_path, clips_dir):
    root = _video_root(tmp_path, clips_dir, {"ApplyEyeMakeup": ["v_ApplyEyeMakeup_g01_c01.avi",
                                                                "v_ApplyEyeMakeup_g08_c01.avi"],
                                             "Biking": ["v_Biking_g01_c01.avi", "v_Biking_g08_c01.avi"]})
    splits = tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    (splits / "classInd.txt").write_text("1 ApplyEyeMakeup\r\n2 Biking\r\n")
    (splits / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nBiking/v_Biking_g08_c01.avi 2\n\n")
    (splits / "testlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nBiking/v_Biking_g01_c01.avi\n")
    return root, splits


def test_parse_ucf101(ucf):
    root, splits = ucf
    train, names = parse_ucf101(root, splits, split=1, subset="train")
    assert names == ["ApplyEyeMakeup", "Biking"]
    assert train == [VideoSample(root / "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0),
                     VideoSample(root / "Biking/v_Biking_g08_c01.avi", 1)]
    test, _ = parse_ucf101(root, splits, split=1, subset="test")
    assert [s.label for s in test] == [0, 1] and test[0].path.name == "v_ApplyEyeMakeup_g01_c01.avi"


def test_ucf101_errors(ucf):
    root, splits = ucf
    with pytest.raises(UserError, match="trainlist02.txt not found"):
        parse_ucf101(root, splits, split=2)
    parse = partial(parse_ucf101, root, splits)
    _refused(parse, splits / "trainlist01.txt", "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nBiking/x.avi seven\n",
             r"trainlist01.txt:2: malformed line")
    _refused(parse, splits / "trainlist01.txt", "Biking/absent1.avi 2\nBiking/v_Biking_g08_c01.avi 2\nBiking/absent2.avi 2\n",
             r"names 2 absent videos, first: .*absent1.avi")
    _refused(parse, splits / "classInd.txt", "1 ApplyEyeMakeup\nBiking\n", r"classInd.txt:2: malformed line")


def test_parse_hmdb51(tmp_path, clips_dir):
    root = _video_root(tmp_path, clips_dir, {"brush_hair": ["a.avi", "b.avi", "c.avi"], "wave": ["d.avi", "e.avi"]})
    splits = tmp_path / "testTrainMulti_7030_splits"
    splits.mkdir()
    (splits / "brush_hair_test_split1.txt").write_text("a.avi 1 \nb.avi 2 \nc.avi 0 \n")
    (splits / "wave_test_split1.txt").write_text("d.avi 2\ne.avi 1\n")
    train, names = parse_hmdb51(root, splits, split=1, subset="train")
    assert names == ["brush_hair", "wave"]
    assert train == [VideoSample(root / "brush_hair/a.avi", 0), VideoSample(root / "wave/e.avi", 1)]
    test, _ = parse_hmdb51(root, splits, split=1, subset="test")
    assert [(s.path.name, s.label) for s in test] == [("b.avi", 0), ("d.avi", 1)]
    with pytest.raises(UserError, match="no \\*_test_split2.txt files"):
        parse_hmdb51(root, splits, split=2)
    parse = partial(parse_hmdb51, root, splits)
    _refused(parse, splits / "wave_test_split1.txt", "d.avi 2\ne.avi 1\nf.avi 1\n",
             r"wave_test_split1.txt names absent videos \(1 in split 1\), first: .*f.avi")
    _refused(parse, splits / "wave_test_split1.txt", "d.avi 2\ne.avi train\n", r"wave_test_split1.txt:2: malformed line")


def test_class_folders_dataset_train_items(tmp_path, clips_dir):
    root = _video_root(tmp_path, clips_dir, {"b_talk": ["1.mp4", "2.mp4"], "a_tree": ["3.avi"]})
    samples, names = parse_class_folders(root)
    assert names == ["a_tree", "b_talk"]
    assert [(s.path.name, s.label) for s in samples] == [("3.avi", 0), ("1.mp4", 1), ("2.mp4", 1)]
    ds = ActionVideoDataset(samples, len(names), segments=2, frames=3, size=(32, 32), train=True)
    item = ds[1]
    assert item["frames"].shape == (2, 3, 3, 32, 32) and item["label"].dtype == torch.long
    assert int(item["label"]) == 1 and 0 <= item["frames"].min() and item["frames"].max() <= 1
    assert torch.equal(item["frames"], ds[1]["frames"])
    ds.set_epoch(3)
    assert not torch.equal(item["frames"], ds[1]["frames"])
    loader = torch.utils.data.DataLoader(ds, batch_size=3)
    batch = next(iter(loader))
    assert batch["frames"].shape == (3, 2, 3, 3, 32, 32) and batch["label"].tolist() == [0, 1, 1]


def test_class_folder_errors(tmp_path):
    with pytest.raises(UserError, match="holds no class folders"):
        parse_class_folders(tmp_path)
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(UserError, match="holds no videos"):
        parse_class_folders(tmp_path)


def test_test_mode_views(tmp_path, clips_dir):
    samples = [VideoSample(clips_dir / "carphone_lowbitrate.mp4", 0)]
    centre = ActionVideoDataset(samples, 1, frames=3, size=(32, 32), train=False, test_windows=4)
    assert centre[0]["frames"].shape == (1, 4, 3, 3, 32, 32)
    multi = ActionVideoDataset(samples, 1, frames=3, size=(32, 32), train=False, test_windows=4,
                               test_crops="multi", test_flip=True)
    views = multi[0]["frames"]
    assert views.shape == (10, 4, 3, 3, 32, 32)
    assert torch.equal(views[0], centre[0]["frames"][0])  # first view is the centre crop
    assert torch.equal(views[5:], views[:5].flip(-1))  # flipped views follow
    assert not torch.equal(views[1], views[4])  # corners differ


def test_broken_videos_are_dropped_when_the_dataset_is_built(clips_dir, bad_videos_dir, caplog, monkeypatch):
    samples = [VideoSample(clips_dir / "carphone_lowbitrate.mp4", 0),
               VideoSample(bad_videos_dir / "not_a_video.mp4", 1),
               VideoSample(bad_videos_dir / "too_short_5_frames.mp4", 1),
               VideoSample(clips_dir / "tree.avi", 1)]
    with caplog.at_level(logging.WARNING):
        ds = ActionVideoDataset(samples, 2, segments=2, frames=11, size=(32, 32))
    assert [s.path.name for s in ds.samples] == ["carphone_lowbitrate.mp4", "tree.avi"] and len(ds) == 2
    assert [int(ds[i]["label"]) for i in range(len(ds))] == [0, 1]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 3 and all("\n" not in m for m in messages)
    assert "not_a_video.mp4 is not a readable video" in messages[0]
    assert "too_short_5_frames.mp4 is too short: 5 frames, a window needs 11" in messages[1]
    assert messages[2].startswith("dropped 2 of 4 videos in ") and "unreadable or shorter than 11 frames" in messages[2]
    assert ds.dropped == [m.removeprefix("dropped video: ") for m in messages[:2]]
    probes = []
    monkeypatch.setattr(probe_module, "probe_video", lambda path: probes.append(path))
    again = ActionVideoDataset(samples, 2, segments=2, frames=11, size=(32, 32), train=False)
    assert again.samples == ds.samples and again.dropped == ds.dropped and probes == []  # probed once per file


def test_all_bad_videos_raise_user_error(bad_videos_dir):
    samples = [VideoSample(bad_videos_dir / "empty.mp4", 0), VideoSample(bad_videos_dir / "truncated.mp4", 0)]
    with pytest.raises(UserError, match=f"no usable video in {bad_videos_dir}: all 2 are unreadable or shorter "
                                        "than 3 frames") as err:
        ActionVideoDataset(samples, 1, frames=3, size=(32, 32))
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="outside 0..0"):
        ActionVideoDataset([VideoSample(bad_videos_dir / "empty.mp4", 1)], 1)


# ---------------------------------------------------------------- no video stands in for another
CPU = Runtime(device=torch.device("cpu"))
DARK, BRIGHT = 40, 215


class BrightnessOracle(nn.Module):
    """Every head says class 1 for a bright clip and 0 for a dark one: a video scores right only as itself."""

    def forward(self, frames: torch.Tensor, streams=("spatial", "temporal")) -> dict[str, torch.Tensor]:
        logits = nn.functional.one_hot((frames.flatten(1).mean(1) > 0.5).long(), 2).float() * 5
        return {"spatial": logits, "temporal": logits, "fused": logits}


def _mixed_class_folders(root: Path) -> Path:
    """10 files in 2 class folders: 3 readable videos (dark ones in ``a_dark``, a bright one in
    ``b_bright``), 6 unreadable files (empty, text, an mp4 cut before its index) and a 4-frame video."""
    for name, level in (("a_dark/1.mp4", DARK), ("a_dark/2.mp4", DARK), ("b_bright/1.mp4", BRIGHT)):
        write_video(root / name, 12, level)
    whole = (root / "a_dark/1.mp4").read_bytes()
    for folder in ("a_dark", "b_bright"):
        (root / folder / "empty.mp4").write_bytes(b"")
        (root / folder / "notes.mp4").write_text("not a video\n")
        (root / folder / "cut.mp4").write_bytes(whole[:len(whole) // 3])
    write_video(root / "b_bright/short.mp4", 4, BRIGHT)
    return root


def test_evaluation_scores_only_readable_videos_each_with_its_own_label(tmp_path, caplog):
    """The "10 test videos, top-1 0.500" bug: 7 of 10 files unusable were stood in for by readable ones."""
    root = _mixed_class_folders(tmp_path / "videos")
    samples, names = parse_class_folders(root)
    assert len(samples) == 10 and names == ["a_dark", "b_bright"]
    with caplog.at_level(logging.WARNING):
        test_set = ActionVideoDataset(samples, 2, segments=2, frames=6, size=(32, 32), train=False, test_windows=2)
    assert [(s.path.name, s.label) for s in test_set.samples] == [("1.mp4", 0), ("2.mp4", 0), ("1.mp4", 1)]
    assert caplog.messages[-1] == f"dropped 7 of 10 videos in {root}: unreadable or shorter than 6 frames"
    assert len(caplog.messages) == 8 and all("\n" not in m for m in caplog.messages)
    report = evaluate_actions(BrightnessOracle(), test_set, CPU, num_classes=2, batch_size=2)
    assert report.videos == 3 and report.labels.tolist() == [0, 0, 1] and report.clips == 3
    assert report.video_top1["fused"] == 1.0  # each video scored on its own frames under its own label
    assert len(report.skipped) == 7 and report.as_dict()["skipped"] == 7
    assert video_counts(report) == "scored 3 videos, skipped 7 (unreadable or too short: see the log)"


def _fail_reading(monkeypatch, bad: Path | None) -> None:
    """Make every window read of ``bad`` (None: of every video) fail as a video that decodes fewer
    frames than it holds."""
    real = actions_module.read_window

    def failing(path, *args):
        if bad is None or path == bad:
            raise VideoError(f"{path} holds fewer frames than asked")
        return real(path, *args)

    monkeypatch.setattr(actions_module, "read_window", failing)


def test_a_test_video_failing_to_decode_is_skipped_not_replaced(tmp_path, caplog, monkeypatch):
    root = _mixed_class_folders(tmp_path / "videos")
    test_set = ActionVideoDataset(parse_class_folders(root)[0], 2, segments=2, frames=6, size=(32, 32), train=False)
    _fail_reading(monkeypatch, root / "a_dark/2.mp4")
    with pytest.raises(VideoError, match="2.mp4 holds fewer frames"):
        test_set[1]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hidden2stream.evaluation.actions"):
        report = evaluate_actions(BrightnessOracle(), test_set, CPU, num_classes=2, batch_size=3)
    assert report.videos == 2 and report.labels.tolist() == [0, 1] and report.video_top1["fused"] == 1.0
    assert len(report.skipped) == 8 and report.skipped[-1] == f"{root / 'a_dark/2.mp4'} holds fewer frames than asked"
    assert caplog.messages == [f"skipped in the evaluation: {root / 'a_dark/2.mp4'} holds fewer frames than asked"]
    assert video_counts(report) == "scored 2 videos, skipped 8 (unreadable or too short: see the log)"


def test_a_training_video_failing_to_decode_gives_way_to_another_with_its_own_label(tmp_path, caplog, monkeypatch):
    root = _mixed_class_folders(tmp_path / "videos")
    train_set = ActionVideoDataset(parse_class_folders(root)[0], 2, segments=2, frames=6, size=(32, 32))
    _fail_reading(monkeypatch, root / "b_bright/1.mp4")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hidden2stream.data.actions"):
        for epoch in range(3):
            train_set.set_epoch(epoch)
            for i in range(len(train_set)):
                item = train_set[i]
                assert int(item["label"]) == int(item["frames"].mean() > 0.5)  # the frames' own label
    assert len(caplog.records) == 1 and "b_bright/1.mp4" in caplog.messages[0]
    _fail_reading(monkeypatch, None)  # every video
    with pytest.raises(UserError, match="every video of the training set failed to decode"):
        train_set[0]


def test_training_on_a_small_folder_names_its_usable_videos_and_a_batch_size(tmp_path):
    root = _mixed_class_folders(tmp_path / "videos")
    result = run_script("experiments", "train_two_stream",
                        ["--dataset", "folder", "--video-root", str(root), "--test-root", str(root), "--size", "32",
                         "--out", str(tmp_path / "run"), "--device", "cpu"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: the training set has 3 items (videos, clips or windows), fewer than one global batch "
        "(--batch-size 16 = 16 x 1 processes x 1 accumulation steps): pass --batch-size 3 or less")
