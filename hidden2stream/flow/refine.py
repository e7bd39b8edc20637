"""Lucas-Kanade refinement: a parameter-free, differentiable sub-pixel layer on top of a CNN's flow.

A CNN's flow is right to a pixel or so but blurred and biased below that (it predicts at 1/2 or
1/4 resolution and learns its residuals from synthetic data). Given the two frames, that flow is
an excellent starting point for the classical Lucas-Kanade step (Lucas & Kanade 1981; as the
inverse search of DIS, Kroeger et al. 2016): frame 2 is backward-warped by the current flow and
the remaining displacement ``d`` minimises ``sum_window w (I_t + grad I . d)^2`` over a Gaussian
window, i.e. solves the 2x2 system of the structure tensor at every pixel. Coarse to fine over
``scales`` (by default 1/4, 1/2, then full resolution), a few iterations each.

Where the window has no texture (structure tensor below ``damping``) the system is damped toward
``d = 0``: the CNN's flow is kept there, which is the aperture problem's answer a learned prior
gives better than a least-squares fit. Every step is clipped to ``max_step`` pixels of its level,
so a bad fit at an occlusion cannot throw the flow far.

Flows follow docs/architecture.md: ``flow`` is the forward flow frame1 -> frame2 in pixels,
``frame1(x) ~ frame2(x + flow(x))``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from kornia.filters import get_gaussian_kernel1d, get_spatial_gradient_kernel2d
from torch import Tensor

from hidden2stream.flow.warp import backward_warp
from hidden2stream.checkpoint import plain


@dataclass(frozen=True)
class LucasKanadeRefinement:
    """How a MotionNet refines its full-resolution output (``MotionNetConfig.refinement``).

    ``scales``: downsampling factors visited coarse to fine (powers of two, ending with 1; 1/4
    first widens the reach of a step to 4 px of the frame, for CNN errors of a few pixels).
    ``iterations``: Lucas-Kanade steps per scale. ``sigma``: the Gaussian window's standard
    deviation in pixels of each scale (3: a window about 15 px wide, the classic LK size).
    ``damping``: added to the structure tensor's diagonal, in (intensity / pixel)^2 summed over
    the three colour channels: 1e-4 is a gradient of 0.01 per pixel, 2.5 grey levels of 255, the
    size of 8-bit quantisation and sensor noise, so texture below the noise defers to the CNN.
    ``max_step``: the largest change of one step, in pixels of its scale.
    """

    scales: tuple[int, ...] = (4, 2, 1)
    iterations: int = 3
    sigma: float = 3.0
    damping: float = 1e-4
    max_step: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", tuple(int(s) for s in self.scales))
        if not self.scales or any(s < 1 or s & (s - 1) for s in self.scales) or self.scales[-1] != 1 \
                or list(self.scales) != sorted(self.scales, reverse=True):
            raise ValueError(f"refinement scales must be decreasing powers of two ending with 1, got {self.scales}")
        if self.iterations < 1 or self.sigma <= 0 or self.damping <= 0 or self.max_step <= 0:
            raise ValueError("refinement iterations, sigma, damping and max_step must be positive")

    def to_dict(self) -> dict[str, Any]:
        """Plain primitives for a checkpoint."""
        return plain(asdict(self))


def _downscale(x: Tensor, factor: int) -> Tensor:
    """Average ``factor x factor`` blocks (the antialiased resize by an integer factor; a partial
    block at the bottom/right edge averages the pixels it has)."""
    return x if factor == 1 else F.avg_pool2d(x, factor, ceil_mode=True)


def _upscale_flow(flow: Tensor, factor: int, size: tuple[int, int]) -> Tensor:
    """Flows ``(N, 2, h, w)`` of a level made by :func:`_downscale` -> ``(N, 2, *size)`` in pixels of
    the full size: bilinear by exactly ``factor`` (so each level pixel sits at the centre of its
    block, also where ``size`` is not a multiple of ``factor``), then cropped."""
    if factor == 1:
        return flow
    resized = F.interpolate(flow, scale_factor=factor, mode="bilinear", align_corners=False)
    return resized[..., :size[0], :size[1]] * factor


def _depthwise(x: Tensor, kernel: Tensor) -> Tensor:
    """Each channel of ``x (N, C, H, W)`` convolved with every kernel of ``kernel (K, kh, kw)`` (odd
    sizes), edges replicated: ``(N, C K, H, W)``, channel ``c K + k``. No reshapes: an ONNX export
    stays free in batch and size."""
    count, kernel_h, kernel_w = kernel.shape
    padded = F.pad(x, (kernel_w // 2, kernel_w // 2, kernel_h // 2, kernel_h // 2), mode="replicate")
    weight = kernel.to(x).repeat(x.shape[1], 1, 1).unsqueeze(1)  # (C K, 1, kh, kw)
    return F.conv2d(padded, weight, groups=x.shape[1])


def image_gradient(image: Tensor) -> tuple[Tensor, Tensor]:
    """Sobel derivatives d/dx, d/dy per pixel of ``image (N, C, H, W)``, each ``(N, C, H, W)``."""
    both = _depthwise(image, get_spatial_gradient_kernel2d("sobel", 1) / 8)
    return both[:, 0::2], both[:, 1::2]


def gaussian_window(maps: Tensor, sigma: float) -> Tensor:
    """``maps (N, C, H, W)`` summed over a Gaussian window of standard deviation ``sigma`` px
    (separable, 3 sigma each side, edges replicated: any size works)."""
    taps = get_gaussian_kernel1d(2 * round(3 * sigma) + 1, sigma)  # (1, K), sums to 1
    return _depthwise(_depthwise(maps, taps[:, None, :]), taps[:, :, None])


def lucas_kanade_step(frame1: Tensor, frame2: Tensor, flow: Tensor, refinement: LucasKanadeRefinement) -> Tensor:
    """One damped Lucas-Kanade update of ``flow (N, 2, H, W)`` for frames ``(N, C, H, W)``, one scale."""
    warped, inside = backward_warp(frame2, flow)
    ix, iy = image_gradient(0.5 * (warped + frame1))
    ix, iy = ix * inside, iy * inside
    it = (warped - frame1) * inside
    terms = torch.stack([(ix * ix).sum(1), (ix * iy).sum(1), (iy * iy).sum(1),
                         (ix * it).sum(1), (iy * it).sum(1)], dim=1)
    axx, axy, ayy, bx, by = gaussian_window(terms, refinement.sigma).unbind(1)
    axx, ayy = axx + refinement.damping, ayy + refinement.damping
    determinant = axx * ayy - axy * axy  # >= damping^2 > 0: the tensor is positive semi-definite
    du = (axy * by - ayy * bx) / determinant
    dv = (axy * bx - axx * by) / determinant
    return flow + torch.stack([du, dv], dim=1).clamp(-refinement.max_step, refinement.max_step)


def lucas_kanade_refine(frame1: Tensor, frame2: Tensor, flow: Tensor, refinement: LucasKanadeRefinement) -> Tensor:
    """Refine forward flows ``(N, 2, H, W)`` frame1 -> frame2 (frames ``(N, C, H, W)`` in [0, 1]).

    Runs in float32 at least (outside any autocast; float64 inputs stay float64): the 2x2 solve
    divides by a determinant that half precision cannot resolve. Returns flows of the input's size.
    """
    if frame1.shape != frame2.shape or frame1.ndim != 4 or flow.ndim != 4 or flow.shape[1] != 2 \
            or flow.shape[0] != frame1.shape[0] or flow.shape[-2:] != frame1.shape[-2:]:
        raise ValueError(f"refinement needs frames (N, C, H, W) and flows (N, 2, H, W) of one size, got "
                         f"{tuple(frame1.shape)}, {tuple(frame2.shape)} and {tuple(flow.shape)}")
    size = tuple(flow.shape[-2:])
    with torch.autocast(flow.device.type, enabled=False):
        dtype = torch.promote_types(flow.dtype, torch.float32)
        frame1, frame2, flow = frame1.to(dtype), frame2.to(dtype), flow.to(dtype)
        for factor in refinement.scales:
            first, second = _downscale(frame1, factor), _downscale(frame2, factor)
            start = _downscale(flow, factor) / factor
            level = start
            for _ in range(refinement.iterations):
                level = lucas_kanade_step(first, second, level, refinement)
            # Add the coarse level's change, so the full-resolution detail of the flow stays.
            flow = flow + _upscale_flow(level - start, factor, size)
    return flow


def refine_window_flows(frames: Tensor, flows: Tensor, refinement: LucasKanadeRefinement) -> Tensor:
    """Refine a window's flows ``(B, T, 2, H, W)`` given its frames ``(B, T+1, 3, H, W)``: each flow
    t on its pair (t, t+1)."""
    if frames.ndim != 5 or flows.ndim != 5 or frames.shape[1] != flows.shape[1] + 1:
        raise ValueError(f"expected frames (B, T+1, 3, H, W) and flows (B, T, 2, H, W), got "
                         f"{tuple(frames.shape)} and {tuple(flows.shape)}")
    # One pair position at a time, no reshape of the batch: an ONNX export keeps the batch free.
    return torch.stack([lucas_kanade_refine(frames[:, t], frames[:, t + 1], flows[:, t], refinement)
                        for t in range(flows.shape[1])], dim=1)
