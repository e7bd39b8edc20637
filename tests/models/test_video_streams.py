"""3D streams: torchvision video backbones, I3D inflation, flow clips on MotionNet, 2D x 3D fusion.

Tiny CPU inputs (clips of 4-6 frames at 32x32); every torchvision model is built with
``weights=None`` and weights files are written here from randomly initialised models, so nothing
is downloaded.
"""
from __future__ import annotations

import json
import os

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.video.mvit import MSBlockConfig, MViT

from helpers import load_script
from hidden2stream.errors import UserError
from hidden2stream.models.fusion import ConvFusion, TemporalFusion, align_time
from hidden2stream.models.hidden import StackedHiddenStream, flow_to_clip, flow_to_stack
from hidden2stream.models.inflate import TimePadConv3d, inflate, inflate_conv
from hidden2stream.models.motionnet import motionnet_tiny
from hidden2stream.models.streams import (
    KINETICS_MEAN,
    KINETICS_STD,
    MVIT_MEAN,
    MVIT_STD,
    MViTFeatures,
    Stream,
    spatial_stream,
    temporal_stream,
    video_stream,
)
from hidden2stream.models.two_stream import hidden_two_stream

CLASSES, SIZE = 4, 32


def _first_conv(module: nn.Module) -> nn.Module:
    return next(m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)))


def _assert_grad(module: nn.Module) -> None:
    grad = _first_conv(module).weight.grad
    assert grad is not None and grad.abs().sum() > 0


# --- backbones ---------------------------------------------------------------------------------

# arch -> (clip length T, feature map (C, T', h, w) of a T x 32 x 32 clip)
BACKBONES = {
    "r3d_18": (4, (512, 1, 2, 2)),        # time / 8 (rounded up), space / 16
    "mc3_18": (4, (512, 4, 2, 2)),        # 3D convs in layer1 only: time kept
    "r2plus1d_18": (4, (512, 1, 2, 2)),
    "s3d": (5, (1024, 1, 1, 1)),          # S3D needs T >= 5, H, W >= 17; space / 32
    "i3d_resnet18": (4, (512, 1, 1, 1)),  # inflated resnet18: R3D time strides, ResNet's space / 32
    "i3d_resnet50": (4, (2048, 1, 1, 1)),
}


@pytest.mark.parametrize("arch", sorted(BACKBONES))
@pytest.mark.parametrize("channels", [3, 2], ids=["rgb", "flow"])
def test_video_backbone_shape_and_gradient(arch: str, channels: int) -> None:
    t, feature_shape = BACKBONES[arch]
    stream = spatial_stream(arch, CLASSES) if channels == 3 else temporal_stream(arch, CLASSES, in_channels=2)
    assert stream.is_video and stream.in_channels == channels and stream.feature_channels == feature_shape[0]
    x = torch.rand(2, channels, t, SIZE, SIZE)
    features = stream.forward_features(x)
    assert features.shape == (2, *feature_shape)
    logits = stream.classify(features)
    assert logits.shape == (2, CLASSES)
    logits.square().sum().backward()
    _assert_grad(stream)
    assert stream.head[-1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="T, H, W"):
        stream(torch.rand(2, channels, SIZE, SIZE))  # a frame is not a clip


def test_s3d_refuses_short_clips_in_one_line() -> None:
    stream = spatial_stream("s3d", CLASSES)
    with pytest.raises(ValueError, match=r"at least 5x17x17") as info:
        stream(torch.rand(1, 3, 4, SIZE, SIZE))
    assert "\n" not in str(info.value)


def test_s3d_explicit_time_padding_is_the_same_function() -> None:
    """S3D's first temporal conv pads time itself (oneDNN bug on 5-step clips): same outputs as torchvision's."""
    reference = torchvision.models.video.s3d(weights=None).eval()
    stream = spatial_stream("s3d", CLASSES).eval()
    stream.features.load_state_dict(reference.features.state_dict())
    assert any(isinstance(m, TimePadConv3d) for m in stream.features.modules())
    x = torch.rand(2, 3, 6, SIZE, SIZE)
    with torch.no_grad():
        torch.testing.assert_close(stream.features(x), reference.features(x))


