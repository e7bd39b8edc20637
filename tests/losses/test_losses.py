"""Unsupervised flow losses: Charbonnier, photometric, smoothness, SSIM, occlusion, multi-scale."""
from __future__ import annotations

import pytest
import torch

from hidden2stream.flow.warp import pixel_grid
from hidden2stream.losses.census import census_distance
from hidden2stream.losses.charbonnier import charbonnier
from hidden2stream.losses.motion import CENSUS_WEIGHT, PRESETS, MotionLossConfig, multiscale_motion_loss
from hidden2stream.losses.occlusion import forward_backward_occlusion
from hidden2stream.losses.photometric import photometric_loss
from hidden2stream.losses.smoothness import smoothness_loss
from hidden2stream.losses.ssim import ssim_loss

from helpers import constant_flow, smooth_texture


def translated_window(steps: int, size: int, u: float, v: float) -> torch.Tensor:
    """Frames (1, steps+1, 3, size, size) of a smooth texture moving by (u, v) px per frame."""
    frames = [
        smooth_texture(size, size, dx=t * u, dy=t * v, frequency=0.25) for t in range(steps + 1)
    ]
    return torch.stack(frames)[None]


def test_charbonnier_hand_made_values():
    zero = charbonnier(torch.zeros(3), alpha=0.4, eps=1e-3)
    torch.testing.assert_close(zero, torch.full((3,), 1e-3 ** 0.8))
    assert charbonnier(torch.tensor(3.0), alpha=0.5, eps=0.0).item() == pytest.approx(3.0)
    assert charbonnier(torch.tensor(-3.0), alpha=1.0, eps=0.0).item() == pytest.approx(9.0)
    scaled = charbonnier(torch.tensor(0.02), alpha=0.5, eps=0.0, beta=255.0)
    assert scaled.item() == pytest.approx(5.1)


def test_photometric_loss_true_flow_vs_zero_flow():
    frame0 = smooth_texture(32, 32)[None]
    frame1 = smooth_texture(32, 32, dx=2.0, dy=1.0)[None]
    true_loss = photometric_loss(frame0, frame1, constant_flow(1, 32, 32, 2.0, 1.0))
    zero_loss = photometric_loss(frame0, frame1, torch.zeros(1, 2, 32, 32))
    assert true_loss.ndim == 0 and true_loss < 0.1 * zero_loss
    identical = photometric_loss(frame0, frame0, torch.zeros(1, 2, 32, 32), alpha=0.5, eps=1e-3)
    assert identical.item() == pytest.approx(1e-3, rel=1e-3)  # only the eps term is left


def test_census_distance_ignores_brightness_and_sees_motion():
    frame = smooth_texture(24, 24)[None]
    brighter = (frame * 0.8 + 0.15).clamp(0, 1)  # another exposure, same structure
    shifted = smooth_texture(24, 24, dx=2.0)[None]
    assert census_distance(frame, frame).abs().max() == 0
    assert census_distance(frame, shifted).shape == (1, 1, 24, 24)
    moved = census_distance(frame, shifted)[..., 3:-3, 3:-3].mean()
    assert census_distance(frame, brighter)[..., 3:-3, 3:-3].mean() < 0.05 * moved


def test_census_photometric_loss_prefers_true_flow_under_a_brightness_change():
    frame0 = smooth_texture(32, 32)[None]
    frame1 = (smooth_texture(32, 32, dx=2.0, dy=1.0)[None] * 0.8 + 0.15).clamp(0, 1)
    true_flow, zero_flow = constant_flow(1, 32, 32, 2.0, 1.0), torch.zeros(1, 2, 32, 32)
    census_ratio = (photometric_loss(frame0, frame1, true_flow, census=True)
                    / photometric_loss(frame0, frame1, zero_flow, census=True))
    # the intensity penalty pays for the brightness change even at the true flow
    intensity_ratio = photometric_loss(frame0, frame1, true_flow) / photometric_loss(frame0, frame1, zero_flow)
    assert census_ratio < 0.3 and intensity_ratio > 0.5


