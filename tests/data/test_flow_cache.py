"""The two-stage baseline: classical flow cached on disk once, read by the datasets, a temporal stream on it."""
from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from helpers import load_script, smooth_texture
from hidden2stream.data.actions import ActionVideoDataset, VideoSample, mirror_flow
from hidden2stream.data.clips import centre_crop
from hidden2stream.data.frame_cache import extract_frames, read_cached_frames
from hidden2stream.data.sampling import evenly_spaced_starts
from hidden2stream.data.synthetic_actions import SyntheticActionConfig, SyntheticActionDataset
from hidden2stream.errors import UserError, VideoError
from hidden2stream.data import flow_cache as cache_module
from hidden2stream.data.flow_cache import FlowCache
from hidden2stream.flow.classic import classic_flow
from hidden2stream.models.two_stream import HiddenTwoStreamConfig, build_two_stream
from hidden2stream.pipeline import two_stream
from hidden2stream.pretrained import load_two_stream
from hidden2stream_experiments.parsing import parse_options
from hidden2stream.train.objectives import random_mirror

METHOD = "dis"
TINY = ["--frames", "3", "--size", "64", "--segments", "2", "--device", "cpu", "--workers", "0",
        "--train-items", "16", "--test-items", "4", "--batch-size", "2", "--warmup", "1",
        "--appearances", "2", "--motions", "2", "--motion", METHOD]
CLOSE = dict(atol=0.05, rtol=0.0)  # DIS gives a slightly different flow from one call to the next (< 0.01 px)


