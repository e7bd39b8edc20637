"""MotionNet-C (correlation): cost volume, shapes, gradients, hidden-stream use, supervised loss."""
from __future__ import annotations

import math

import pytest
import torch

from hidden2stream.data.synthetic_flow import SyntheticFlowConfig, SyntheticFlowDataset
from hidden2stream.losses.supervised import multiscale_epe_loss, resize_flow
from hidden2stream.models.hidden import BranchedHiddenStream, StackedHiddenStream
from hidden2stream.models.motionnet import MotionNetConfig
from hidden2stream.models.motionnet import CorrLayers, motionnet_corr
from hidden2stream.models.motionnet.corr import local_correlation
from hidden2stream.models.streams import temporal_stream
from hidden2stream.train.objectives import random_rescale


def test_correlation_peaks_at_the_true_shift() -> None:
    first = torch.randn(1, 256, 12, 12)  # 256 channels: self-match 1 +- 0.09, others 0 +- 0.06
    second = torch.roll(first, shifts=(1, -2), dims=(2, 3))  # second(x + d) = first(x), d = (-2, +1)
    cost = local_correlation(first, second, radius=3)
    assert cost.shape == (1, 49, 12, 12)
    # offset index = (dy + r) * 7 + (dx + r) with dy = +1, dx = -2
    assert cost[0, :, 4:8, 4:8].argmax(0).eq((1 + 3) * 7 + (-2 + 3)).all()
    torch.testing.assert_close(cost[0, 24], (first * second).sum(1)[0])  # zero offset: plain product


@pytest.mark.parametrize("frames", [2, 4])
def test_pyramid_shapes_and_full_resolution_output(frames: int) -> None:
    model = motionnet_corr(frames).train()
    h, w = 50, 70
    pyramid = model(torch.rand(2, frames, 3, h, w))
    assert len(pyramid) == 5
    for k, flow in zip(range(5, 0, -1), pyramid):
        assert flow.shape == (2, frames - 1, 2, math.ceil(h / 2**k), math.ceil(w / 2**k))
    assert model.eval()(torch.rand(1, frames, 3, h, w)).shape == (1, frames - 1, 2, h, w)


def test_weights_do_not_depend_on_the_window_length() -> None:
    """One set of weights serves the pair model and any window model: flow t of a window equals
    the pair model's flow of frames (t, t+1)."""
    pair, window = motionnet_corr(2).eval(), motionnet_corr(5).eval()
    window.load_state_dict(pair.state_dict())
    frames = torch.rand(1, 5, 3, 64, 64)
    with torch.no_grad():
        flows = window(frames)
        second = pair(frames[:, 2:4])
    torch.testing.assert_close(flows[:, 2:3], second, rtol=1e-4, atol=1e-4)


def test_gradients_reach_the_encoder_in_stacked_and_branched_streams() -> None:
    for hidden in ("stacked", "branched"):
        motion = motionnet_corr(3)
        if hidden == "stacked":
            stream = StackedHiddenStream(motion, temporal_stream("tiny", num_classes=5, in_channels=4))
        else:
            stream = BranchedHiddenStream(motion, num_classes=5)
        logits, pyramid = stream(torch.rand(2, 3, 3, 64, 64))
        assert logits.shape == (2, 5) and len(pyramid) == 5
        logits.sum().backward()
        grad = motion.encoder[0][0][0].weight.grad
        assert grad is not None and grad.abs().sum() > 0, hidden


def test_config_checks() -> None:
    with pytest.raises(ValueError):
        MotionNetConfig("corr", frames=1)
    with pytest.raises(ValueError):
        CorrLayers(widths=(8, 8))
    with pytest.raises(ValueError):
        motionnet_corr(3)(torch.rand(1, 2, 3, 32, 32))


