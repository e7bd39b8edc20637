"""The unsupervised MotionNet objective: multi-scale photometric + smoothness + SSIM losses.

Hidden Two-Stream (Zhu et al.) trains MotionNet without flow labels: at every pyramid level the
next frame warped by the predicted flow must reconstruct the current frame (Charbonnier
photometric and SSIM terms) while the flow stays smooth (Charbonnier smoothness).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch.nn.functional as F
from torch import Tensor

from hidden2stream.flow.warp import backward_warp
from hidden2stream.losses.occlusion import forward_backward_occlusion
from hidden2stream.losses.photometric import photometric_loss
from hidden2stream.losses.smoothness import smoothness_loss
from hidden2stream.losses.ssim import ssim_loss

PAPER_SSIM_WEIGHTS = (0.16, 0.08, 0.04, 0.02, 0.01)


@dataclass
class MotionLossConfig:
    """Weights and switches of :func:`multiscale_motion_loss`.

    Per-level tuples run coarse -> fine (levels 6..2 of the paper, 1/32 ... 1/2 resolution).

    - ``photometric_weight``/``photometric_alpha``: weight and Charbonnier exponent of the
      reconstruction term (differences in 0..255 intensity units, paper: alpha 0.4).
    - ``smooth_weight``/``smooth_alpha``: weight and exponent of the smoothness term (paper: 0.3).
    - ``ssim_weights``: weight of the SSIM term per level; ``scale_weights``: factor on the
      photometric and smoothness terms per level.
    - ``eps``: Charbonnier epsilon; ``border``: fraction of each side that the photometric term
      ignores.
    - ``occlusion`` (beyond the paper): mask occluded pixels out of the photometric and SSIM terms
      by forward-backward consistency; needs backward flows, ignored without them.
    - ``edge_weight`` (beyond the paper): > 0 makes smoothness edge-aware, letting the flow change
      across image edges (weights ``exp(-edge_weight * |image gradient|)``).
    - ``census`` (beyond the paper): the reconstruction term compares census transforms instead
      of intensities (:mod:`hidden2stream.losses.census`), robust to brightness changes; its scale
      differs from the intensity term's, so ``photometric_weight`` goes with it (preset ``census``).
    """

    photometric_weight: float = 1.0
    photometric_alpha: float = 0.4
    smooth_weight: float = 1.0
    smooth_alpha: float = 0.3
    ssim_weights: tuple[float, ...] = PAPER_SSIM_WEIGHTS
    scale_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0)
    eps: float = 1e-3
    border: float = 0.1
    occlusion: bool = False
    edge_weight: float = 0.0
    census: bool = False

    @classmethod
    def paper(cls) -> MotionLossConfig:
        """The objective of the paper (the defaults)."""
        return cls()

    @classmethod
    def fine_tune(cls) -> MotionLossConfig:
        """The paper's objective with SSIM weights divided by 10 (end-to-end fine-tuning)."""
        return cls(ssim_weights=tuple(w / 10 for w in PAPER_SSIM_WEIGHTS))

    @classmethod
    def improved(cls) -> MotionLossConfig:
        """Beyond the paper: occlusion masking plus edge-aware smoothness (edge_weight 10)."""
        return cls(occlusion=True, edge_weight=10.0)


CENSUS_WEIGHT = 6.5  # the census term's pull toward the exact flow matched to the intensity term's


def _census_preset() -> MotionLossConfig:
    """``improved`` with the census term for the intensity one, weighted by ``CENSUS_WEIGHT``: at
    weight 1 its margin between zero flow and the exact flow is 6.5-6.8x smaller than the intensity
    term's (``benchmarks/loss_landscape.py``, realistic pairs at 96 and 256 px), so for sub-pixel
    motions the smoothness term's pull toward zero flow outweighs it and training collapses."""
    return replace(MotionLossConfig.improved(), census=True, photometric_weight=CENSUS_WEIGHT)


def _occlusion_preset() -> MotionLossConfig:
    return replace(MotionLossConfig.paper(), occlusion=True)


def _edge_preset() -> MotionLossConfig:
    return replace(MotionLossConfig.paper(), edge_weight=10.0)


PRESETS: dict[str, Callable[[], MotionLossConfig]] = {
    "paper": MotionLossConfig.paper,
    "occlusion": _occlusion_preset,
    "edge": _edge_preset,
    "improved": MotionLossConfig.improved,
    "census": _census_preset,
}


def _level_weights(weights: tuple[float, ...], levels: int, name: str) -> tuple[float, ...]:
    """The last (finest) ``levels`` weights."""
    if levels > len(weights):
        raise ValueError(f"pyramid has {levels} levels but {name} has only {len(weights)} weights")
    return tuple(weights[len(weights) - levels :])


def _direction_terms(
    frame0: Tensor, frame1: Tensor, flow: Tensor, mask: Tensor | None, config: MotionLossConfig
) -> tuple[Tensor, Tensor]:
    """Photometric and SSIM losses of reconstructing frame0 from frame1 warped by ``flow``."""
    photometric = photometric_loss(
        frame0, frame1, flow, config.photometric_alpha, config.eps, 255.0, config.border, mask, config.census
    )
    warped, valid = backward_warp(frame1, flow)
    if mask is not None:
        valid = valid * mask
    return photometric, ssim_loss(frame0, warped, valid)


