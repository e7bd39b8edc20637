"""Streams, hidden streams, fusion and the hidden two-stream model on tiny CPU inputs."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from hidden2stream.options import options_check
from hidden2stream.errors import UserError
from hidden2stream.models.fusion import ConvFusion, TemporalFusion, check_fusion, late_fusion
from hidden2stream.models.hidden import BranchedHiddenStream, StackedHiddenStream, flow_to_stack
from hidden2stream.models.motionnet import motionnet_tiny
from hidden2stream.models.streams import (
    IMAGE_ARCHS,
    STREAM_ARCHS,
    VIDEO_ARCHS,
    cross_modality_conv,
    spatial_stream,
    temporal_stream,
)
from hidden2stream.models.two_stream import hidden_two_stream

B, K, FRAMES, SIZE, CLASSES = 2, 2, 3, 32, 4


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _clip() -> torch.Tensor:
    return torch.rand(B, K, FRAMES, 3, SIZE, SIZE)


def _first_conv_grad(module: nn.Module) -> torch.Tensor:
    conv = next(m for m in module.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.grad is not None
    return conv.weight.grad


# --- streams -----------------------------------------------------------------------------------

def test_tiny_stream_shapes() -> None:
    stream = temporal_stream("tiny", CLASSES, in_channels=6)
    x = torch.rand(3, 6, 64, 64)
    assert stream.forward_features(x).shape == (3, stream.feature_channels, 4, 4)
    assert stream(x).shape == (3, CLASSES)
    with pytest.raises(ValueError):
        stream(torch.rand(3, 3, 64, 64))


def test_unknown_arch_lists_choices() -> None:
    with pytest.raises(ValueError, match="resnet18"):
        spatial_stream("alexnet", CLASSES)


def test_cross_modality_conv_replicates_mean_rgb_filter() -> None:
    rgb = nn.Conv2d(3, 8, 5, stride=2, padding=2, bias=True)
    flow = cross_modality_conv(rgb, 10)
    assert flow.in_channels == 10 and flow.stride == (2, 2) and flow.padding == (2, 2)
    mean = rgb.weight.mean(dim=1)
    for c in range(10):
        torch.testing.assert_close(flow.weight[:, c], mean)
    torch.testing.assert_close(flow.bias, rgb.bias)


def test_spatial_weights_file_round_trip(tmp_path) -> None:
    reference = torchvision.models.resnet18(num_classes=1000)
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    stream = spatial_stream("resnet18", CLASSES, weights=str(path))
    torch.testing.assert_close(stream.features[0].weight, reference.conv1.weight)
    torch.testing.assert_close(stream.features[7][1].conv2.weight, reference.layer4[1].conv2.weight)
    assert stream(torch.rand(2, 3, SIZE, SIZE)).shape == (2, CLASSES)

    temporal = temporal_stream("resnet18", CLASSES, in_channels=4, weights=str(path))
    expected = reference.conv1.weight.mean(dim=1, keepdim=True).expand(-1, 4, -1, -1)
    torch.testing.assert_close(temporal.features[0].weight, expected)

    with pytest.raises(UserError, match="does not exist"):
        spatial_stream("resnet18", CLASSES, weights=str(tmp_path / "missing.pth"))
    with pytest.raises(UserError):
        spatial_stream("resnet50", CLASSES, weights=str(path))


def test_all_archs_are_known() -> None:
    assert set(IMAGE_ARCHS) == {"tiny", "resnet18", "resnet50", "vgg16"}
    assert set(VIDEO_ARCHS) == {"r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v2_s", "i3d_resnet18", "i3d_resnet50"}
    assert STREAM_ARCHS == IMAGE_ARCHS + VIDEO_ARCHS


# --- hidden streams ----------------------------------------------------------------------------

def test_flow_to_stack_order_and_clipping() -> None:
    flow = torch.zeros(1, 2, 2, 3, 3)
    flow[0, 0, 0] = 10.0   # u0
    flow[0, 0, 1] = -30.0  # v0, clipped
    flow[0, 1, 0] = 2.0    # u1
    flow[0, 1, 1] = 50.0   # v1, clipped
    stack = flow_to_stack(flow, clip=20.0)
    assert stack.shape == (1, 4, 3, 3)
    assert stack[0, :, 0, 0].tolist() == pytest.approx([0.5, -1.0, 0.1, 1.0])
    flow = torch.tensor([[[[[5.0]], [[25.0]]]]], requires_grad=True)
    flow_to_stack(flow).sum().backward()
    assert flow.grad.flatten().tolist() == pytest.approx([1 / 20, 0.0])
    with pytest.raises(ValueError):
        flow_to_stack(torch.zeros(1, 2, 3, 4, 4))


@pytest.mark.parametrize("kind", ["stacked", "branched"])
def test_hidden_stream_trains_motionnet(kind: str) -> None:
    motion = motionnet_tiny(frames=FRAMES)
    if kind == "stacked":
        stream = StackedHiddenStream(motion, temporal_stream("tiny", CLASSES, 2 * (FRAMES - 1)))
    else:
        stream = BranchedHiddenStream(motion, CLASSES)
    frames = torch.rand(B, FRAMES, 3, SIZE, SIZE)
    logits, pyramid = stream(frames)
    assert logits.shape == (B, CLASSES)
    assert len(pyramid) == 5 and pyramid[-1].shape[:3] == (B, FRAMES - 1, 2)
    logits.sum().backward()
    assert _first_conv_grad(motion).abs().sum() > 0


def test_stacked_stream_checks_channels() -> None:
    with pytest.raises(ValueError):
        StackedHiddenStream(motionnet_tiny(frames=FRAMES), temporal_stream("tiny", CLASSES, 20))


# --- fusion ------------------------------------------------------------------------------------

def test_conv_fusion_starts_as_sum() -> None:
    spatial, temporal = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 2, 2)
    conv = ConvFusion("conv", 8, 8)(spatial, temporal)
    total = ConvFusion("sum", 8, 8)(spatial, temporal)
    assert conv.shape == (2, 8, 4, 4)
    torch.testing.assert_close(conv, total)


def test_conv_fusion_kinds_shapes() -> None:
    spatial, temporal = torch.randn(2, 8, 4, 4), torch.randn(2, 6, 4, 4)
    for kind, channels in [("sum", 8), ("max", 8), ("concat", 14), ("conv", 8)]:
        fusion = ConvFusion(kind, 8, 6)
        assert fusion.out_channels == channels
        assert fusion(spatial, temporal).shape == (2, channels, 4, 4)
    bilinear = ConvFusion("bilinear", 8, 6)
    out = bilinear(spatial, temporal)
    assert bilinear.out_channels == 48 and out.shape == (2, 48, 1, 1)
    torch.testing.assert_close(out.flatten(1).norm(dim=1), torch.ones(2))
    with pytest.raises(ValueError):
        ConvFusion("late", 8, 6)


def test_temporal_fusion_kinds() -> None:
    maps = torch.randn(2, 3, 5, 4, 4)
    torch.testing.assert_close(TemporalFusion("avg", 5, 3)(maps), maps.mean(dim=1))
    torch.testing.assert_close(TemporalFusion("max3d", 5, 3)(maps), maps.amax(dim=1))
    assert TemporalFusion("conv3d", 5, 3)(maps).shape == (2, 5, 4, 4)
    with pytest.raises(ValueError):
        TemporalFusion("median", 5, 3)


def test_fusion_pairs_are_checked_once_for_code_and_options() -> None:
    check_fusion("bilinear", "max3d")
    with pytest.raises(ValueError, match="bilinear fusion has Cs\\*Ct channels"):
        check_fusion("bilinear", "conv3d")
    with pytest.raises(ValueError, match="unknown temporal fusion 'median'; choose from avg, max3d, conv3d"):
        check_fusion("sum", "median")
    with pytest.raises(UserError, match="^--fusion / --temporal-fusion: bilinear fusion"):
        options_check("--fusion / --temporal-fusion", check_fusion, "bilinear", "conv3d")


def test_late_fusion_rule() -> None:
    spatial = torch.tensor([[2.0, -1.0, 2.0]])
    temporal = torch.tensor([[0.0, 3.0, 1.0]])
    fused = late_fusion(spatial, temporal, temporal_weight=2.0)
    torch.testing.assert_close(fused, torch.tensor([[0.5, 1.5, 1.0]]))
    with pytest.raises(ValueError):
        late_fusion(spatial, temporal[:, :2])


# --- hidden two-stream -------------------------------------------------------------------------

@pytest.mark.parametrize(
    "fusion,temporal_fusion,hidden",
    [
        ("late", "avg", "stacked"),
        ("late", "avg", "branched"),
        ("sum", "avg", "stacked"),
        ("sum", "conv3d", "stacked"),
        ("max", "avg", "stacked"),
        ("max", "max3d", "stacked"),
        ("concat", "avg", "branched"),
        ("concat", "conv3d", "stacked"),
        ("conv", "avg", "stacked"),
        ("conv", "max3d", "branched"),
        ("bilinear", "avg", "stacked"),
        ("bilinear", "max3d", "stacked"),
    ],
)
def test_two_stream_fusions(fusion: str, temporal_fusion: str, hidden: str) -> None:
    model = hidden_two_stream(
        CLASSES, frames=FRAMES, hidden=hidden, fusion=fusion, temporal_fusion=temporal_fusion, segments=K
    )
    assert model.config.fusion == fusion
    out = model(_clip())
    assert set(out) == {"spatial", "temporal", "fused", "pyramid"}
    for name in ("spatial", "temporal", "fused"):
        assert out[name].shape == (B, CLASSES)
    assert len(out["pyramid"]) == 5 and out["pyramid"][-1].shape[:3] == (B * K, FRAMES - 1, 2)
    out["fused"].sum().backward()
    assert _first_conv_grad(model.spatial).abs().sum() > 0
    assert _first_conv_grad(model.motionnet).abs().sum() > 0


def test_single_stream_forward() -> None:
    model = hidden_two_stream(CLASSES, frames=FRAMES, fusion="conv", segments=K)
    spatial = model(_clip(), streams=("spatial",))
    assert set(spatial) == {"spatial"}
    temporal = model(_clip(), streams=("temporal",))
    assert set(temporal) == {"temporal", "pyramid"}


def test_two_stream_input_errors() -> None:
    with pytest.raises(ValueError, match="fusion"):
        hidden_two_stream(CLASSES, frames=FRAMES, fusion="average")
    with pytest.raises(ValueError):
        hidden_two_stream(CLASSES, frames=FRAMES, hidden="parallel")
    model = hidden_two_stream(CLASSES, frames=FRAMES)
    with pytest.raises(ValueError):
        model(torch.rand(B, FRAMES, 3, SIZE, SIZE))
    with pytest.raises(ValueError):
        model(torch.rand(B, K, FRAMES + 1, 3, SIZE, SIZE))
    with pytest.raises(ValueError):
        model(_clip(), streams=("audio",))
