"""Pixel grids and backward warping of images by optical flow.

Flow convention (docs/architecture.md): channel 0 = u (x, right), channel 1 = v (y, down), in
pixels; ``flow_t`` is the *forward* flow from frame t to frame t+1, so frame t+1 backward-warped
by ``flow_t`` reconstructs frame t.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.geometry import create_meshgrid
from torch import Tensor


def pixel_grid(
    height: int,
    width: int,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> Tensor:
    """Pixel coordinates ``(2, H, W)``: channel 0 = x (column), channel 1 = y (row)."""
    grid = create_meshgrid(height, width, normalized_coordinates=False, device=device, dtype=dtype)
    return grid[0].permute(2, 0, 1)


def backward_warp(image: Tensor, flow: Tensor) -> tuple[Tensor, Tensor]:
    """Sample ``image`` at ``x + flow(x)`` (bilinear; the edge pixels extend past the frame).

    Args:
        image: ``(N, C, H, W)``, e.g. frame t+1.
        flow: ``(N, 2, H, W)`` forward flow t -> t+1 in pixels (u right, v down).

    Returns:
        ``warped (N, C, H, W)``, which reconstructs frame t when ``image`` is frame t+1, and
        ``valid (N, 1, H, W)``: 1 where the sample point lies inside the frame's area
        ``[-0.5, W-0.5] x [-0.5, H-0.5]`` (pixel centres at integers), else 0. Both are in the
        flow's dtype promoted to at least float32 (half-precision grids cannot address pixels
        beyond 256 exactly); the image is cast to it, so any input precision
        works, under autocast too.

    Why the half-pixel margin: a point that moves a fraction of a pixel past the last pixel centre
    is still inside the frame. Calling it invalid (the ``[0, W-1]`` rule) drops every edge pixel
    with a tiny outward flow from the photometric loss, and on the coarse pyramid levels (2x2,
    4x4), where almost all pixels are edge pixels, the loss then rewards drifting flows that
    nothing pulls back.
    """
    if image.ndim != 4 or flow.ndim != 4 or flow.shape[1] != 2:
        raise ValueError(
            "expected image (N,C,H,W) and flow (N,2,H,W), "
            f"got {tuple(image.shape)} and {tuple(flow.shape)}"
        )
    if image.shape[0] != flow.shape[0] or image.shape[-2:] != flow.shape[-2:]:
        raise ValueError(f"image {tuple(image.shape)} and flow {tuple(flow.shape)} differ in size")
    _, _, height, width = flow.shape
    flow = flow.to(torch.promote_types(flow.dtype, torch.float32))
    coords = pixel_grid(height, width, device=flow.device, dtype=flow.dtype).unsqueeze(0) + flow
    x, y = coords[:, 0], coords[:, 1]
    valid = (x >= -0.5) & (x <= width - 0.5) & (y >= -0.5) & (y <= height - 0.5)
    # align_corners=True: pixel 0 -> -1 and pixel W-1 -> +1.
    grid_x = 2.0 * x / max(width - 1, 1) - 1.0
    grid_y = 2.0 * y / max(height - 1, 1) - 1.0
    grid = torch.stack((grid_x, grid_y), dim=-1)
    warped = F.grid_sample(
        image.to(flow.dtype), grid, mode="bilinear", padding_mode="border", align_corners=True
    )
    return warped, valid.unsqueeze(1).to(flow.dtype)
