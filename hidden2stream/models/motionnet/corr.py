"""MotionNet-C: a correlation (cost-volume) MotionNet, coarse to fine as in PWC-Net.

Same contract as :class:`~hidden2stream.models.motionnet.MotionNet` (frames ``(B, T+1, 3, H, W)``
in [0, 1] -> ``T`` forward flows at five scales, 1/32 ... 1/2, each in pixels of its level), so it
serves as the stacked or branched hidden stream unchanged. What differs is how flow is found:

* one shared encoder runs on every frame once (a window of T+1 frames costs T+1 encodings, not
  T pairs of them) and gives a feature pyramid at 1/2 ... 1/32;
* for each consecutive pair, from 1/32 to 1/4, the flow so far (upsampled) warps the features of
  frame t+1 back onto frame t, a local correlation of radius ``radius`` compares them (cosine
  similarity of centred features, as UFlow), and one
  decoder, shared by all levels, predicts the flow *residual* from the cost volume, the features
  of frame t and the current flow. The 1/2 level is the 1/4 flow upsampled (as PWC-Net, which
  stops at 1/4).

Matching features explicitly is what lets a small network find displacements of tens of pixels
at any image size: the search range is ``radius`` pixels at every level, i.e. ``radius * 32``
pixels at 1/32, and nothing in the decoder depends on the resolution.
"""
from __future__ import annotations

from typing import ClassVar, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hidden2stream.checkpoint import Checkpoint
from hidden2stream.flow.warp import backward_warp
from hidden2stream.models.motionnet.base import (MotionNetBase, PaddedFlows, conv_lrelu, init_convs, init_small,
                                                 normalised_padded, upsample_flow)
from hidden2stream.models.motionnet.config import LEVELS, MotionNetConfig
from hidden2stream.weights import weights_path

INITIAL_SHARPNESS = 10.0  # softmax temperature^-1 on cosine costs in [-1, 1]


def local_correlation(first: torch.Tensor, second: torch.Tensor, radius: int) -> torch.Tensor:
    """Cost volume ``(N, (2r+1)^2, H, W)``: the dot product ``first(x) . second(x + d)`` over channels
    (a cosine similarity in [-1, 1] for :func:`normalise_features` inputs).

    ``d`` runs over the ``(2r+1)^2`` integer offsets with ``|dx|, |dy| <= r``, row-major (dy
    outer). ``second`` is zero outside the frame. Inputs are ``(N, C, H, W)``.
    """
    if first.shape != second.shape or first.ndim != 4:
        raise ValueError(f"correlation needs two equal (N, C, H, W) maps, got "
                         f"{tuple(first.shape)} and {tuple(second.shape)}")
    height, width = first.shape[-2:]
    padded = F.pad(second, (radius, radius, radius, radius))
    size = 2 * radius + 1
    costs = [(first * padded[..., dy:dy + height, dx:dx + width]).sum(1)
             for dy in range(size) for dx in range(size)]
    return torch.stack(costs, dim=1)


def normalise_features(features: torch.Tensor) -> torch.Tensor:
    """Centre each pixel's feature vector and scale it to unit length, as UFlow does before its
    cost volume: the correlation becomes a cosine similarity, which picks the true match even
    with random weights, where a raw product favours wherever features are large."""
    centred = features - features.mean(1, keepdim=True)
    return F.normalize(centred, dim=1, eps=1e-6)