def test_kinetics_normalisation_is_torchvision_s() -> None:
    """The constants match the transforms of torchvision's Kinetics weights (built, not downloaded)."""
    video = torchvision.models.video
    for weights in (video.R3D_18_Weights, video.MC3_18_Weights, video.R2Plus1D_18_Weights, video.S3D_Weights):
        transform = weights.DEFAULT.transforms()
        assert tuple(transform.mean) == KINETICS_MEAN and tuple(transform.std) == KINETICS_STD
    transform = video.MViT_V2_S_Weights.DEFAULT.transforms()
    assert tuple(transform.mean) == MVIT_MEAN and tuple(transform.std) == MVIT_STD
    stream = spatial_stream("r2plus1d_18", CLASSES)
    torch.testing.assert_close(stream.mean.flatten(), torch.tensor(KINETICS_MEAN))
    assert stream.mean.shape == (1, 3, 1, 1, 1)
    assert temporal_stream("r2plus1d_18", CLASSES, in_channels=2).mean is None  # flow is used as given


# --- MViT --------------------------------------------------------------------------------------

def _small_mvit() -> MViT:
    """torchvision's MViT v2 (same classes and flags as mvit_v2_s) with 2 small blocks on 4x32x32 clips."""
    blocks = [MSBlockConfig(num_heads=1, input_channels=16, output_channels=32, kernel_q=[3, 3, 3],
                            kernel_kv=[3, 3, 3], stride_q=[1, 2, 2], stride_kv=[1, 2, 2]),
              MSBlockConfig(num_heads=2, input_channels=32, output_channels=32, kernel_q=[3, 3, 3],
                            kernel_kv=[3, 3, 3], stride_q=[1, 1, 1], stride_kv=[1, 1, 1])]
    return MViT(spatial_size=(SIZE, SIZE), temporal_size=4, block_setting=blocks, residual_pool=True,
                residual_with_cls_embed=False, rel_pos_embed=True, proj_after_attn=True)


def test_mvit_features_map_and_gradient_small_geometry() -> None:
    features = MViTFeatures(_small_mvit())
    assert features.clip_size == (4, SIZE, SIZE)
    stream = Stream(features, 32, CLASSES, 3, dims=3, arch="mvit")
    x = torch.rand(2, 3, 4, SIZE, SIZE)
    tokens = stream.forward_features(x)
    assert tokens.shape == (2, 32, 2, 4, 4)  # patch tokens (T/2, H/8, W/8 after one q-pooling), no class token
    stream(x).square().sum().backward()
    _assert_grad(stream)
    assert features.blocks[-1].attn.qkv.weight.grad.abs().sum() > 0


def test_mvit_v2_s_full_size_shapes_on_meta_device() -> None:
    """mvit_v2_s at its one input size, 16x224x224, for RGB and flow: shapes only (meta tensors)."""
    with torch.device("meta"):
        rgb = video_stream("mvit_v2_s", CLASSES)
        flow = video_stream("mvit_v2_s", CLASSES, in_channels=2, normalise=False)
        assert rgb.forward_features(torch.empty(2, 3, 16, 224, 224)).shape == (2, 768, 8, 7, 7)
        assert flow(torch.empty(2, 2, 16, 224, 224)).shape == (2, CLASSES)


@pytest.mark.skipif(not os.environ.get("H2S_SLOW_TESTS"),
                    reason="a real 16x224x224 forward + backward of mvit_v2_s (34M parameters) takes tens of seconds "
                           "on a 2-core CPU; its full-size shapes are checked on the meta device and the MViT code "
                           "path with gradients at a small geometry (set H2S_SLOW_TESTS=1 to run it)")
def test_mvit_v2_s_full_size_gradient() -> None:
    stream = spatial_stream("mvit_v2_s", CLASSES)
    stream(torch.rand(1, 3, 16, 224, 224)).sum().backward()
    _assert_grad(stream)


def test_mvit_v2_s_refuses_other_sizes_in_one_line() -> None:
    stream = spatial_stream("mvit_v2_s", CLASSES)
    with pytest.raises(ValueError, match=r"needs clips of exactly 16x224x224 .* got 6x64x64") as info:
        stream(torch.rand(1, 3, 6, 64, 64))
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="16 frames per window"):
        hidden_two_stream(CLASSES, frames=6, spatial_arch="mvit_v2_s")
    with pytest.raises(ValueError, match="16 flows per window"):
        hidden_two_stream(CLASSES, frames=16, temporal_arch="mvit_v2_s")


