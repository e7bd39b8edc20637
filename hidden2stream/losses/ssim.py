"""Structural similarity (SSIM) loss between a frame and its flow-warped reconstruction."""
from __future__ import annotations

import torch
from pytorch_msssim import ssim
from torch import Tensor

SSIM_WINDOW = 7
"""The paper uses 8x8 windows; pytorch-msssim needs an odd Gaussian window, so 7 is used."""


def ssim_loss(frame0: Tensor, warped: Tensor, valid: Tensor | None = None) -> Tensor:
    """``1 - SSIM(frame0, warped)`` as a 0-dim tensor (frames ``(N, C, H, W)`` in [0, 1]).

    The Gaussian window is 7 (not the paper's 8, see ``SSIM_WINDOW``), shrunk to the largest odd
    size that fits coarse pyramid levels; below 3 pixels the loss is 0. Where ``valid (N, 1, H, W)``
    is 0 the warped values are replaced by frame0's, so out-of-frame pixels are not errors.
    SSIM is computed in float32, with autocast off, for accuracy. Identical images give 0.
    """
    side = min(frame0.shape[-2:])
    if side < 3:
        return warped.sum() * 0.0
    if valid is not None:
        warped = torch.where(valid > 0, warped, frame0.to(warped.dtype))
    win_size = min(SSIM_WINDOW, side if side % 2 else side - 1)
    with torch.autocast(frame0.device.type, enabled=False):
        return 1.0 - ssim(frame0.float(), warped.float(), data_range=1.0, win_size=win_size)
