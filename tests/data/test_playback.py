"""Playback-labelled data: labels follow stride and direction, splits by video, clear errors, --init."""
from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from hidden2stream.data.playback import (PLAYBACK_CLASSES, SPEEDS, PlaybackDataset, check_disjoint, find_videos,
                                         playback_label, split_by_video)
from hidden2stream.errors import UserError
from hidden2stream.data.flow_cache import FlowCache
from hidden2stream.pretrained import init_from_two_stream, load_two_stream
from hidden2stream.models.two_stream import hidden_two_stream
from helpers import LEVEL_STEP, run_script, smooth_texture, write_counter_video, write_video


def frame_numbers(frames: torch.Tensor) -> list[int]:
    """The numbers of a counter video's frames ``(T+1, 3, H, W)``."""
    return [round(float(f.mean()) * 255 / LEVEL_STEP) for f in frames]


@pytest.mark.parametrize("train", [True, False])
def test_labels_follow_stride_and_direction(tmp_path, train):
    video = write_counter_video(tmp_path / "counter.mp4", 40)
    data = PlaybackDataset([video], frames=5, size=(32, 32), train=train, segments=2, test_windows=3,
                           windows_per_video=2)
    assert len(data) == len(PLAYBACK_CLASSES) * (2 if train else 1)
    centres = set()
    for i in range(len(data)):
        item = data[i]
        clip = item["frames"] if train else item["frames"][0]  # test: (V=1, K, T+1, 3, H, W)
        assert clip.shape == (2 if train else 3, 5, 3, 32, 32)
        label = int(item["label"])
        stride, backwards = SPEEDS[label // 2], label % 2 == 1
        assert playback_label(stride, backwards) == label
        for window in clip:
            numbers = frame_numbers(window)
            steps = {b - a for a, b in zip(numbers, numbers[1:])}
            assert steps == {-stride if backwards else stride}, (label, numbers)
            centres.add((i // len(PLAYBACK_CLASSES), numbers[2]) if not train else None)
    if not train:  # every class of a test video shows the spatial stream the same centre frames
        assert len(centres) == 3


def test_spatial_frame_does_not_depend_on_the_class(tmp_path):
    """The frame the spatial stream sees (frames[T // 2]) is the window centre for every class."""
    video = write_counter_video(tmp_path / "counter.mp4", 40)
    data = PlaybackDataset([video], frames=6, size=(32, 32), train=False, test_windows=2)
    centres = {tuple(frame_numbers(data[i]["frames"][0, :, 2])) for i in range(len(data))}
    assert len(centres) == 1


def test_split_by_video_never_shares_a_video(tmp_path):
    for i, name in enumerate(("a/x.mp4", "a/y.mp4", "b/z.mp4", "b/deep/w.mp4", "v.mp4")):
        write_video(tmp_path / "videos" / name, 6, level=40 * i)
    videos = find_videos(tmp_path / "videos")
    assert len(videos) == 5  # searched recursively
    for seed in range(5):
        train, test = split_by_video(videos, 0.4, seed)
        assert not set(train) & set(test) and sorted(train + test) == sorted(videos) and len(test) == 2
    check_disjoint(videos[:3], videos[3:])
    shutil.copy(videos[0], tmp_path / "copy.mp4")
    with pytest.raises(UserError, match="shares a video"):
        check_disjoint(videos[:3], [tmp_path / "copy.mp4"])


def test_broken_and_short_files_are_dropped_with_a_line(tmp_path, caplog):
    good = write_counter_video(tmp_path / "v" / "good.mp4", 30)
    short = write_counter_video(tmp_path / "v" / "short.mp4", 8)
    (tmp_path / "v" / "notes.txt").write_text("not a video")
    data = PlaybackDataset(find_videos(tmp_path / "v"), frames=4, size=(32, 32))
    assert data.videos == [good]
    assert len(data.dropped) == 2 and any(str(short) in d for d in data.dropped)
    assert "dropped 2 of 3 videos" in caplog.text


def run_playback(tmp_path: Path, *extra: str):
    """train_two_stream.py on playback labels, tiny: 2 steps, 32x32, 3 frames."""
    return run_script("experiments", "train_two_stream", [
        "--dataset", "playback", "--frames", "3", "--size", "32", "--segments", "1", "--steps", "2",
        "--batch-size", "4", "--warmup", "0", "--log-images-every", "0", "--test-windows", "1",
        "--motion", "tiny", "--workers", "0", "--quiet", *extra], tmp_path)


def test_errors_are_one_line(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "sub" / "a.mp4").write_text("no video")
    result = run_playback(tmp_path, "--video-root", str(tmp_path / "empty"), "--test-root", str(tmp_path / "empty"),
                          "--out", str(tmp_path / "run"))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    video = write_counter_video(tmp_path / "train" / "a.mp4", 30)
    (tmp_path / "test").mkdir()
    shutil.copy(video, tmp_path / "test" / "b.mp4")
    result = run_playback(tmp_path, "--video-root", str(tmp_path / "train"), "--test-root", str(tmp_path / "test"),
                          "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: the test set shares a video")


def test_pretext_checkpoint_starts_a_fine_tuning_with_new_heads(tmp_path):
    for i in range(3):
        write_counter_video(tmp_path / "videos" / f"{i}.mp4", 20 + i)
    result = run_playback(tmp_path, "--video-root", str(tmp_path / "videos"), "--test-fraction", "0.34",
                          "--out", str(tmp_path / "pretext"))
    assert result.returncode == 0, result.stderr
    assert "speed accuracy" in result.stdout
    pretext = load_two_stream(tmp_path / "pretext" / "checkpoint.pt")
    assert pretext.config.class_names == PLAYBACK_CLASSES
    model = hidden_two_stream(12, motion="tiny", frames=3)
    new = init_from_two_stream(model, tmp_path / "pretext" / "checkpoint.pt")
    assert new and all("head" in name for name in new)
    source, target = pretext.state_dict(), model.state_dict()
    for name, tensor in target.items():
        if name not in new:
            assert torch.equal(tensor, source[name]), name
    assert target["spatial.head.3.weight"].shape[0] == 12


def test_playback_flows_are_the_played_windows_flows(tmp_path):
    """With a flow cache, each window's flows are the cache's flows of its frames in played order
    (backwards: the reversed pairs), cropped like the frames."""
    path = tmp_path / "texture.mp4"
    with av.open(str(path), mode="w") as container:  # a texture moving right 1 px per frame
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 48, 48, "yuv420p"
        for t in range(20):
            image = (smooth_texture(48, 48, dx=float(t)).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    cache = FlowCache(tmp_path / "flows", "dis")
    data = PlaybackDataset([path], frames=3, size=(32, 32), train=False, test_windows=1, flow_cache=cache)
    top = (data.short_side - 32) // 2
    for i in range(len(data)):
        item, label = data[i], i
        stride, backwards = SPEEDS[label // 2], label % 2 == 1
        centre = data.margin + (data._num_frames[0] - 2 * data.margin - 1) // 2
        first = centre - stride  # 3 frames, the centre in the middle, whichever way they are played
        expected = cache.read(path, data.short_side, first, 2, stride=stride, reverse=backwards)
        assert torch.equal(item["flows"][0, 0], expected[..., top:top + 32, top:top + 32])
        u = float(item["flows"][0, 0, :, 0].mean())
        assert (u < 0) == backwards and abs(u) > 0.5 * stride * data.short_side / 48