# --- I3D inflation -----------------------------------------------------------------------------

def _resnet18_with_statistics(dtype: torch.dtype) -> nn.Module:
    """A random resnet18 in eval mode whose batch norms have non-trivial running statistics."""
    model = torchvision.models.resnet18(weights=None)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    return model.to(dtype).eval()


def _boring_clip_error(dtype: torch.dtype) -> tuple[float, float]:
    """(max |3D - 2D|, max |2D|) of resnet18's conv features vs its inflation on a clip of one frame repeated."""
    model = _resnet18_with_statistics(dtype)
    features2d = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                               model.layer1, model.layer2, model.layer3, model.layer4)
    features3d = inflate(features2d, time_kernel=lambda n, c: 3 if max(c.kernel_size) > 1 else 1,
                         time_stride=lambda n, c: 1 if n == "0" else c.stride[0])
    frame = torch.rand(2, 3, 64, 64, dtype=dtype)
    clip = frame[:, :, None].expand(-1, -1, 6, -1, -1)  # 6 identical frames
    with torch.no_grad():
        expected = features2d(frame)               # (2, 512, 2, 2)
        got = features3d(clip)                     # (2, 512, T'=1, 2, 2)
        assert got.shape == (2, 512, 1, 2, 2)
        got = got.mean(dim=2)                      # pooled over time
    return float((got - expected).abs().max()), float(expected.abs().max())


def test_inflation_reproduces_2d_network_on_a_boring_clip() -> None:
    """I3D's "boring video" fixed point: the inflated resnet18 pooled over time == resnet18 on the frame.

    In float64 the identity holds to 1e-12 (it is exact arithmetic, up to summation order). In
    float32 the inflated convs sum 3x as many products as the 2D ones (up to 512*3*3*3 = 13824 in
    layer4) in another order, each product carrying a rounding error of u = 2^-24 ~ 6e-8 of
    its size; a sum of n terms is off by about sqrt(n)*u (random walk, ~7e-6 for n = 13824) and
    at most n*u (~8e-4) of the sum of the terms' magnitudes, and 20 conv layers compound that.
    So a relative error of 1e-4 of the feature scale is the float32 tolerance; a wrong inflation
    (weights not divided by 3, zero time padding, a time-strided stem) errs by O(1) of it.
    """
    error64, scale64 = _boring_clip_error(torch.float64)
    assert error64 <= 1e-12 * scale64
    error32, scale32 = _boring_clip_error(torch.float32)
    assert error32 <= 1e-4 * scale32


def test_inflated_conv_weights_and_replicate_time_padding() -> None:
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1, bias=True)
    inflated = inflate_conv(conv, time_kernel=3, time_stride=2)
    assert inflated.weight.shape == (5, 3, 3, 3, 3) and inflated.stride == (2, 2, 2)
    torch.testing.assert_close(inflated.weight.sum(dim=2), conv.weight)  # the taps add up to the 2D filter
    for t in range(3):
        torch.testing.assert_close(inflated.weight[:, :, t], conv.weight / 3)
    frame = torch.rand(1, 3, 8, 8)
    out = inflated(frame[:, :, None].expand(-1, -1, 5, -1, -1))
    assert out.shape == (1, 5, 3, 4, 4)  # T = 5 -> ceil(5 / 2)
    for t in range(3):  # the end steps too: the time padding repeats the edge frames
        torch.testing.assert_close(out[:, :, t], conv(frame))
    with pytest.raises(ValueError):
        inflate_conv(conv, time_kernel=2)


def test_i3d_stream_matches_2d_stream_on_a_boring_clip(tmp_path) -> None:
    """spatial_stream('i3d_resnet18', weights=FILE) == spatial_stream('resnet18', weights=FILE) on a still clip."""
    path = tmp_path / "resnet18.pth"
    torch.save(_resnet18_with_statistics(torch.float32).state_dict(), path)
    stream2d = spatial_stream("resnet18", CLASSES, weights=str(path)).eval()
    stream3d = spatial_stream("i3d_resnet18", CLASSES, weights=str(path)).eval()
    stream3d.head.load_state_dict(stream2d.head.state_dict())
    frame = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(stream3d(frame[:, :, None].expand(-1, -1, 4, -1, -1)), stream2d(frame),
                                   rtol=1e-4, atol=1e-4)


