"""Census (ternary) transform distance: a photometric penalty robust to brightness changes.

Beyond the paper (UnFlow, Meister et al. 2018): each pixel is described by the soft signs of its
differences to the neighbours in a patch, so a change of brightness or contrast between frames
(lighting, auto exposure, compression flicker in real video) leaves the description unchanged,
while the raw-intensity Charbonnier penalty counts it as motion error.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def census_transform(image: Tensor, patch: int = 7) -> Tensor:
    """``(N, C, H, W)`` in [0, 1] -> ``(N, patch^2, H, W)``: soft signs of the grey-level
    differences (0..255 units) between each pixel's neighbours and the pixel (zero padding)."""
    grey = image.mean(dim=1, keepdim=True) * 255.0
    n, _, height, width = grey.shape
    neighbours = F.unfold(grey, patch, padding=patch // 2).view(n, patch * patch, height, width)
    difference = neighbours - grey
    return difference / torch.sqrt(0.81 + difference**2)


def census_distance(image0: Tensor, image1: Tensor, patch: int = 7) -> Tensor:
    """Soft Hamming distance ``(N, 1, H, W)`` between the census transforms of two images."""
    squared = (census_transform(image0, patch) - census_transform(image1, patch)) ** 2
    return (squared / (0.1 + squared)).sum(dim=1, keepdim=True)