def write_texture_video(path: Path, frames: int = 10, size: int = 40) -> Path:
    """An mp4 of a smooth texture moving right by 1.5 px and down by 0.5 px per frame."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        for t in range(frames):
            image = smooth_texture(size, size, dx=1.5 * t, dy=0.5 * t, frequency=2.0)
            rgb = (image.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")))
        container.mux(stream.encode())
    return path


@pytest.fixture
def video(tmp_path) -> Path:
    return write_texture_video(tmp_path / "clip.mp4")


def counting(monkeypatch) -> list[int]:
    """Count the classical flows the cache computes."""
    calls = [0]

    def counted(*args):
        calls[0] += 1
        return classic_flow(*args)

    monkeypatch.setattr(cache_module, "classic_flow", counted)
    return calls


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("reverse", [False, True])
def test_window_flows_are_the_classical_flows_of_the_window_pairs(tmp_path, video, stride, reverse):
    cache = FlowCache(tmp_path / "cache", METHOD)
    frames = read_cached_frames(extract_frames(video, tmp_path / "frames", 40), 0, 10)
    start, count = 1, 3
    end = start + count * stride
    if reverse:  # the window frame[end], frame[end - stride], ... played backwards
        pairs = [(end - j * stride, end - (j + 1) * stride) for j in range(count)]
    else:
        pairs = [(start + j * stride, start + (j + 1) * stride) for j in range(count)]
    expected = torch.stack([classic_flow(METHOD, frames[a], frames[b]) for a, b in pairs])
    got = cache.read(video, 40, start, count, stride=stride, reverse=reverse)
    assert got.shape == (count, 2, 40, 40) and got.dtype == torch.float32
    torch.testing.assert_close(got, expected, **CLOSE)
    stored = np.load(cache.video_flows(video, 40, stride, reverse), mmap_mode="r")
    assert stored.shape == (10 - stride, 40, 40, 2) and stored.dtype == np.float16
    with pytest.raises(VideoError, match="frames 3..11 requested"):
        cache.read(video, 40, 3, 8 // stride, stride=stride, reverse=reverse)


def test_flows_are_computed_once_and_reused_by_a_later_cache(tmp_path, video, monkeypatch):
    calls = counting(monkeypatch)
    first = FlowCache(tmp_path, METHOD).read(video, 40, 0, 4)
    assert calls[0] == 9  # every pair of the 10 frames, once
    again = FlowCache(tmp_path, METHOD)  # another run on the same folder
    torch.testing.assert_close(again.read(video, 40, 0, 4), first)
    again.read(video, 40, 5, 4)
    assert calls[0] == 9
    clip = torch.rand(2, 3, 3, 16, 16)
    items = again.item_flows("item 0", clip)
    assert items.shape == (2, 2, 2, 16, 16) and calls[0] == 13
    torch.testing.assert_close(again.item_flows("item 0", clip), items)
    assert calls[0] == 13
    report = again.size_report()
    assert report["files"] == 2 and report["items"] == 1 and report["videos"][40]["seconds"] == pytest.approx(0.4)
    assert "per hour of video at short side 40" in report["text"] and "1 generated clips" in report["text"]
    json.dumps(report)


def locate(window: torch.Tensor, frames: torch.Tensor) -> tuple[int, int, int]:
    """(start, top, left) of the only place in ``frames (N, 3, H, W)`` that ``window (T+1, 3, h, w)`` was cut from."""
    (count, _, h, w), (n, _, height, width) = window.shape, frames.shape
    found = [(s, y, x) for s in range(n - count + 1) for y in range(height - h + 1) for x in range(width - w + 1)
             if torch.equal(frames[s:s + count, :, y:y + h, x:x + w], window)]
    assert len(found) == 1
    return found[0]


def test_video_dataset_flows_are_cut_like_its_frames(tmp_path, video):
    cache = FlowCache(tmp_path / "cache", METHOD)
    common = dict(num_classes=1, segments=2, frames=3, size=(32, 32), flow_cache=cache)
    train = ActionVideoDataset([VideoSample(video, 0)], train=True, **common)
    assert cache.flow_path(video, train.short_side).exists()  # extracted when the dataset was built
    full = read_cached_frames(extract_frames(video, tmp_path / "cache" / "frames", train.short_side), 0, 10)
    item = train[0]
    assert item["frames"].shape == (2, 3, 3, 32, 32) and item["flows"].shape == (2, 2, 2, 32, 32)
    for window, flows in zip(item["frames"], item["flows"]):
        start, top, left = locate(window, full)
        expected = cache.read(video, train.short_side, start, 2)[..., top:top + 32, left:left + 32]
        torch.testing.assert_close(flows, expected)

    test = ActionVideoDataset([VideoSample(video, 0)], train=False, test_windows=2, test_crops="multi",
                              test_flip=True, **common)
    views = test[0]["flows"]
    assert views.shape == (10, 2, 2, 2, 32, 32) and test[0]["frames"].shape == (10, 2, 3, 3, 32, 32)
    starts = evenly_spaced_starts(10, 2, 3)
    centre = torch.stack([centre_crop(cache.read(video, test.short_side, s, 2), (32, 32)) for s in starts])
    torch.testing.assert_close(views[0], centre)
    torch.testing.assert_close(views[5:], mirror_flow(views[:5]))  # a flipped view: mirrored, u negated


def test_synthetic_items_are_deterministic_and_get_their_flows(tmp_path, monkeypatch):
    config = SyntheticActionConfig(segments=2, frames=3, height=32, width=32, clip_frames=8)
    cache = FlowCache(tmp_path, METHOD)
    dataset = SyntheticActionDataset(3, config, seed=5, flow_cache=cache)
    item = dataset[1]
    frames = item["frames"]
    torch.testing.assert_close(SyntheticActionDataset(3, config, seed=5)[1]["frames"], frames)
    expected = torch.stack([torch.stack([classic_flow(METHOD, w[t], w[t + 1]) for t in range(2)]) for w in frames])
    torch.testing.assert_close(item["flows"], expected, **CLOSE)
    calls = counting(monkeypatch)
    torch.testing.assert_close(dataset[1]["flows"], item["flows"])
    assert calls[0] == 0
    flipped = SyntheticActionDataset(3, config, seed=5, test_flip=True, flow_cache=cache)[1]
    assert flipped["flows"].shape == (2, 2, 2, 2, 32, 32)
    torch.testing.assert_close(flipped["flows"][1], mirror_flow(flipped["flows"][0]))


def test_two_stage_config_loads_old_checkpoints_and_needs_flows():
    config = HiddenTwoStreamConfig(4, segments=2, flow=METHOD)
    old = {k: v for k, v in HiddenTwoStreamConfig(4).to_dict().items() if k != "flow"}
    assert HiddenTwoStreamConfig.from_dict(old).flow == "motionnet"
    assert HiddenTwoStreamConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="branched"):
        HiddenTwoStreamConfig(4, hidden="branched", flow=METHOD)
    model = build_two_stream(config).eval()
    assert model.motionnet is None
    frames = torch.rand(1, 2, 11, 3, 32, 32)
    with pytest.raises(ValueError, match="pass flows"):
        model(frames)
    assert set(model(frames, streams=("spatial",))) == {"spatial"}
    out = model(frames, flows=torch.randn(1, 2, 10, 2, 32, 32))
    assert set(out) == {"spatial", "temporal", "fused"}


def test_two_stage_training_evaluates_and_rebuilds(tmp_path, monkeypatch):
    out = tmp_path / "run"
    result = two_stream.run(parse_options(two_stream.TwoStreamOptions, ["--out", str(out), "--steps", "2", *TINY], None))
    summary = result.summary
    assert f"{METHOD} flow cache {tmp_path / 'flow_cache'}: " in result.text
    assert set(summary["video_top1"]) >= {"spatial", "temporal", "fused", "late"}
    assert summary["flow_cache"]["items"] > 0 and summary["flow_cache"]["bytes"] > 0
    assert summary["flow_cache"]["root"] == str(tmp_path / "flow_cache")
    assert json.loads((out / "eval.json").read_text())["flow_cache"] == summary["flow_cache"]

    model = load_two_stream(out / "checkpoint.pt")
    assert model.config.flow == METHOD and model.motionnet is None

    calls = counting(monkeypatch)  # the checkpoint's evaluation reads the flows of its training run
    report = load_script("experiments", "evaluate").main(["--checkpoint", str(out / "checkpoint.pt"),
                                                          "--device", "cpu", "--out", str(tmp_path / "eval")])
    assert calls[0] == 0
    assert report["video_top1"] == summary["video_top1"]


def test_motionnet_options_are_refused_without_motionnet():
    args = parse_options(two_stream.TwoStreamOptions, [*TINY, "--freeze-motion"], None)
    config = two_stream.model_config(args, ["a", "b"])
    with pytest.raises(UserError, match="--motion dis trains on precomputed flow"):
        two_stream.build_model(args, config)


def test_random_mirror_flips_frames_and_their_flows_together():
    frames, flows = torch.rand(16, 2, 3, 3, 8, 8), torch.randn(16, 2, 2, 2, 8, 8)
    mirrored_frames, mirrored_flows = random_mirror(frames, flows)
    flipped = [not torch.equal(a, b) for a, b in zip(mirrored_frames, frames)]
    assert 0 < sum(flipped) < 16
    for i, was_flipped in enumerate(flipped):
        assert torch.equal(mirrored_frames[i], frames[i].flip(-1) if was_flipped else frames[i])
        assert torch.equal(mirrored_flows[i], mirror_flow(flows[i]) if was_flipped else flows[i])