def _upsample2(flow: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Flows ``(N, 2, h, w)`` in pixels -> ``(N, 2, *size)`` in pixels of the new size."""
    return upsample_flow(flow[:, None], size)[:, 0]


class CorrMotionNet(MotionNetBase):
    """Correlation MotionNet: frames ``(B, T+1, 3, H, W)`` in [0, 1] -> forward flows, any H, W.

    :meth:`encode` gives the per-frame pyramid with the frames folded into channels, level k
    ``(B, (T+1) * widths[k], H_pad / 2^(k+1), W_pad / 2^(k+1))``, so the deepest map can feed a
    branched classifier as MotionNet's does. Output forms as in :meth:`MotionNetBase.forward`.
    """

    VARIANT: ClassVar[str] = "corr"  # the MotionNetConfig variant this class builds

    def __init__(self, config: MotionNetConfig) -> None:
        super().__init__()
        if config.variant != self.VARIANT:
            raise ValueError(f"{type(self).__name__} builds the {self.VARIANT} variant, not {config.variant!r}")
        self.config = config
        self.num_flows = config.frames - 1
        layers = config.layers
        stages, previous = [], 3
        for width in layers.widths:
            stages.append(nn.Sequential(conv_lrelu(previous, width, stride=2), conv_lrelu(width, width)))
            previous = width
        self.encoder = nn.ModuleList(stages)
        # One context projection per decoded level, coarse to fine: their number sets how deep
        # _coarse_to_fine goes.
        self.context = nn.ModuleList(nn.Conv2d(width, layers.context, 1) for width in self._decoded_widths()[::-1])
        decoder, previous = [], (2 * layers.radius + 1) ** 2 + layers.context + 2
        for width in layers.decoder_widths:
            decoder.append(conv_lrelu(previous, width))
            previous = width
        self.decoder = nn.Sequential(*decoder)
        self.predict = nn.Conv2d(previous, 2, 3, padding=1)
        # Soft-argmax of the cost volume: each level starts from block matching, the decoder refines.
        size = 2 * layers.radius + 1
        dy, dx = torch.meshgrid(torch.arange(size) - layers.radius, torch.arange(size) - layers.radius,
                                indexing="ij")
        self.register_buffer("offsets", torch.stack([dx, dy], 0).reshape(1, 2, size * size, 1, 1).float(),
                             persistent=False)
        self.sharpness = nn.Parameter(torch.tensor(INITIAL_SHARPNESS))
        self._init_weights()

    @property
    def feature_channels(self) -> int:
        """Channels of the deepest (1/32) encoder map, frames folded in."""
        return self.config.frames * self.config.layers.widths[-1]

    def _decoded_widths(self) -> tuple[int, ...]:
        """Encoder widths of the levels the residual decoder runs on, fine to coarse: 1/4 ... 1/32
        (encoder maps 1 ... 4), and first 1/2 (map 0) with ``refine_half`` (its context projection then
        comes last, so the coarser levels keep their indices)."""
        layers = self.config.layers
        return layers.widths if layers.refine_half else layers.widths[1:]

    def _init_weights(self) -> None:
        """Kaiming (LeakyReLU 0.1) convs; a near-zero residual predictor (initial flow ~0)."""
        init_convs(self)
        init_small(self.predict)

    def _check(self, frames: torch.Tensor) -> None:
        if frames.ndim != 5 or frames.shape[1] != self.config.frames or frames.shape[2] != 3:
            raise ValueError(f"MotionNet-C expects frames (B, {self.config.frames}, 3, H, W), "
                             f"got {tuple(frames.shape)}")

    def encode(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Frames -> five maps, fine to coarse (1/2 ... 1/32), frames folded into channels."""
        self._check(frames)
        batch, count, _, height, width = frames.shape
        x = normalised_padded(frames.reshape(batch * count, 3, height, width))
        features = []
        for stage in self.encoder:
            x = stage(x)
            features.append(x.reshape(batch, -1, *x.shape[-2:]))
        return features

    def _pairs(self, level: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Folded map ``(B, (T+1) C, h, w)`` -> frames t and t+1 as ``(B T, C, h, w)`` each."""
        maps = level.unflatten(1, (self.config.frames, -1))
        return maps[:, :-1].flatten(0, 1), maps[:, 1:].flatten(0, 1)

    def _start(self, first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The coarsest level's starting flow ``(N, 2, h, w)`` and frame t+1's features warped by it:
        here zero flow and the features as they are."""
        return first.new_zeros(first.shape[0], 2, *first.shape[-2:]), second

    def _coarse_to_fine(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Encoder maps -> the decoded levels' flows, coarse to fine, each ``(B T, 2, h, w)`` in pixels
        of its (padded) level."""
        flows: list[torch.Tensor] = []
        for level, context in zip(features[::-1], self.context):  # coarse to fine, as far as decoded
            first, second = self._pairs(level)
            if not flows:
                flow, warped = self._start(first, second)
            else:
                flow = _upsample2(flows[-1], first.shape[-2:])
                warped = backward_warp(second, flow)[0].to(second.dtype)
            cost = local_correlation(normalise_features(first), normalise_features(warped), self.config.layers.radius)
            match = (torch.softmax(cost * self.sharpness, dim=1)[:, None] * self.offsets).sum(2)
            flow = flow + match.float()
            hidden = self.decoder(torch.cat([cost, context(first), flow.to(first.dtype)], dim=1))
            flows.append(flow + self.predict(hidden).float())
        return flows

    def decode_padded(self, features: list[torch.Tensor]) -> PaddedFlows:
        """Encoder maps (from :meth:`encode`) -> the flow pyramid at the padded size."""
        flows = self._coarse_to_fine(features)
        if len(flows) < LEVELS:  # the 1/2 level is the 1/4 flow upsampled, as PWC-Net
            flows.append(_upsample2(flows[-1], features[0].shape[-2:]))
        return PaddedFlows([f.unflatten(0, (features[0].shape[0], self.num_flows)) for f in flows])


def motionnet_corr(frames: int = 2, weights: str | None = None) -> CorrMotionNet:
    """MotionNet-C at its default (CPU-sized) widths for windows of ``frames`` frames.

    ``weights``: None (random init) or the name of shipped weights (``"default"``; see
    ``hidden2stream/weights/MANIFEST.json``), which serve any ``frames``.
    """
    if weights is None:
        return CorrMotionNet(MotionNetConfig("corr", frames))
    checkpoint = Checkpoint.load(weights_path(weights), kind="motionnet")  # weights_path refuses unknown names
    model = CorrMotionNet(checkpoint.config.with_frames(frames))
    checkpoint.load_into(model)
    return model