def test_photometric_loss_mask_and_border():
    frame0, frame1 = torch.rand(1, 3, 20, 20), torch.rand(1, 3, 20, 20)
    flow = torch.zeros(1, 2, 20, 20, requires_grad=True)
    empty = photometric_loss(frame0, frame1, flow, mask=torch.zeros(1, 1, 20, 20))
    assert empty.item() == 0.0
    empty.backward()
    assert torch.isfinite(flow.grad).all()
    # differences only on the outer 10% are ignored with border=0.1, not with border=0
    frame1 = frame0.clone()
    frame1[..., :2, :] = 1.0 - frame1[..., :2, :]
    zero = torch.zeros(1, 2, 20, 20)
    with_border = photometric_loss(frame0, frame1, zero, border=0.1)
    assert with_border < photometric_loss(frame0, frame1, zero, border=0.0)
    with pytest.raises(ValueError):
        photometric_loss(frame0, frame1, zero, border=0.5)


def test_smoothness_constant_and_ramp():
    eps, alpha = 1e-3, 0.3
    constant = smoothness_loss(constant_flow(2, 8, 9, 3.0, -1.0), alpha, eps)
    assert constant.item() == pytest.approx(2 * eps ** (2 * alpha), rel=1e-4)
    ramp = torch.zeros(1, 2, 8, 9)
    ramp[:, 0] = 0.5 * pixel_grid(8, 9)[0]  # u = 0.5 x: du/dx = 0.5, all else 0
    expected = ((0.5**2 + eps**2) ** alpha + eps ** (2 * alpha)) / 2 + eps ** (2 * alpha)
    assert smoothness_loss(ramp, alpha, eps).item() == pytest.approx(expected, rel=1e-4)


def test_edge_aware_smoothness_is_lower_at_image_edges():
    flow = torch.zeros(1, 2, 16, 16)
    flow[:, 0, :, 8:] = 4.0  # motion boundary between columns 7 and 8
    image = torch.zeros(1, 3, 16, 16)
    image[..., 8:] = 1.0  # image edge at the same place
    plain = smoothness_loss(flow)
    edge_aware = smoothness_loss(flow, image=image, edge_weight=10.0)
    assert edge_aware < 0.5 * plain
    assert smoothness_loss(flow, image=image, edge_weight=0.0) == plain


def test_ssim_loss_identical_different_and_tiny():
    frame = torch.rand(2, 3, 16, 16)
    assert ssim_loss(frame, frame).item() == pytest.approx(0.0, abs=1e-5)
    assert ssim_loss(frame, torch.rand(2, 3, 16, 16)).item() > 0.5
    noisy = torch.rand(2, 3, 16, 16)
    masked = ssim_loss(frame, noisy, valid=torch.zeros(2, 1, 16, 16))
    assert masked.item() == pytest.approx(0.0, abs=1e-5)
    small = ssim_loss(frame[..., :4, :5], noisy[..., :4, :5])  # window shrinks to 3
    assert torch.isfinite(small) and small > 0
    warped = torch.rand(2, 3, 2, 2, requires_grad=True)
    tiny = ssim_loss(frame[..., :2, :2], warped)
    assert tiny.item() == 0.0
    tiny.backward()
    assert warped.grad is not None


def test_occlusion_mask_consistent_and_inconsistent():
    forward = constant_flow(1, 8, 10, 2.0, 0.0)
    mask = forward_backward_occlusion(forward, -forward)
    assert mask.shape == (1, 1, 8, 10) and not mask.requires_grad
    assert torch.all(mask[..., :8] == 1)  # targets inside frame t+1 come back
    assert torch.all(mask[..., 8:] == 0)  # targets leave the frame: occluded
    assert torch.all(forward_backward_occlusion(forward, forward) == 0)
    flow = torch.zeros(1, 2, 8, 10, requires_grad=True)
    assert not forward_backward_occlusion(flow, flow).requires_grad


