"""Optical flow quality metrics: pure functions returning 0-dim tensors (no gradients).

Flows are ``(N, 2, H, W)`` in pixels; ``valid`` masks are ``(N, 1, H, W)`` with 1 = counted.
"""
from __future__ import annotations

import torch
from pytorch_msssim import ssim
from torch import Tensor

from hidden2stream.flow.warp import backward_warp


def _masked_mean(values: Tensor, valid: Tensor | None) -> Tensor:
    """Mean of ``values (N, 1, H, W)`` over pixels where ``valid`` is set (0 if none are)."""
    if valid is None:
        return values.mean()
    valid = valid.to(values.dtype)
    return (values * valid).sum() / valid.sum().clamp_min(1.0)


@torch.no_grad()
def endpoint_error(pred: Tensor, gt: Tensor, valid: Tensor | None = None) -> Tensor:
    """Average end-point error: mean L2 distance between predicted and true flow vectors."""
    return _masked_mean(torch.linalg.vector_norm(pred - gt, dim=1, keepdim=True), valid)


@torch.no_grad()
def fl_all(pred: Tensor, gt: Tensor, valid: Tensor | None = None) -> Tensor:
    """KITTI Fl-all: fraction of pixels whose EPE is > 3 px and > 5% of the true flow length."""
    epe = torch.linalg.vector_norm(pred - gt, dim=1, keepdim=True)
    magnitude = torch.linalg.vector_norm(gt, dim=1, keepdim=True)
    outlier = (epe > 3.0) & (epe > 0.05 * magnitude)
    return _masked_mean(outlier.to(pred.dtype), valid)


@torch.no_grad()
def photometric_l1(frame0: Tensor, frame1: Tensor, flow: Tensor) -> Tensor:
    """Mean absolute difference between frame0 and frame1 warped by the flow (frames in [0, 1]),
    over pixels whose sample point lies inside frame1."""
    warped, valid = backward_warp(frame1, flow)
    return _masked_mean((frame0 - warped).abs().mean(dim=1, keepdim=True), valid)


@torch.no_grad()
def warped_ssim(frame0: Tensor, frame1: Tensor, flow: Tensor) -> Tensor:
    """SSIM between frame0 and frame1 warped by the flow (data range 1, 11x11 Gaussian window,
    shrunk to the largest odd size that fits small images).

    Pixels whose sample point leaves frame1 take frame0's values, so they count as matches rather
    than errors.
    """
    warped, valid = backward_warp(frame1, flow)
    warped = torch.where(valid > 0, warped, frame0.to(warped.dtype))
    side = min(frame0.shape[-2:])
    win_size = min(11, side if side % 2 else side - 1)
    with torch.autocast(frame0.device.type, enabled=False):
        return ssim(frame0.float(), warped.float(), data_range=1.0, win_size=win_size)
