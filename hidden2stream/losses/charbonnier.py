"""Generalized Charbonnier penalty, a differentiable robust alternative to L1."""
from __future__ import annotations

from torch import Tensor


def charbonnier(x: Tensor, alpha: float, eps: float = 1e-3, beta: float = 1.0) -> Tensor:
    """Elementwise ``((beta * x)^2 + eps^2)^alpha``; alpha = 0.5 is a smoothed |beta * x|."""
    return ((beta * x) ** 2 + eps**2) ** alpha
