"""Occlusion estimation by forward-backward flow consistency (UnFlow, Meister et al. 2018)."""
from __future__ import annotations

import torch
from torch import Tensor

from hidden2stream.flow.warp import backward_warp


@torch.no_grad()
def forward_backward_occlusion(
    flow_fw: Tensor, flow_bw: Tensor, alpha1: float = 0.01, alpha2: float = 0.5
) -> Tensor:
    """Non-occluded mask ``(N, 1, H, W)`` (1 = visible in both frames), detached.

    ``flow_fw`` is the flow frame t -> t+1 and ``flow_bw`` the flow t+1 -> t, both ``(N, 2, H, W)``
    in pixels. A pixel is visible when its forward target lies inside frame t+1 and going forward
    and then back returns near the start:
    ``|fw + bw(x + fw)|^2 < alpha1 * (|fw|^2 + |bw(x + fw)|^2) + alpha2``.
    """
    bw_at_target, inside = backward_warp(flow_bw, flow_fw)
    mismatch = (flow_fw + bw_at_target).pow(2).sum(dim=1, keepdim=True)
    lengths = flow_fw.pow(2).sum(dim=1, keepdim=True) + bw_at_target.pow(2).sum(dim=1, keepdim=True)
    return ((mismatch < alpha1 * lengths + alpha2) & (inside > 0)).to(flow_fw.dtype)