# --- weights files -----------------------------------------------------------------------------

def test_video_weights_file_round_trip_and_cross_modality(tmp_path) -> None:
    reference = torchvision.models.video.s3d(weights=None)
    path = tmp_path / "s3d.pth"
    torch.save(reference.state_dict(), path)
    stream = spatial_stream("s3d", CLASSES, weights=str(path))
    first = reference.features[0][0][0].weight  # (64, 3, 1, 7, 7)
    torch.testing.assert_close(_first_conv(stream).weight, first)
    torch.testing.assert_close(stream.features[-1].branch0[0].weight, reference.features[-1].branch0[0].weight)

    flow = temporal_stream("s3d", CLASSES, in_channels=2, weights=str(path))
    torch.testing.assert_close(_first_conv(flow).weight, first.mean(dim=1, keepdim=True).expand(-1, 2, -1, -1, -1))
    assert flow(torch.rand(2, 2, 5, SIZE, SIZE)).shape == (2, CLASSES)


def test_i3d_loads_a_2d_resnet_file_inflated_with_cross_modality(tmp_path) -> None:
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    flow = temporal_stream("i3d_resnet18", CLASSES, in_channels=2, weights=str(path))
    conv = _first_conv(flow)
    assert isinstance(conv, TimePadConv3d) and conv.weight.shape == (64, 2, 3, 7, 7)
    expected = (reference.conv1.weight / 3).mean(dim=1, keepdim=True)[:, :, None].expand(-1, 2, 3, -1, -1)
    torch.testing.assert_close(conv.weight, expected)


def test_weights_of_another_architecture_give_one_line_errors(tmp_path) -> None:
    files = {}
    for arch in ("mc3_18", "s3d"):
        files[arch] = tmp_path / f"{arch}.pth"
        torch.save(torchvision.models.get_model(arch, weights=None).state_dict(), files[arch])
    cases = [("r3d_18", "mc3_18", "does not fit r3d_18"),        # same keys, other shapes
             ("r2plus1d_18", "s3d", "is not a r2plus1d_18 state_dict"),
             ("i3d_resnet18", "mc3_18", "(does not fit i3d_resnet18|is not a resnet18 state_dict)")]
    for arch, source, message in cases:
        with pytest.raises(UserError, match=message) as info:
            spatial_stream(arch, CLASSES, weights=str(files[source]))
        assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="'kinetics'"):
        spatial_stream("r2plus1d_18", CLASSES, weights="imagenet")
    with pytest.raises(UserError, match="'imagenet'"):
        spatial_stream("resnet18", CLASSES, weights="kinetics")
    with pytest.raises(UserError, match="'imagenet'"):
        temporal_stream("i3d_resnet18", CLASSES, in_channels=2, weights="kinetics")
    with pytest.raises(UserError, match="does not exist"):
        spatial_stream("s3d", CLASSES, weights=str(tmp_path / "absent.pth"))
    (tmp_path / "notes.txt").write_text("resnet18 weights: see the wiki\n")
    with pytest.raises(UserError, match=r"notes.txt is not a state_dict \(not a PyTorch file\)$"):
        spatial_stream("resnet18", CLASSES, weights=str(tmp_path / "notes.txt"))


# --- 3D temporal stream on MotionNet -----------------------------------------------------------

def test_flow_to_clip_layout() -> None:
    flow = torch.randn(2, 3, 2, 4, 5) * 30
    clip = flow_to_clip(flow)
    assert clip.shape == (2, 2, 3, 4, 5)
    torch.testing.assert_close(clip[:, 0, 1], flow[:, 1, 0].clamp(-20, 20) / 20)  # u of flow 1
    # the same numbers as the 2D stack, laid out as (u, v) x time instead of 2T channels
    torch.testing.assert_close(clip.transpose(1, 2).flatten(1, 2), flow_to_stack(flow))