def test_presets():
    assert MotionLossConfig.paper() == MotionLossConfig()
    fine_tune = MotionLossConfig.fine_tune().ssim_weights
    assert fine_tune == pytest.approx((0.016, 0.008, 0.004, 0.002, 0.001))
    improved = MotionLossConfig.improved()
    assert improved.occlusion and improved.edge_weight == 10.0
    assert set(PRESETS) == {"paper", "occlusion", "edge", "improved", "census"}
    census = PRESETS["census"]()
    assert census.census and census.occlusion and census.photometric_weight == CENSUS_WEIGHT
    assert PRESETS["occlusion"]().occlusion and PRESETS["edge"]().edge_weight > 0
    assert all(isinstance(factory(), MotionLossConfig) for factory in PRESETS.values())


def pyramid_for(
    frames: torch.Tensor, u: float, v: float, levels: int, zero: bool = False
) -> list[torch.Tensor]:
    """Coarse -> fine constant flows at 1/2**levels ... 1/2 of the frames, in level pixels."""
    batch, steps, size = frames.shape[0], frames.shape[1] - 1, frames.shape[-1]
    pyramid = []
    for k in range(levels, 0, -1):
        side = size // 2**k
        scale = 0.0 if zero else side / size
        flow = constant_flow(batch * steps, side, side, u * scale, v * scale)
        flow = flow.view(batch, steps, 2, side, side)
        pyramid.append(flow.requires_grad_())
    return pyramid


@pytest.mark.parametrize("levels", [5, 3])
def test_multiscale_loss_prefers_true_flow_and_backpropagates(levels):
    frames = translated_window(steps=2, size=64, u=4.0, v=2.0)
    config = MotionLossConfig.paper()
    pyramid = pyramid_for(frames, 4.0, 2.0, levels)
    total, terms = multiscale_motion_loss(frames, pyramid, config)
    zero_pyramid = pyramid_for(frames, 4.0, 2.0, levels, zero=True)
    _, zero_terms = multiscale_motion_loss(frames, zero_pyramid, config)
    assert set(terms) == {"photometric", "smoothness", "ssim"}
    assert torch.isfinite(total) and total.ndim == 0
    # coarse levels see new content entering the frame, so only the finest level is near zero
    assert terms["photometric"] < 0.5 * zero_terms["photometric"]
    assert terms["ssim"] < zero_terms["ssim"]
    torch.testing.assert_close(total, terms["photometric"] + terms["smoothness"] + terms["ssim"])
    total.backward()
    assert all(level.grad is not None and torch.isfinite(level.grad).all() for level in pyramid)
    assert pyramid[-1].grad.abs().sum() > 0


def test_multiscale_loss_finest_level_exact_flow_is_near_zero():
    frames = translated_window(steps=2, size=64, u=4.0, v=2.0)
    finest = pyramid_for(frames, 4.0, 2.0, 1)  # 32x32 level: an exact (2, 1) px shift
    _, terms = multiscale_motion_loss(frames, finest, MotionLossConfig.paper())
    zero_finest = pyramid_for(frames, 4.0, 2.0, 1, zero=True)
    _, zero_terms = multiscale_motion_loss(frames, zero_finest, MotionLossConfig.paper())
    assert terms["photometric"] < 0.01 < zero_terms["photometric"]
    assert terms["ssim"] < 1e-4 < zero_terms["ssim"]


def test_multiscale_loss_with_occlusion_and_edges():
    frames = translated_window(steps=1, size=32, u=2.0, v=0.0)
    forward = pyramid_for(frames, 2.0, 0.0, 3)
    backward = pyramid_for(frames, -2.0, 0.0, 3)
    config = MotionLossConfig.improved()
    total, terms = multiscale_motion_loss(frames, forward, config, backward_pyramid=backward)
    assert torch.isfinite(total)
    total.backward()
    assert backward[-1].grad is not None and forward[-1].grad is not None
    # without backward flows the occlusion switch is ignored
    plain, _ = multiscale_motion_loss(frames, [level.detach() for level in forward], config)
    assert torch.isfinite(plain)
    with pytest.raises(ValueError):
        multiscale_motion_loss(frames, pyramid_for(frames, 2.0, 0.0, 6), config)


def test_smoothness_of_a_one_pixel_level_is_zero_not_nan():
    flow = torch.randn(2, 2, 1, 3, requires_grad=True)
    loss = smoothness_loss(flow)
    assert torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(flow.grad).all()
