"""Photometric reconstruction loss: frame1 warped by the forward flow should match frame0."""
from __future__ import annotations

import torch
from torch import Tensor

from hidden2stream.flow.warp import backward_warp
from hidden2stream.losses.census import census_distance
from hidden2stream.losses.charbonnier import charbonnier


def _border_mask(height: int, width: int, border: float, like: Tensor) -> Tensor:
    """``(1, 1, H, W)`` mask that is 0 on the outer ``border`` fraction of each side, else 1."""
    if not 0.0 <= border < 0.5:
        raise ValueError(f"border must be in [0, 0.5), got {border}")
    mask = torch.zeros(1, 1, height, width, dtype=like.dtype, device=like.device)
    top, left = int(border * height), int(border * width)
    mask[..., top : height - top, left : width - left] = 1.0
    return mask


def photometric_loss(
    frame0: Tensor,
    frame1: Tensor,
    flow: Tensor,
    alpha: float = 0.4,
    eps: float = 1e-3,
    beta: float = 255.0,
    border: float = 0.1,
    mask: Tensor | None = None,
    census: bool = False,
) -> Tensor:
    """Charbonnier penalty of ``frame0 - backward_warp(frame1, flow)``, as a 0-dim tensor.

    Frames ``(N, C, H, W)`` in [0, 1]; ``beta = 255`` scales differences to 0..255 intensities as
    in the paper. Flow ``(N, 2, H, W)`` is the forward flow frame0 -> frame1 in pixels. The mean
    runs over pixels whose sample point is inside frame1, outside the ignored ``border`` fraction
    of each side (paper: 10%) and, when given, where ``mask (N, 1, H, W)`` is 1 (non-occluded).
    The masked mean is taken per sample, then averaged over the batch, so the loss of a batch
    split over several processes averages to the loss of the whole batch (DDP gives the same
    result for any world size). An empty mask gives 0 rather than NaN.

    ``census=True`` (beyond the paper) penalises the census distance of the two images instead of
    their intensity difference, as ``charbonnier(distance, alpha / 2, eps)``, i.e. about
    ``distance^0.4`` with the paper's alpha (UnFlow's and UFlow's robust exponent; ``beta`` unused).
    """
    warped, valid = backward_warp(frame1, flow)
    height, width = flow.shape[-2:]
    weight = valid * _border_mask(height, width, border, valid)
    if mask is not None:
        weight = weight * mask.to(weight.dtype)
    if census:
        penalty = charbonnier(census_distance(frame0, warped), alpha / 2, eps)
    else:
        penalty = charbonnier(frame0 - warped, alpha, eps, beta)
    per_sample = (penalty * weight).sum((1, 2, 3)) / (weight.sum((1, 2, 3)) * penalty.shape[1] + 1e-6)
    return per_sample.mean()