@pytest.mark.parametrize("arch", ["i3d_resnet18", "r2plus1d_18", "mc3_18"])
def test_3d_temporal_stream_trains_motionnet(arch: str) -> None:
    motion = motionnet_tiny(frames=5)
    stream = StackedHiddenStream(motion, temporal_stream(arch, CLASSES, in_channels=2))
    frames = torch.rand(2, 5, 3, SIZE, SIZE)
    features, pyramid = stream.forward_features(frames)
    assert features.ndim == 5 and features.shape[:2] == (2, stream.feature_channels)
    logits = stream.classify(features)
    assert logits.shape == (2, CLASSES) and pyramid[-1].shape[:3] == (2, 4, 2)
    logits.square().sum().backward()
    _assert_grad(motion)
    _assert_grad(stream.temporal)


def test_3d_temporal_stream_channel_checks() -> None:
    with pytest.raises(ValueError, match="2 flow channels"):
        StackedHiddenStream(motionnet_tiny(frames=5), temporal_stream("mc3_18", CLASSES, in_channels=8))
    with pytest.raises(ValueError, match="stacked"):
        hidden_two_stream(CLASSES, frames=5, hidden="branched", temporal_arch="r2plus1d_18")


# --- fusion of a 2D and a 3D map ---------------------------------------------------------------

def test_fuse_maps_pooled_time_is_2d_fusion_of_time_means() -> None:
    spatial, temporal = torch.randn(2, 8, 4, 4), torch.randn(2, 6, 3, 2, 2)
    for kind in ("sum", "max", "concat", "conv", "bilinear"):
        fusion = ConvFusion(kind, 8, 6)
        out = fusion.fuse_maps(spatial, temporal, keep_time=False)
        assert out.shape == (2, 1, fusion.out_channels, *out.shape[-2:])
        torch.testing.assert_close(out[:, 0], fusion(spatial, temporal.mean(dim=2)))


def test_fuse_maps_kept_time_repeats_the_2d_map() -> None:
    spatial, temporal = torch.randn(2, 8, 4, 4), torch.randn(2, 8, 3, 4, 4)
    out = ConvFusion("max", 8, 8).fuse_maps(spatial, temporal, keep_time=True)
    assert out.shape == (2, 3, 8, 4, 4)
    for t in range(3):
        torch.testing.assert_close(out[:, t], torch.maximum(spatial, temporal[:, :, t]))
    # 3D spatial map (C=8, T=3) against a 2D temporal one: the temporal map is repeated (and resized)
    out = ConvFusion("sum", 8, 8).fuse_maps(temporal, spatial[..., :2, :2], keep_time=True)
    assert out.shape == (2, 3, 8, 4, 4)
    # for a linear fusion, kept time then averaged == pooled time
    conv = ConvFusion("conv", 8, 8)
    torch.testing.assert_close(conv.fuse_maps(spatial, temporal, True).mean(dim=1),
                               conv.fuse_maps(spatial, temporal, False)[:, 0])


def test_align_time_of_two_3d_maps() -> None:
    a, b = torch.randn(1, 4, 4, 2, 2), torch.randn(1, 5, 2, 1, 1)
    a2, b2 = align_time(a, b)
    assert a2.shape == (1, 4, 4, 2, 2) and b2.shape == (1, 5, 4, 2, 2)
    torch.testing.assert_close(a2, a)
    # linear resampling in time: b's two steps spread over four; the mean over time is kept
    torch.testing.assert_close(b2.mean(dim=2), b.mean(dim=2).expand(-1, -1, 2, 2))
    c, d = align_time(torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2))
    assert c.shape == d.shape == (1, 4, 1, 2, 2)


def test_temporal_fusion_over_segments_times_steps() -> None:
    maps = torch.randn(2, 6, 5, 2, 2)  # K = 2 segments x T'' = 3 steps
    torch.testing.assert_close(TemporalFusion("max3d", 5, 2)(maps), maps.amax(dim=1))
    assert TemporalFusion("conv3d", 5, 2)(maps).shape == (2, 5, 2, 2)


# --- hidden two-stream with 3D streams ---------------------------------------------------------

