"""Smoothness prior on flow: Charbonnier penalty of neighbouring-pixel differences."""
from __future__ import annotations

import torch
from kornia.filters import spatial_gradient
from torch import Tensor

from hidden2stream.losses.charbonnier import charbonnier


def smoothness_loss(
    flow: Tensor,
    alpha: float = 0.3,
    eps: float = 1e-3,
    image: Tensor | None = None,
    edge_weight: float = 0.0,
) -> Tensor:
    """Mean Charbonnier of the x and y forward differences of u and v, as a 0-dim tensor.

    The result is ``mean_x + mean_y`` over flow ``(N, 2, H, W)``. With ``image (N, C, H, W)`` and
    ``edge_weight > 0`` (edge-aware smoothness, beyond the paper) each difference is weighted by
    ``exp(-edge_weight * |dI|)``, where ``|dI|`` is the channel-mean absolute Sobel gradient of the
    image at the difference's first pixel, so flow may change where the image has edges.
    A direction with a single pixel (no differences) contributes 0.
    """
    dx = flow[..., :, 1:] - flow[..., :, :-1]
    dy = flow[..., 1:, :] - flow[..., :-1, :]
    penalty_x = charbonnier(dx, alpha, eps)
    penalty_y = charbonnier(dy, alpha, eps)
    if image is not None and edge_weight > 0:
        if image.shape[0] != flow.shape[0] or image.shape[-2:] != flow.shape[-2:]:
            raise ValueError(f"image {tuple(image.shape)} does not match flow {tuple(flow.shape)}")
        # (N, 2, H, W): channel-mean |dI/dx|, |dI/dy|
        gradient = spatial_gradient(image.to(flow.dtype)).abs().mean(dim=1)
        penalty_x = penalty_x * torch.exp(-edge_weight * gradient[:, :1, :, :-1])
        penalty_y = penalty_y * torch.exp(-edge_weight * gradient[:, 1:, :-1, :])
    # a 1-pixel-wide level (the coarsest level of a small input) has no differences: no penalty
    return _mean(penalty_x, flow) + _mean(penalty_y, flow)


def _mean(penalty: Tensor, flow: Tensor) -> Tensor:
    return penalty.mean() if penalty.numel() else flow.sum() * 0.0