def _smoothness(flow: Tensor, image: Tensor, config: MotionLossConfig) -> Tensor:
    """Smoothness of ``flow``, edge-aware on ``image`` when ``config.edge_weight > 0``."""
    edge_image = image if config.edge_weight > 0 else None
    return smoothness_loss(flow, config.smooth_alpha, config.eps, edge_image, config.edge_weight)


def _level_pairs(flat_frames: Tensor, batch: int, steps: int, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """The window's frames ``(B*(T+1), 3, H, W)`` at one level's ``size`` (bilinear, antialiased)
    as pairs ``frame0, frame1`` of shape ``(B*T, 3, h, w)``: frame t and frame t+1."""
    height, width = size
    level_frames = flat_frames
    if (height, width) != tuple(flat_frames.shape[-2:]):
        level_frames = F.interpolate(flat_frames, size=(height, width), mode="bilinear", antialias=True)
    level_frames = level_frames.view(batch, steps + 1, -1, height, width)
    return level_frames[:, :-1].flatten(0, 1), level_frames[:, 1:].flatten(0, 1)


def _level_terms(frame0: Tensor, frame1: Tensor, flow: Tensor, backward_flow: Tensor | None,
                 config: MotionLossConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Unweighted photometric, SSIM and smoothness terms of one level's forward ``flow``
    ``(B, T, 2, h, w)``; with ``backward_flow`` (t+1 -> t) each is the mean of both directions, the
    photometric ones masked by forward-backward occlusion. Computed in float32 (also under autocast)."""
    forward = flow.float().flatten(0, 1)
    smooth = _smoothness(forward, frame0, config)
    if backward_flow is None:
        photometric, ssim_term = _direction_terms(frame0, frame1, forward, None, config)
        return photometric, ssim_term, smooth
    backward = backward_flow.float().flatten(0, 1)
    photo_fw, ssim_fw = _direction_terms(
        frame0, frame1, forward, forward_backward_occlusion(forward, backward), config
    )
    photo_bw, ssim_bw = _direction_terms(
        frame1, frame0, backward, forward_backward_occlusion(backward, forward), config
    )
    smooth = (smooth + _smoothness(backward, frame1, config)) / 2
    return (photo_fw + photo_bw) / 2, (ssim_fw + ssim_bw) / 2, smooth


def multiscale_motion_loss(
    frames: Tensor,
    pyramid: list[Tensor],
    config: MotionLossConfig,
    backward_pyramid: list[Tensor] | None = None,
) -> tuple[Tensor, dict[str, Tensor]]:
    """Unsupervised multi-scale loss of a MotionNet flow pyramid.

    Args:
        frames: ``(B, T+1, 3, H, W)`` in [0, 1].
        pyramid: coarse -> fine list of forward flows ``(B, T, 2, h_i, w_i)`` in pixels of their
            level; frames are resized (bilinear, antialiased) to each level's own size.
        config: term weights and switches. With fewer levels than weights, the finest are used.
        backward_pyramid: same layout, ``[i][:, t]`` = flow frame t+1 -> frame t. Used only when
            ``config.occlusion``: the photometric, SSIM and smoothness terms are then averaged over
            both directions, the first two masked by forward-backward occlusion.

    Returns:
        ``(total, terms)`` with ``terms`` the weighted sums ``"photometric"``, ``"smoothness"``,
        ``"ssim"`` over levels (0-dim tensors, attached to the graph).
    """
    if frames.ndim != 5 or not pyramid:
        raise ValueError(f"expected frames (B, T+1, 3, H, W) and levels, got {tuple(frames.shape)}")
    batch, steps = frames.shape[0], frames.shape[1] - 1
    use_backward = config.occlusion and backward_pyramid is not None
    if use_backward and len(backward_pyramid) != len(pyramid):
        raise ValueError(f"backward pyramid has {len(backward_pyramid)} levels, not {len(pyramid)}")
    ssim_weights = _level_weights(config.ssim_weights, len(pyramid), "ssim_weights")
    scale_weights = _level_weights(config.scale_weights, len(pyramid), "scale_weights")
    flat_frames = frames.float().flatten(0, 1)
    terms: dict[str, Tensor] = {}
    for level, flow in enumerate(pyramid):
        if flow.shape[:3] != (batch, steps, 2):
            expected = f"({batch}, {steps}, 2, h, w)"
            raise ValueError(f"pyramid level {level} has shape {tuple(flow.shape)}, not {expected}")
        frame0, frame1 = _level_pairs(flat_frames, batch, steps, flow.shape[-2:])
        backward = backward_pyramid[level] if use_backward else None
        photometric, ssim_term, smooth = _level_terms(frame0, frame1, flow, backward, config)
        level_terms = {
            "photometric": scale_weights[level] * config.photometric_weight * photometric,
            "smoothness": scale_weights[level] * config.smooth_weight * smooth,
            "ssim": ssim_weights[level] * ssim_term,
        }
        for name, value in level_terms.items():
            terms[name] = terms[name] + value if name in terms else value
    total = terms["photometric"] + terms["smoothness"] + terms["ssim"]
    return total, terms