B, K, FRAMES = 2, 2, 4
COMBOS = [  # spatial arch, temporal arch, hidden, fusion, temporal fusion
    ("mc3_18", "tiny", "stacked", "late", "avg"),
    ("mc3_18", "tiny", "stacked", "conv", "avg"),        # 3D x 2D, time pooled
    ("mc3_18", "tiny", "stacked", "conv", "conv3d"),     # 3D x 2D, time kept (T' = 4, 2D map repeated)
    ("mc3_18", "tiny", "branched", "sum", "max3d"),
    ("mc3_18", "tiny", "branched", "bilinear", "max3d"),
    ("tiny", "mc3_18", "stacked", "late", "avg"),        # 2D spatial x 3D temporal
    ("tiny", "mc3_18", "stacked", "max", "max3d"),
    ("tiny", "mc3_18", "stacked", "concat", "avg"),
    ("tiny", "r2plus1d_18", "stacked", "bilinear", "avg"),
    ("mc3_18", "mc3_18", "stacked", "conv", "conv3d"),   # 3D x 3D: T' = 4 and 3, aligned to 4
    ("r3d_18", "i3d_resnet18", "stacked", "sum", "max3d"),
]


@pytest.mark.parametrize("spatial_arch,temporal_arch,hidden,fusion,temporal_fusion", COMBOS)
def test_two_stream_with_3d_streams(spatial_arch, temporal_arch, hidden, fusion, temporal_fusion) -> None:
    model = hidden_two_stream(CLASSES, frames=FRAMES, spatial_arch=spatial_arch, temporal_arch=temporal_arch,
                              hidden=hidden, fusion=fusion, temporal_fusion=temporal_fusion, segments=K)
    out = model(torch.rand(B, K, FRAMES, 3, SIZE, SIZE))
    assert set(out) == {"spatial", "temporal", "fused", "pyramid"}
    for name in ("spatial", "temporal", "fused"):
        assert out[name].shape == (B, CLASSES)
    out["fused"].square().sum().backward()
    _assert_grad(model.spatial)
    _assert_grad(model.motionnet)


def test_3d_spatial_stream_sees_the_whole_window() -> None:
    """A 3D spatial stream gets the window's T+1 frames in order; a 2D one only the centre frame."""
    model = hidden_two_stream(CLASSES, frames=FRAMES, spatial_arch="mc3_18", segments=K).eval()
    frames = torch.rand(B, K, FRAMES, 3, SIZE, SIZE)
    seen, forward_features = {}, model.spatial.forward_features
    model.spatial.forward_features = lambda x: forward_features(seen.setdefault("x", x))
    with torch.no_grad():
        model(frames, streams=("spatial",))
    torch.testing.assert_close(seen["x"], frames.flatten(0, 1).transpose(1, 2))


# --- command line ------------------------------------------------------------------------------

def _train_two_stream():
    return load_script("experiments", "train_two_stream")


def test_train_two_stream_with_3d_streams_and_reload(tmp_path) -> None:
    """--spatial-arch r2plus1d_18 --temporal-arch mc3_18 trains, evaluates, and its checkpoint rebuilds."""
    from hidden2stream.pretrained import load_two_stream

    out = tmp_path / "run"
    summary = _train_two_stream().main(
        ["--out", str(out), "--steps", "2", "--frames", "3", "--size", "64", "--segments", "2", "--device", "cpu",
         "--workers", "0", "--train-items", "8", "--test-items", "4", "--batch-size", "2", "--warmup", "1",
         "--appearances", "2", "--motions", "2", "--spatial-arch", "r2plus1d_18", "--temporal-arch", "mc3_18",
         "--fusion", "conv", "--temporal-fusion", "max3d"])
    assert {"spatial", "temporal", "fused"} <= set(summary["video_top1"])
    model = load_two_stream(out / "checkpoint.pt")
    assert model.spatial.is_video and model.hidden.temporal.is_video and model.config.spatial_arch == "r2plus1d_18"


@pytest.mark.parametrize("arch, role, frames, message", [
    ("mvit_v2_s", "spatial", "6", "mvit_v2_s as spatial arch needs 16 frames"),
    ("s3d", "spatial", "4", "s3d as spatial arch needs at least 5 frames per window (frames >= 5)"),
    ("s3d", "temporal", "5", "s3d as temporal arch needs at least 5 flows per window (frames >= 6)"),
])
def test_train_two_stream_clip_length_error_is_one_line(tmp_path, arch, role, frames, message) -> None:
    """Clip-length rules of video archs are checked with the options, before anything is built."""
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        _train_two_stream().main(["--out", str(tmp_path), f"--{role}-arch", arch, "--frames", frames,
                                  "--train-items", "4", "--test-items", "2", "--device", "cpu"])
    assert "\n" not in str(info.value)


