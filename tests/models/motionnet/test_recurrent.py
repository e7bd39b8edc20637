"""MotionNet-R (recurrent): global matching, convex upsampling, shapes, gradients, hidden-stream use."""
from __future__ import annotations

import math

import pytest
import torch

from hidden2stream.flow.warp import backward_warp
from hidden2stream.models.motionnet import MotionNetConfig, build_motionnet
from hidden2stream.models.motionnet import CorrLayers
from hidden2stream.models.motionnet import RecurrentLayers
from hidden2stream.models.motionnet.recurrent import (RecurrentMotionNet, convex_upsample,
                                                      global_match, motionnet_recurrent)
from hidden2stream.models.two_stream import HiddenTwoStreamConfig, build_two_stream, hidden_two_stream


def _one_hot(height: int, width: int) -> torch.Tensor:
    """``(1, h w, h, w)``: position (y, x) has feature ``e_{y w + x}``, so each matches only itself."""
    return torch.eye(height * width).reshape(1, height * width, height, width)


def test_global_match_finds_a_shift_of_whole_cells() -> None:
    first = _one_hot(6, 8)
    second = torch.roll(first, shifts=(-2, 3), dims=(2, 3))  # second(x + 3, y - 2) = first(x, y)
    flow = global_match(first, second, sharpness=50.0)
    assert flow.shape == (1, 2, 6, 8)
    interior = flow[0, :, 2:, :5]  # where the match lies inside the frame (no wrap-around)
    torch.testing.assert_close(interior[0], torch.full_like(interior[0], 3.0), atol=1e-3, rtol=0)
    torch.testing.assert_close(interior[1], torch.full_like(interior[1], -2.0), atol=1e-3, rtol=0)
    torch.testing.assert_close(global_match(first, first, 50.0), torch.zeros(1, 2, 6, 8), atol=1e-3, rtol=0)
    with pytest.raises(ValueError):
        global_match(first, first[..., :4], 1.0)


@pytest.mark.parametrize("factor", [2, 8])
def test_convex_upsampling_keeps_a_constant_flow_and_picks_neighbours(factor: int) -> None:
    constant = torch.tensor([1.5, -0.5]).view(1, 2, 1, 1).expand(2, 2, 3, 4)
    mask = torch.randn(2, 9 * factor**2, 3, 4)
    up = convex_upsample(constant, mask, factor)
    assert up.shape == (2, 2, 3 * factor, 4 * factor)
    torch.testing.assert_close(up, factor * constant[..., :1, :1].expand_as(up))  # edges included
    # All weight on the centre neighbour (index 4) is nearest-neighbour upsampling.
    flow = torch.randn(2, 2, 3, 4)
    centre = torch.full((2, 9, factor, factor, 3, 4), -1e4)
    centre[:, 4] = 0.0
    nearest = factor * flow.repeat_interleave(factor, 2).repeat_interleave(factor, 3)
    torch.testing.assert_close(convex_upsample(flow, centre.flatten(1, 3), factor), nearest)
    with pytest.raises(ValueError):
        convex_upsample(flow, mask[:, :9], factor)


def test_convex_upsampling_passes_gradients_to_flow_and_mask() -> None:
    flow = torch.randn(1, 2, 3, 4, requires_grad=True)
    mask = torch.randn(1, 9 * 4, 3, 4, requires_grad=True)
    (convex_upsample(flow, mask, 2) * torch.randn(1, 2, 6, 8)).sum().backward()
    assert flow.grad.abs().sum() > 0 and mask.grad.abs().sum() > 0


@pytest.mark.parametrize("flows", [2, 5])
def test_pyramid_and_full_resolution_shapes(flows: int) -> None:
    model = motionnet_recurrent(flows + 1).train()
    h, w = 50, 70  # not a multiple of 32
    pyramid = model(torch.rand(1, flows + 1, 3, h, w))
    assert len(pyramid) == 5
    for k, flow in zip(range(5, 0, -1), pyramid):
        assert flow.shape == (1, flows, 2, math.ceil(h / 2**k), math.ceil(w / 2**k))
    full = model(torch.rand(1, flows + 1, 3, h, w), all_scales=False)
    assert full.shape == (1, flows, 2, h, w) and torch.isfinite(full).all()
    assert model.feature_channels == (flows + 1) * 128