def test_epe_loss_is_zero_for_the_exact_flow_and_measures_full_size_pixels() -> None:
    flow = torch.zeros(2, 1, 2, 64, 64)
    flow[:, :, 0] = 3.0
    pyramid = [resize_flow(flow.flatten(0, 1), (64 // 2**k, 64 // 2**k)).unflatten(0, (2, 1))
               for k in range(5, 0, -1)]
    total, terms = multiscale_epe_loss(pyramid, flow)
    assert float(total) == pytest.approx(0.0, abs=1e-5)
    # A level-pixel error of 0.5 at 1/2 resolution is 1 full-size pixel.
    pyramid[-1] = pyramid[-1] + torch.tensor([0.5, 0.0]).view(1, 1, 2, 1, 1)
    assert float(multiscale_epe_loss(pyramid[-1:], flow)[0]) == pytest.approx(1.0, rel=1e-5)


def test_random_rescale_keeps_frames_and_flow_consistent() -> None:
    config = SyntheticFlowConfig.realistic(2, 96, 96)
    item = SyntheticFlowDataset(1, config)[0]
    frames, flow = random_rescale(item["frames"][None], item["flow"][None], (0.5, 0.5))
    assert frames.shape[-2:] == flow.shape[-2:] == (48, 48)
    torch.testing.assert_close(flow.abs().mean(), resize_flow(item["flow"], (48, 48)).abs().mean())
    assert 0.4 < float(flow.abs().mean() / item["flow"].abs().mean()) < 0.6


def test_realistic_motions_scale_with_the_frame() -> None:
    small = SyntheticFlowConfig.realistic(2, 64, 64)
    large = SyntheticFlowConfig.realistic(2, 256, 256)
    assert large.max_translation == pytest.approx(4 * small.max_translation)
    flows = torch.stack([SyntheticFlowDataset(8, large)[i]["flow"] for i in range(8)])
    magnitude = flows.norm(dim=2)
    assert float(magnitude.median()) < 0.25 * large.max_translation  # most motions small
    assert float(magnitude.max()) > 0.3 * large.max_translation  # a tail of large ones


def test_refine_half_grows_from_a_trained_corr_network(tmp_path) -> None:
    """``refine_half`` adds a 1/2-level refinement: a trained corr network grows into it with every
    weight copied (the 1/32 ... 1/4 flows stay exactly the same), the new 1/2 level computes its own
    flow; the parameter-free Lucas-Kanade refinement may be added at the same time; the other
    direction, or another network, is refused in one line."""
    from hidden2stream.errors import CheckpointError
    from hidden2stream.flow.refine import LucasKanadeRefinement
    from hidden2stream.models.motionnet import build_motionnet
    from hidden2stream.models.motionnet import upsample_flow
    from hidden2stream.pretrained import load_motionnet_into
    from hidden2stream.checkpoint import save_atomic

    torch.manual_seed(0)
    trained = motionnet_corr(2).eval()
    path = save_atomic({"kind": "motionnet", "model_config": trained.config.to_dict(), "model": trained.state_dict()},
                       tmp_path / "corr.pt")
    half = MotionNetConfig("corr", 2, CorrLayers(refine_half=True), LucasKanadeRefinement())  # as corr-refine
    grown = build_motionnet(half)
    load_motionnet_into(grown, path, "--init", "this run")
    frames = torch.rand(1, 2, 3, 64, 96)
    with torch.no_grad():
        before, after = trained(frames, all_scales=True), grown.eval()(frames, all_scales=True)
    assert [f.shape for f in after] == [f.shape for f in before]
    for level in range(4):
        torch.testing.assert_close(after[level], before[level], rtol=0, atol=0)
    upsampled = upsample_flow(before[3], after[4].shape[-2:])
    assert not torch.allclose(after[4], upsampled)  # refined at 1/2, not the 1/4 flow upsampled
    half_path = save_atomic({"kind": "motionnet", "model_config": grown.config.to_dict(), "model": grown.state_dict()},
                            tmp_path / "half.pt")
    with pytest.raises(CheckpointError, match="--init .* holds MotionNet-corr"):
        load_motionnet_into(motionnet_corr(2), half_path, "--init", "this run")
    with pytest.raises(CheckpointError):
        load_motionnet_into(build_motionnet(MotionNetConfig("corr", 2, CorrLayers(radius=2, refine_half=True))),
                            path, "--init", "this run")