def test_train_step_benchmark_times_3d_streams(tmp_path) -> None:
    """benchmarks/train_step.py: SPATIAL:TEMPORAL arch items, one stream alone, time kept in the fusion."""
    bench = load_script("benchmarks", "train_step")
    result = bench.main(["--size", "32", "--frames", "3", "--segments", "1", "--batch", "2", "--steps", "1",
                         "--warmup", "0", "--hidden", "stacked", "--fusion", "late,conv", "--motion-mode", "trained",
                         "--arch", "mc3_18:tiny,tiny:mc3_18", "--streams", "both,spatial",
                         "--temporal-fusion", "avg,max3d", "--no-pretrain", "--in-process", "--device", "cpu",
                         "--out", str(tmp_path)])
    assert [r["config"] for r in result["rows"]] == [
        "stacked/late/motion trained/mc3_18:tiny", "stacked/conv/motion trained/mc3_18:tiny",
        "stacked/late/motion trained/tiny:mc3_18", "stacked/late/motion trained/mc3_18:tiny/spatial alone",
        "stacked/late/motion trained/mc3_18:tiny/max3d"]
    assert all(r["clips_per_s"] > 0 and r["peak_memory_mib"] > 0 for r in result["rows"])
    with pytest.raises(SystemExit):
        bench.main(["--arch", "mc3_18:tiny:tiny", "--no-pretrain"])


def test_channels_last_on_a_model_with_3d_convs() -> None:
    """Runtime.prepare's .to(memory_format=channels_last) (on by default on CUDA): 5D weights get
    channels_last_3d instead of torch's refusal; the outputs do not change."""
    model = hidden_two_stream(CLASSES, frames=FRAMES, spatial_arch="mc3_18", temporal_arch="mc3_18",
                              fusion="conv", temporal_fusion="conv3d", segments=K).eval()
    frames = torch.rand(B, K, FRAMES, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = model(frames)["fused"]
        model = model.to(memory_format=torch.channels_last)
        assert model.temporal_fusion.conv[0].weight.is_contiguous(memory_format=torch.channels_last_3d)
        assert model.motionnet.state_dict()[next(k for k, v in model.motionnet.state_dict().items()
                                                 if v.ndim == 4)].is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(model(frames)["fused"], expected, rtol=1e-4, atol=1e-5)


def test_s3d_batch_norms_use_the_default_momentum() -> None:
    """torchvision's S3D has BN momentum 0.001: 50 steps from scratch left eval-mode predictions at chance."""
    stream = spatial_stream("s3d", CLASSES)
    momenta = {m.momentum for m in stream.modules() if isinstance(m, nn.BatchNorm3d)}
    assert momenta == {0.1}


def test_stream_accuracy_benchmark_trains_each_arch_alone_and_fused(tmp_path) -> None:
    """benchmarks/stream_accuracy.py: one train_two_stream.py run per (arch, streams) in its own
    process, each scored on its own head, the table written; a finished run is read, not retrained."""
    bench = load_script("benchmarks", "stream_accuracy")
    argv = ["--archs", "tiny", "--steps", "1", "--batch-size", "2", "--size", "64", "--frames", "3",
            "--segments", "1", "--train-items", "8", "--test-items", "4", "--motion", "tiny",
            "--motion-checkpoint", "none", "--no-speed", "--out", str(tmp_path)]
    result = bench.main(argv)
    assert [(r["arch"], r["streams"], r["head"]) for r in result["rows"]] == [("tiny", "spatial", "spatial"),
                                                                              ("tiny", "both", "fused")]
    for row in result["rows"]:
        assert 0 <= row["video_top1"] <= 1 and 0 <= row["appearance"] <= 1 and 0 <= row["motion"] <= 1
        assert row["chance"] == pytest.approx(1 / 12) and row["train_seconds"] > 0
    assert json.loads((tmp_path / "stream_accuracy.json").read_text())["rows"] == result["rows"]
    assert "| tiny | alone |" in (tmp_path / "stream_accuracy.md").read_text()
    stamp = (tmp_path / "tiny-both" / "eval.json").stat().st_mtime_ns
    assert bench.main(argv)["rows"] == result["rows"]
    assert (tmp_path / "tiny-both" / "eval.json").stat().st_mtime_ns == stamp
