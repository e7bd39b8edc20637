"""PyAV decoding, TSN sampling, unlabelled window dataset, frame cache, augmentation, benchmark."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import load_script, write_video
from hidden2stream.data import clips as clips_module
from hidden2stream.data import probe as probe_module
from hidden2stream.data.augment import clip_augmentation
from hidden2stream.data.clips import VideoWindowDataset
from hidden2stream.data.frame_cache import extract_frames, read_cached_frames
from hidden2stream.data.probe import PROBE_FILE, probe_videos
from hidden2stream.data.sampling import evenly_spaced_starts, item_generator, segment_starts
from hidden2stream.data.video import probe_video, read_frames, scaled_size
from hidden2stream.errors import UserError, VideoError


def _link(folder: Path, *sources: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for src in sources:
        (folder / src.name).symlink_to(src)
    return folder


# ---------------------------------------------------------------- video.py
@pytest.mark.parametrize("name, frames, width, height, fps", [
    ("pedestrians_vtest.avi", 795, 768, 576, 10.0), ("megamind.avi", 270, 720, 528, 23.976),
    ("tree.avi", 68, 320, 240, 15.0), ("bikes.mp4", 250, 640, 272, 25.0),
    ("carphone_lowbitrate.mp4", 120, 176, 144, 29.97),
])
def test_probe_shared_clips(clips_dir, name, frames, width, height, fps):
    info = probe_video(clips_dir / name)
    assert (info.num_frames, info.width, info.height) == (frames, width, height)
    assert info.fps == pytest.approx(fps, abs=0.01)
    assert info.path == clips_dir / name


@pytest.mark.parametrize("name", ["empty.mp4", "not_a_video.mp4", "truncated.mp4"])
def test_unopenable_files_give_one_line_video_error(bad_videos_dir, name):
    with pytest.raises(VideoError, match="is not a readable video") as err:
        probe_video(bad_videos_dir / name)
    assert "\n" not in str(err.value) and name in str(err.value)


def test_missing_file_is_video_error(tmp_path):
    with pytest.raises(VideoError, match=r"not a readable video \(file not found\)"):
        read_frames(tmp_path / "nope.mp4", 0, 2)


def test_too_short_video_fails_to_read_11_frames(bad_videos_dir):
    path = bad_videos_dir / "too_short_5_frames.mp4"
    assert probe_video(path).num_frames == 5
    assert read_frames(path, 0, 5, size=(16, 16)).shape == (5, 3, 16, 16)
    with pytest.raises(VideoError, match="only 5 decodable"):
        read_frames(path, 0, 11)


def test_truncated_midstream_fails_past_frame_194(bad_videos_dir):
    path = bad_videos_dir / "truncated_midstream.avi"
    assert read_frames(path, 180, 11, size=(24, 32)).shape == (11, 3, 24, 32)
    with pytest.raises(VideoError, match="only 194 decodable") as err:
        read_frames(path, 190, 11, size=(24, 32))
    assert path.name in str(err.value) and "\n" not in str(err.value)


def test_truncated_video_warns_once_with_both_frame_counts(tmp_path, bad_videos_dir, clips_dir, caplog):
    """truncated_midstream.avi announces 795 frames and holds 194: one warning per file, however often
    it is probed or read; its frame count is what it holds. tree.avi's header counts 444 time ticks
    for 68 frames spread over them: not truncated."""
    path = tmp_path / "copy.avi"  # a path this process has not probed yet
    path.write_bytes((bad_videos_dir / "truncated_midstream.avi").read_bytes())
    with caplog.at_level(logging.WARNING):
        info = probe_video(path)
        read_frames(path, 180, 11, size=(24, 32))
        probe_videos([path, path])
        VideoWindowDataset(_link(tmp_path / "v", path), frames=11, size=(16, 16))
        assert probe_video(clips_dir / "tree.avi").announced_frames is None
    assert (info.num_frames, info.announced_frames) == (194, 795)
    assert caplog.messages == [f"{path} is truncated: it holds 194 of the 795 frames its header announces"]


def test_too_short_video_error_names_the_file(tmp_path):
    video = write_video(tmp_path / "one_frame.mp4", 1)
    with pytest.raises(VideoError) as err:
        evenly_spaced_starts(probe_video(video).num_frames, 3, 6, video=video)
    assert str(err.value) == f"{video} is too short: 1 frame, a window needs 6"
    with pytest.raises(VideoError, match=f"^{video} is too short: 1 frame, a window needs 11$"):
        segment_starts(1, 3, 11, video=video)


def test_read_frames_range_and_resize(clips_dir):
    frames = read_frames(clips_dir / "carphone_lowbitrate.mp4", 10, 4)
    assert frames.shape == (4, 3, 144, 176) and frames.dtype == torch.float32
    assert 0.0 <= frames.min() and frames.max() <= 1.0 and frames.std() > 0.05
    small = read_frames(clips_dir / "carphone_lowbitrate.mp4", 10, 4, size=(36, 44))
    assert small.shape == (4, 3, 36, 44)
    assert scaled_size(176, 144, 72) == (72, 88) and scaled_size(240, 320, 60) == (80, 60)


@pytest.mark.parametrize("name, start", [("bikes.mp4", 131), ("megamind.avi", 150),
                                         ("pedestrians_vtest.avi", 333), ("tree.avi", 40)])
def test_seek_and_no_seek_give_identical_frames(clips_dir, name, start):
    fast = read_frames(clips_dir / name, start, 3, size=(32, 40), seek=True)
    slow = read_frames(clips_dir / name, start, 3, size=(32, 40), seek=False)
    assert torch.equal(fast, slow)
    assert not torch.equal(fast[0], fast[2])  # real consecutive frames, not one repeated


# ---------------------------------------------------------------- sampling.py
def test_segment_starts_centre_and_random():
    assert segment_starts(31, 3, 11) == [3, 10, 17]  # 21 starts in 3 parts of 7, centres
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        starts = segment_starts(31, 3, 11, gen)
        assert all(7 * k <= s < 7 * (k + 1) for k, s in enumerate(starts))
    assert segment_starts(11, 3, 11, gen) == [0, 0, 0]
    with pytest.raises(VideoError, match="too short"):
        segment_starts(5, 3, 11)


def test_evenly_spaced_starts_and_item_generator():
    assert evenly_spaced_starts(30, 3, 11) == [0, 10, 19]
    assert evenly_spaced_starts(30, 1, 11) == [9]
    with pytest.raises(VideoError, match="too short"):
        evenly_spaced_starts(4, 2, 11)
    a = torch.rand(3, generator=item_generator(0, 5, 1))
    assert torch.equal(a, torch.rand(3, generator=item_generator(0, 5, 1)))
    assert not torch.equal(a, torch.rand(3, generator=item_generator(0, 5, 2)))


# ---------------------------------------------------------------- clips.py
def test_window_dataset_over_shared_clips(clips_dir):
    ds = VideoWindowDataset(clips_dir, frames=3, size=(32, 32), windows_per_video=2)
    assert len(ds) == 2 * 7
    item = ds[0]["frames"]
    assert item.shape == (3, 3, 32, 32) and 0 <= item.min() and item.max() <= 1
    assert torch.equal(item, ds[0]["frames"])
    ds.set_epoch(1)
    assert not torch.equal(item, ds[0]["frames"])
    val = VideoWindowDataset(clips_dir, frames=3, size=(32, 32), windows_per_video=2, part="val")
    first = val[3]["frames"]
    val.set_epoch(5)
    assert torch.equal(first, val[3]["frames"])


def test_window_dataset_crops_from_a_larger_short_side(clips_dir):
    val = VideoWindowDataset(clips_dir, frames=3, size=(32, 32), windows_per_video=1, part="val", short_side=64)
    index = val.video_names.index("carphone.mp4")  # 176x144 -> 78x64
    crop = val[index]["frames"]
    path, first, length = val.videos[index]
    info = probe_video(path)
    # the held-out window is the centre 32x32 of 78x64 frames, at some start in the held-out part
    centres = [read_frames(path, start, 3, scaled_size(info.width, info.height, 64))[..., 16:48, 23:55]
               for start in range(first, first + length - 2)]
    assert crop.shape == (3, 3, 32, 32) and any(torch.allclose(crop, c, atol=1 / 255) for c in centres)
    train = VideoWindowDataset(clips_dir, frames=3, size=(32, 32), windows_per_video=4, short_side=96)
    assert {tuple(train[i]["frames"].shape) for i in range(len(train))} == {(3, 3, 32, 32)}
    with pytest.raises(UserError, match="smaller than the crop"):
        VideoWindowDataset(clips_dir, frames=3, size=(32, 32), short_side=16)


def test_window_dataset_skips_bad_videos_with_log_lines(tmp_path, clips_dir, bad_videos_dir, caplog):
    folder = _link(tmp_path / "videos", clips_dir / "carphone_lowbitrate.mp4", *sorted(bad_videos_dir.iterdir()))
    with caplog.at_level(logging.WARNING):
        ds = VideoWindowDataset(folder, frames=11, size=(32, 48), windows_per_video=3)
    dropped = [r.getMessage() for r in caplog.records if r.name == "hidden2stream.data.probe"]
    names = ["empty.mp4", "not_a_video.mp4", "too_short_5_frames.mp4", "truncated.mp4"]
    assert [m.startswith("dropped video: ") and f"/{n} " in m for m, n in zip(dropped, names)] == [True] * 4
    assert "the train part of" in dropped[2] and "too short: 4 frames, a window needs 11" in dropped[2]
    assert dropped[4:] == [f"dropped 4 of 6 videos in {folder}: unreadable or shorter than 11 frames in the train part"]
    assert all("\n" not in r.getMessage() for r in caplog.records)
    assert len(ds.dropped) == 4 and [p.name for p, _, _ in ds.videos] == ["carphone_lowbitrate.mp4",
                                                                        "truncated_midstream.avi"]
    assert ds.videos[1][2] == int(194 * 0.8)  # the frames the truncated file holds, not the 795 it announces
    for i in range(len(ds)):
        assert ds[i]["frames"].shape == (11, 3, 32, 48)


def test_window_dataset_replaces_video_failing_mid_epoch(tmp_path, clips_dir, caplog, monkeypatch):
    folder = _link(tmp_path / "v", clips_dir / "carphone.mp4", clips_dir / "carphone_lowbitrate.mp4")
    ds = VideoWindowDataset(folder, frames=3, size=(16, 16), windows_per_video=2)
    real = clips_module.read_window

    def failing(path, *args):
        if path.name == "carphone.mp4":
            raise VideoError(f"{path} holds fewer frames than asked")
        return real(path, *args)

    monkeypatch.setattr(clips_module, "read_window", failing)
    with caplog.at_level(logging.WARNING, logger="hidden2stream.data.clips"):
        items = [ds[i]["frames"] for i in range(len(ds))]
    assert all(x.shape == (3, 3, 16, 16) for x in items)
    assert len(caplog.records) == 1 and "carphone.mp4" in caplog.records[0].getMessage()
    monkeypatch.setattr(clips_module, "read_window", lambda p, *a: failing(folder / "carphone.mp4"))
    ds._failed.clear()
    with pytest.raises(UserError, match="every video failed"):
        ds[0]


def test_window_dataset_without_usable_video(tmp_path, bad_videos_dir):
    folder = _link(tmp_path / "bad", bad_videos_dir / "empty.mp4", bad_videos_dir / "too_short_5_frames.mp4")
    with pytest.raises(UserError, match="no usable video"):
        VideoWindowDataset(folder, frames=11)
    with pytest.raises(UserError, match="does not exist"):
        VideoWindowDataset(tmp_path / "absent")


def test_validation_window_failing_to_decode_raises(tmp_path, clips_dir, monkeypatch):
    """Held-out windows are scores: a video that fails is not replaced by another one."""
    folder = _link(tmp_path / "v", clips_dir / "carphone.mp4", clips_dir / "carphone_lowbitrate.mp4")
    val = VideoWindowDataset(folder, frames=3, size=(16, 16), windows_per_video=1, part="val")

    def failing(path, *args):
        raise VideoError(f"{path} holds fewer frames than asked")

    monkeypatch.setattr(clips_module, "read_window", failing)
    with pytest.raises(VideoError, match="carphone.mp4 holds fewer frames"):
        val[0]


# ---------------------------------------------------------------- probe.py
def test_probes_are_cached_in_process_and_on_disk(tmp_path, monkeypatch):
    good, bad = write_video(tmp_path / "v/good.mp4", 7), tmp_path / "v/bad.mp4"
    bad.write_text("not a video")
    cache = tmp_path / "cache"
    first = probe_videos([good, bad], cache)
    assert first[0].num_frames == 7 and isinstance(first[1], VideoError) and "bad.mp4 is not a readable" in str(first[1])
    assert set(json.loads((cache / PROBE_FILE).read_text())) == {str(good), str(bad)}
    probes = []
    monkeypatch.setattr(probe_module, "probe_video", lambda path: probes.append(path) or probe_video(path))
    assert [str(r) for r in probe_videos([good, bad])] == [str(r) for r in first] and probes == []  # in process
    monkeypatch.setattr(probe_module, "_known", {})  # a new process: only the file on disk knows
    again = probe_videos([good, bad], cache)
    assert again[0] == first[0] and str(again[1]) == str(first[1]) and probes == []
    write_video(good, 9)  # changed (size and mtime): probed anew
    assert probe_videos([good, bad], cache)[0].num_frames == 9 and probes == [good]


# ---------------------------------------------------------------- frame_cache.py
def test_frame_cache_matches_decoder(tmp_path, clips_dir):
    video = clips_dir / "carphone_lowbitrate.mp4"
    npy = extract_frames(video, tmp_path / "cache", 32)
    frames = np.load(npy, mmap_mode="r")
    assert frames.shape == (120, 32, 39, 3) and frames.dtype == np.uint8
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [npy.name]  # no temp file left
    mtime = npy.stat().st_mtime_ns
    assert extract_frames(video, tmp_path / "cache", 32) == npy and npy.stat().st_mtime_ns == mtime
    cached = read_cached_frames(npy, 50, 4)
    assert torch.equal(cached, read_frames(video, 50, 4, size=(32, 39)))
    with pytest.raises(VideoError, match="holds 120 frames"):
        read_cached_frames(npy, 118, 4)
    ds = VideoWindowDataset(_link(tmp_path / "v", video), frames=3, size=(32, 32), windows_per_video=2,
                            cache_dir=tmp_path / "cache")
    assert torch.equal(ds[1]["frames"], VideoWindowDataset(tmp_path / "v", frames=3, size=(32, 32),
                                                           windows_per_video=2)[1]["frames"])


# ---------------------------------------------------------------- augment.py
def test_augmentation_is_the_same_on_every_frame():
    torch.manual_seed(0)
    aug = clip_augmentation(train=True, flip=True, color_jitter=0.3)
    clip = torch.rand(4, 1, 3, 12, 12).expand(4, 5, 3, 12, 12).contiguous()
    out = aug(clip)
    assert out.shape == clip.shape
    assert torch.allclose(out, out[:, :1].expand_as(out))  # constant clip stays constant
    assert (out - clip).abs().max() > 0.01  # and was actually transformed
    assert not torch.allclose(out[0] - clip[0], out[1] - clip[1])  # clips get different parameters
    x = torch.rand(1, 2, 3, 8, 8)
    assert torch.equal(clip_augmentation(train=False)(x), x)
    with pytest.raises(ValueError):
        clip_augmentation(color_jitter=-1)


# ---------------------------------------------------------------- benchmarks/decode_speed.py
def _benchmark():
    return load_script("benchmarks", "decode_speed")


def test_decode_speed_benchmark_smoke(tmp_path, clips_dir, capsys):
    bench = _benchmark()
    folder = _link(tmp_path / "clips", clips_dir / "carphone_lowbitrate.mp4")
    out = tmp_path / "out"
    assert bench.main(["--clips", str(folder), "--frames", "3", "--size", "32", "--windows", "2",
                       "--repeats", "1", "--out", str(out)]) == 0
    result = json.loads((out / "decode_speed.json").read_text())
    assert set(result) == {"machine", "settings", "clips", "total", "generators"}
    assert set(result["generators"]) == {"synthetic_flow", "synthetic_actions"}
    assert all(rate > 0 for rate in result["generators"].values())
    assert {"seek", "no_seek", "cache", "windows", "cache_extract_s"} <= set(result["total"])
    assert result["total"]["windows"] == 2 and result["machine"]["cores"] >= 1
    assert "| carphone_lowbitrate.mp4 |" in (out / "decode_speed.md").read_text()
    assert "| synthetic_actions |" in (out / "decode_speed.md").read_text()
    assert bench.main(["--clips", str(tmp_path / "absent")]) == 2
    assert capsys.readouterr().err.strip().endswith("not found")


def test_window_dataset_random_stride_spaces_the_frames(clips_dir):
    """``max_stride``: training windows take every s-th frame (s in 1..max_stride), each window an exact
    strided run of the video's frames; validation windows stay consecutive."""
    train = VideoWindowDataset(clips_dir, frames=3, size=(32, 32), windows_per_video=6, short_side=32, max_stride=3)
    index = train.video_names.index("carphone.mp4")
    path, first, length = train.videos[index]
    info = probe_video(path)
    video = read_frames(path, first, length, scaled_size(info.width, info.height, 32))
    strides = set()
    for i in range(index, len(train), len(train.videos)):  # the windows of carphone.mp4
        window = train[i]["frames"]
        found = {s for s in (1, 2, 3) for start in range(length - 2 * s)
                 for top in range(video.shape[-2] - 31) for left in range(video.shape[-1] - 31)
                 if torch.equal(window, video[start:start + 2 * s + 1:s, :, top:top + 32, left:left + 32])}
        assert len(found) >= 1
        strides |= found
    assert len(strides) > 1  # more than one stride drawn
    val = VideoWindowDataset(clips_dir, frames=3, size=(32, 32), windows_per_video=2, part="val", max_stride=3)
    assert val.max_stride == 1
