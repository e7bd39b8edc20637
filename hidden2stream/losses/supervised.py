"""Supervised multi-scale flow loss (the FlowNet / PWC-Net warm start on exact synthetic flow)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def resize_flow(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """Flows ``(N, 2, H, W)`` in pixels -> ``(N, 2, h, w)`` in pixels of the new size.

    Downscaling is antialiased (a flow field averaged over each target pixel's footprint).
    """
    height, width = flow.shape[-2:]
    if (height, width) == tuple(size):
        return flow
    resized = F.interpolate(flow, size=size, mode="bilinear", align_corners=False,
                            antialias=size[0] < height)
    return resized * resized.new_tensor([size[1] / width, size[0] / height]).view(1, 2, 1, 1)


def multiscale_epe_loss(pyramid: list[Tensor], flow: Tensor,
                        weights: tuple[float, ...] | None = None) -> tuple[Tensor, dict[str, Tensor]]:
    """Mean end-point error of every pyramid level against the exact flow, in full-size pixels.

    Args:
        pyramid: coarse -> fine ``(B, T, 2, h_i, w_i)`` forward flows in pixels of their level.
        flow: the exact forward flows ``(B, T, 2, H, W)`` in pixels.
        weights: per level, coarse -> fine (default: 1 each). Each level's EPE is measured after
            scaling its flow to full-size pixels, so all levels speak the same unit and a level's
            error is not discounted by its resolution.

    Returns ``(total, {"epe": finest level's EPE})``.
    """
    if flow.ndim != 5 or flow.shape[2] != 2:
        raise ValueError(f"expected exact flows (B, T, 2, H, W), got {tuple(flow.shape)}")
    weights = weights or (1.0,) * len(pyramid)
    if len(weights) != len(pyramid):
        raise ValueError(f"{len(weights)} weights for {len(pyramid)} pyramid levels")
    target = flow.float().flatten(0, 1)
    height, width = target.shape[-2:]
    total, finest = target.new_zeros(()), target.new_zeros(())
    for weight, level in zip(weights, pyramid):
        predicted = level.float().flatten(0, 1)
        h, w = predicted.shape[-2:]
        scale = predicted.new_tensor([width / w, height / h]).view(1, 2, 1, 1)
        error = ((predicted - resize_flow(target, (h, w))) * scale).norm(dim=1)
        finest = error.mean()
        total = total + weight * finest
    return total / sum(weights), {"epe": finest}
