"""MotionNet shapes, units, gradients, init, memory formats and autocast; FLOP counting."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from hidden2stream.models.flops import forward_flops
from hidden2stream.models.motionnet import (
    MOTIONNETS,
    MotionNet,
    MotionNetConfig,
    MotionNetLayers,
    build_motionnet,
    motionnet,
    motionnet_tiny,
    upsample_flow,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("frames", [2, 11])
@pytest.mark.parametrize("size", [(50, 70), (64, 64)])
def test_pyramid_shapes_coarse_to_fine(frames: int, size: tuple[int, int]) -> None:
    model = motionnet_tiny(frames).train()
    h, w = size
    pyramid = model(torch.rand(2, frames, 3, h, w))
    assert isinstance(pyramid, list) and len(pyramid) == 5
    for k, flow in zip(range(5, 0, -1), pyramid):
        assert flow.shape == (2, frames - 1, 2, math.ceil(h / 2**k), math.ceil(w / 2**k))


def test_eval_and_all_scales_false_give_full_resolution_flow() -> None:
    model = motionnet_tiny(3)
    frames = torch.rand(2, 3, 3, 50, 70)
    assert model.eval()(frames).shape == (2, 2, 2, 50, 70)
    assert model.train()(frames, all_scales=False).shape == (2, 2, 2, 50, 70)
    assert len(model.eval()(frames, all_scales=True)) == 5


def test_full_resolution_flow_is_finest_level_upsampled() -> None:
    model = motionnet_tiny(2).eval()
    frames = torch.rand(1, 2, 3, 64, 64)
    with torch.no_grad():
        finest = model(frames, all_scales=True)[-1]
        full = model(frames, all_scales=False)
    torch.testing.assert_close(full, upsample_flow(finest, (64, 64)))


def test_encode_maps_and_decode_match_forward() -> None:
    model = motionnet_tiny(2).eval()
    frames = torch.rand(1, 2, 3, 50, 70)
    with torch.no_grad():
        features = model.encode(frames)
        assert [f.shape[1] for f in features] == list(model.config.layers.widths)
        sizes = [tuple(f.shape[-2:]) for f in features]
        assert sizes == [(64 // 2**k, 96 // 2**k) for k in range(6)]
        assert model.feature_channels == features[-1].shape[1] == 128
        decoded = model.decode(features, all_scales=True, size=(50, 70))
        for a, b in zip(decoded, model(frames, all_scales=True)):
            torch.testing.assert_close(a, b)
        padded = model.decode(features, all_scales=True)
    assert padded[-1].shape == (1, 1, 2, 32, 48)


def test_raw_prediction_is_scaled_to_pixels_of_its_level() -> None:
    model = motionnet_tiny(2).eval()
    with torch.no_grad():
        model.predict_coarsest.weight.zero_()
        model.predict_coarsest.bias.fill_(1.0)
        coarsest = model(torch.rand(1, 2, 3, 64, 64), all_scales=True)[0]
    torch.testing.assert_close(coarsest, torch.full_like(coarsest, 20.0 / 32))


@pytest.mark.parametrize("level", [0, -1])
def test_gradients_reach_first_conv(level: int) -> None:
    model = motionnet_tiny(3).train()
    pyramid = model(torch.rand(2, 3, 3, 64, 64))
    pyramid[level].square().mean().backward()
    grad = model.encoder[0][0][0].weight.grad
    assert grad is not None and grad.abs().sum() > 0


def test_untrained_flow_is_near_zero() -> None:
    model = motionnet_tiny(11).eval()
    with torch.no_grad():
        flow = model(torch.rand(2, 11, 3, 64, 64))
    assert flow.abs().mean() < 0.2 and flow.abs().max() < 2.0


def test_flow_upsampling_is_initialised_bilinear() -> None:
    upflow = motionnet_tiny(2).decoder[0].upflow
    raw = torch.arange(2.0).view(1, 2, 1, 1).expand(1, 2, 4, 4)
    with torch.no_grad():
        up = upflow(raw)
    assert up.shape == (1, 2, 8, 8)
    torch.testing.assert_close(up[..., 1:-1, 1:-1], raw[..., :1, :1].expand(1, 2, 6, 6))


@pytest.mark.parametrize(
    "frames", [torch.rand(1, 3, 3, 32, 32), torch.rand(1, 2, 1, 32, 32), torch.rand(2, 3, 32, 32)]
)
def test_wrong_input_shape_is_a_value_error(frames: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="expects frames"):
        motionnet_tiny(2)(frames)


def test_build_motionnet_and_config_checks() -> None:
    assert set(MOTIONNETS) == {"paper", "tiny", "corr", "recurrent"}
    model = build_motionnet(MotionNetConfig("tiny", 4))
    assert isinstance(model, MotionNet) and model.num_flows == 3
    assert model.config.layers.widths == (16, 32, 48, 64, 96, 128)  # the tiny variant's widths
    with pytest.raises(ValueError, match="paper, tiny"):
        MotionNetConfig("huge", 11)
    with pytest.raises(ValueError):
        MotionNetConfig(frames=1)
    with pytest.raises(ValueError):
        MotionNetLayers(widths=(8, 8, 8))
    with pytest.raises(TypeError):
        MotionNetConfig("corr", 2, MotionNetLayers())


@pytest.mark.parametrize("variant, frames", [("tiny", 3), ("corr", 2)])
def test_config_round_trips_through_plain_primitives(variant: str, frames: int) -> None:
    """A checkpoint stores ``to_dict()`` (lists, no tuples or dataclasses); ``from_dict`` rebuilds
    the same config, custom widths included, and with it a network the weights fit."""
    config = MotionNetConfig(variant, frames)
    if variant == "tiny":
        config = MotionNetConfig("tiny", frames, MotionNetLayers((8, 8, 16, 16, 32, 32), (16, 16, 8, 8)))
    plain = config.to_dict()
    assert plain["family"] == "motionnet" and plain["version"] == MotionNetConfig.VERSION
    assert all(isinstance(v, (str, int, float, list)) for v in plain["layers"].values())
    assert MotionNetConfig.from_dict(plain) == config
    model = build_motionnet(config)
    build_motionnet(MotionNetConfig.from_dict(plain)).load_state_dict(model.state_dict())


def test_window_free_is_a_property_of_the_config() -> None:
    assert MotionNetConfig("corr", 2).window_free
    assert not MotionNetConfig("tiny", 2).window_free and not MotionNetConfig("paper", 11).window_free
    assert MotionNetConfig("corr", 2).with_frames(6) == MotionNetConfig("corr", 6)


def test_channels_last_matches_contiguous() -> None:
    model = motionnet_tiny(3).eval()
    last = copy.deepcopy(model).to(memory_format=torch.channels_last)
    frames = torch.rand(2, 3, 3, 50, 70)
    stacked = frames.flatten(1, 2).contiguous(memory_format=torch.channels_last)
    frames_last = stacked.unflatten(1, (3, 3))
    assert not frames_last.is_contiguous()
    with torch.no_grad():
        expected = model(frames, all_scales=True)
        got = last(frames_last, all_scales=True)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_bf16_autocast_forward() -> None:
    model = motionnet_tiny(3).eval()
    frames = torch.rand(1, 3, 3, 64, 64)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        pyramid = model(frames, all_scales=True)
        full = model(frames)
    assert pyramid[-1].dtype == torch.bfloat16 and full.shape == (1, 2, 2, 64, 64)
    assert all(torch.isfinite(flow).all() for flow in pyramid)


def test_paper_motionnet_size_and_forward() -> None:
    model = motionnet().eval()
    params = sum(p.numel() for p in model.parameters())
    assert 42.0e6 < params < 42.7e6  # 42,319,860 for 11 frames
    assert model.config.layers.widths == (64, 128, 256, 512, 512, 1024) and model.feature_channels == 1024
    with torch.no_grad():
        flow = model(torch.rand(1, 11, 3, 64, 64))
    assert flow.shape == (1, 10, 2, 64, 64) and torch.isfinite(flow).all()


def test_upsample_flow_scales_values_per_axis() -> None:
    flow = torch.stack([torch.ones(4, 6), 2 * torch.ones(4, 6)]).view(1, 1, 2, 4, 6)
    up = upsample_flow(flow, (8, 18))
    assert up.shape == (1, 1, 2, 8, 18)
    torch.testing.assert_close(up[:, :, 0], torch.full((1, 1, 8, 18), 3.0))
    torch.testing.assert_close(up[:, :, 1], torch.full((1, 1, 8, 18), 4.0))
    with pytest.raises(ValueError):
        upsample_flow(torch.zeros(1, 3, 4, 6), (8, 12))


def test_forward_flops_of_linear_and_mode_restored() -> None:
    layer = nn.Linear(8, 4).train()
    assert forward_flops(layer, torch.rand(3, 8)) == 2 * 8 * 4 * 3
    assert layer.training
    assert forward_flops(motionnet_tiny(2), torch.rand(1, 2, 3, 64, 64)) > 0
