"""UCF101 / HMDB51 / class-folder parsing and the TSN ActionVideoDataset on tiny real videos."""
from __future__ import annotations

import logging
from functools import partial
from pathlib import Path
from typing import Callable

import pytest
import torch

from hidden2stream.data.actions import (ActionVideoDataset, VideoSample, parse_class_folders,
                                        parse_hmdb51, parse_ucf101)
from hidden2stream.errors import UserError

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


def test_broken_videos_are_skipped_and_epoch_completes(tmp_path, clips_dir, bad_videos_dir, caplog):
    samples = [VideoSample(clips_dir / "carphone_lowbitrate.mp4", 0),
               VideoSample(bad_videos_dir / "not_a_video.mp4", 1),
               VideoSample(bad_videos_dir / "too_short_5_frames.mp4", 1),
               VideoSample(clips_dir / "tree.avi", 1)]
    ds = ActionVideoDataset(samples, 2, segments=2, frames=11, size=(32, 32))
    with caplog.at_level(logging.WARNING, logger="hidden2stream.data.actions"):
        labels = [int(ds[i]["label"]) for i in range(len(ds))]
        labels += [int(ds[i]["label"]) for i in range(len(ds))]  # second pass: no new log lines
    assert labels == [0, 1, 1, 1] * 2  # bad items 1, 2 replaced by the next valid sample (tree.avi)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2 and "not_a_video.mp4" in messages[0] and "too_short_5_frames.mp4" in messages[1]
    assert "too short" in messages[1] and all("\n" not in m for m in messages)


def test_all_bad_videos_raise_user_error(bad_videos_dir):
    samples = [VideoSample(bad_videos_dir / "empty.mp4", 0), VideoSample(bad_videos_dir / "truncated.mp4", 0)]
    ds = ActionVideoDataset(samples, 1, frames=3, size=(32, 32))
    with pytest.raises(UserError, match="every video"):
        ds[0]
    with pytest.raises(ValueError, match="outside 0..0"):
        ActionVideoDataset([VideoSample(bad_videos_dir / "empty.mp4", 1)], 1)