def test_finer_levels_are_the_full_resolution_flow_averaged() -> None:
    model = motionnet_recurrent(2).eval()
    frames = torch.rand(1, 2, 3, 64, 64)
    with torch.no_grad():
        pyramid, full = model(frames, all_scales=True), model(frames)
    half = torch.nn.functional.avg_pool2d(full[0], 2) / 2
    torch.testing.assert_close(pyramid[-1][0], half)


def test_a_photometric_loss_reaches_every_parameter() -> None:
    model = motionnet_recurrent(2).train()
    frames = torch.rand(2, 2, 3, 64, 64)
    flow = model(frames, all_scales=False)[:, 0]
    warped, valid = backward_warp(frames[:, 1], flow)
    ((warped - frames[:, 0]).abs() * valid).mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    groups = {name.split(".")[0] for name, _ in model.named_parameters()}
    assert {"encoder", "context", "decoder", "gru", "motion_encoder", "flow_head", "mask_head",
            "global_sharpness"} <= groups


def test_weights_serve_any_window_length() -> None:
    pair, window = motionnet_recurrent(2).eval(), motionnet_recurrent(4).eval()
    window.load_state_dict(pair.state_dict())
    frames = torch.rand(1, 4, 3, 64, 64)
    with torch.no_grad():
        flows, second = window(frames), pair(frames[:, 1:3])
    torch.testing.assert_close(flows[:, 1:2], second, rtol=1e-4, atol=1e-4)


def test_eval_forward_is_deterministic_without_gradients() -> None:
    model = motionnet_recurrent(3).eval()
    frames = torch.rand(1, 3, 3, 64, 96)
    with torch.no_grad():
        first, again = model(frames), model(frames)
    assert not first.requires_grad
    assert torch.equal(first, again)


@pytest.mark.parametrize("hidden", ["stacked", "branched"])
def test_builds_as_the_hidden_stream_of_a_two_stream_net(hidden: str) -> None:
    model = hidden_two_stream(4, motion="recurrent", frames=3, hidden=hidden, fusion="conv", segments=1)
    assert isinstance(model.motionnet, RecurrentMotionNet)
    out = model(torch.rand(2, 1, 3, 3, 64, 64))
    assert out["fused"].shape == (2, 4) and len(out["pyramid"]) == 5
    (out["fused"].sum() + out["pyramid"][-1].abs().mean()).backward()
    for module in (model.motionnet.encoder, model.motionnet.gru, model.motionnet.mask_head):
        assert all(p.grad is not None for p in module.parameters()), hidden
    assert model.motionnet.encoder[0][0][0].weight.grad.abs().sum() > 0
    rebuilt = build_two_stream(HiddenTwoStreamConfig.from_dict(model.config.to_dict()))
    rebuilt.load_state_dict(model.state_dict())


def test_config_round_trips_and_checks() -> None:
    config = MotionNetConfig("recurrent", 3, RecurrentLayers(widths=(8, 16, 24, 32, 40), hidden=16, motion=16,
                                                             iterations=2))
    plain = config.to_dict()
    assert all(isinstance(v, (str, int, float, list)) for v in plain["layers"].values())
    assert MotionNetConfig.from_dict(plain) == config and config.window_free
    assert config.with_frames(6).frames == 6
    model = build_motionnet(config)
    assert isinstance(model, RecurrentMotionNet)
    build_motionnet(MotionNetConfig.from_dict(plain)).load_state_dict(model.state_dict())
    assert MotionNetConfig("recurrent", 2).layers == RecurrentLayers()
    with pytest.raises(TypeError):
        MotionNetConfig("recurrent", 2, CorrLayers())
    with pytest.raises(ValueError):
        RecurrentLayers(widths=(8, 8))
    with pytest.raises(ValueError):
        RecurrentLayers(iterations=0)
    with pytest.raises(ValueError):
        motionnet_recurrent(3)(torch.rand(1, 2, 3, 64, 64))
