"""Hand-made inputs shared by the flow and loss tests."""
from __future__ import annotations

import torch

from hidden2stream.flow.warp import pixel_grid


def smooth_texture(
    height: int, width: int, dx: float = 0.0, dy: float = 0.0, frequency: float = 1.0
) -> torch.Tensor:
    """RGB texture (3, H, W) in [0, 1] of low-frequency sinusoids, sampled at (x - dx, y - dy)."""
    grid = pixel_grid(height, width, dtype=torch.float64)
    x, y = (grid[0] - dx) * frequency, (grid[1] - dy) * frequency
    channels = [
        0.5
        + 0.2 * torch.sin(0.31 * x + 0.17 * y + phase)
        + 0.2 * torch.cos(0.13 * x - 0.29 * y + 2 * phase)
        for phase in (0.0, 1.0, 2.0)
    ]
    return torch.stack(channels).float()


def constant_flow(n: int, height: int, width: int, u: float, v: float) -> torch.Tensor:
    flow = torch.empty(n, 2, height, width)
    flow[:, 0], flow[:, 1] = u, v
    return flow
