"""MotionNet-R: global matching, coarse-to-fine correlation and recurrent refinement (RAFT / NeuFlow v2).

Same contract as :class:`~hidden2stream.models.motionnet.corr.CorrMotionNet` (frames
``(B, T+1, 3, H, W)`` in [0, 1] -> ``T`` forward flows, five scales 1/32 ... 1/2 each in pixels of
its level, or the full-resolution flow), whose encoder, cost volume and residual decoder it reuses
(it is a subclass), so it serves as the stacked or branched hidden stream unchanged. For each
consecutive pair:

* **global matching at 1/32** (:func:`global_match`): every position of frame t is compared with
  *all* positions of frame t+1 and the soft-argmax gives the starting flow, so large motions are
  found however far they go (the local search of MotionNet-C covers ``radius * 32`` pixels);
* corr's coarse-to-fine residual decoding at 1/32, 1/16 and 1/8, from that start;
* **recurrent refinement at 1/8**: ``iterations`` weight-tied steps of a small ConvGRU (RAFT's update
  block without its correlation pyramid), each looking up a local cost volume at the current flow
  and adding a predicted residual;
* **learned convex upsampling** (:func:`convex_upsample`, RAFT): from the GRU state, a mask gives
  every full-resolution pixel a convex combination of the 3x3 neighbouring 1/8 flows, which keeps
  motion boundaries sharp where bilinear upsampling blurs them. The 1/4 and 1/2 levels are that
  full-resolution flow area-averaged: one x8 mask serves all finer levels, so the photometric loss
  on them trains the mask that makes the full-resolution output.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hidden2stream.flow.warp import backward_warp, pixel_grid
from hidden2stream.models.motionnet.base import PaddedFlows, conv_lrelu, init_convs, init_small
from hidden2stream.models.motionnet.config import MotionNetConfig
from hidden2stream.models.motionnet.corr import INITIAL_SHARPNESS, CorrMotionNet, local_correlation, normalise_features

REFINED = 2  # encoder map refined recurrently: 1/8
UPSAMPLING = 2 ** (REFINED + 1)  # 1/8 -> full resolution


def global_match(first: torch.Tensor, second: torch.Tensor, sharpness: torch.Tensor | float) -> torch.Tensor:
    """Flow ``(N, 2, h, w)`` in pixels (x, y) from comparing every position of ``first`` with all of
    ``second`` (both ``(N, C, h, w)``, e.g. :func:`normalise_features` maps of frames t and t+1).

    The dot products ``first(x) . second(y)`` over all ``y``, times ``sharpness``, are soft-maxed over
    ``y``; the expected ``y`` minus ``x`` is the flow (GMFlow / NeuFlow). Computed in float32: the
    ``(h w) x (h w)`` matrix is small at 1/32 (300 x 300 for 640x480 frames).
    """
    if first.shape != second.shape or first.ndim != 4:
        raise ValueError(f"global matching needs two equal (N, C, H, W) maps, got "
                         f"{tuple(first.shape)} and {tuple(second.shape)}")
    n, _, height, width = first.shape
    cost = first.float().flatten(2).transpose(1, 2) @ second.float().flatten(2)  # (N, h w, h w)
    grid = pixel_grid(height, width, device=first.device, dtype=torch.float32).flatten(1).t()  # (h w, 2)
    target = torch.softmax(cost * sharpness, dim=-1) @ grid
    return (target - grid).transpose(1, 2).reshape(n, 2, height, width)


def convex_upsample(flow: torch.Tensor, mask: torch.Tensor, factor: int) -> torch.Tensor:
    """Flow ``(N, 2, h, w)`` in pixels -> ``(N, 2, factor h, factor w)`` in pixels of the finer grid.

    ``mask`` ``(N, 9 factor^2, h, w)`` holds logits, ordered (neighbour, row in cell, column in cell);
    each fine pixel is the softmax-weighted (over the 9 neighbours) combination of ``factor * flow``
    at the 3x3 coarse cells around its own (RAFT). The flow is replicate-padded, not zero-padded as
    in RAFT, so a constant flow stays constant up to the frame's edges.
    """
    n, _, height, width = flow.shape
    if mask.shape != (n, 9 * factor * factor, height, width):
        raise ValueError(f"convex upsampling x{factor} of flow {tuple(flow.shape)} needs a mask "
                         f"({n}, {9 * factor * factor}, {height}, {width}), got {tuple(mask.shape)}")
    weights = torch.softmax(mask.float().view(n, 1, 9, factor, factor, height, width), dim=2)
    padded = F.pad(factor * flow.float(), (1, 1, 1, 1), mode="replicate")
    neighbours = F.unfold(padded, 3).view(n, 2, 9, 1, 1, height, width)
    fine = (weights * neighbours).sum(2)  # (N, 2, row in cell, column in cell, h, w)
    return fine.permute(0, 1, 4, 2, 5, 3).reshape(n, 2, factor * height, factor * width)


class ConvGRU(nn.Module):
    """RAFT's convolutional GRU cell: state ``(N, hidden, h, w)`` and input ``(N, inputs, h, w)`` ->
    the new state (3x3 gates)."""

    def __init__(self, hidden: int, inputs: int) -> None:
        super().__init__()
        self.gates = nn.Conv2d(hidden + inputs, 2 * hidden, 3, padding=1)
        self.candidate = nn.Conv2d(hidden + inputs, hidden, 3, padding=1)

    def forward(self, state: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        update, reset = torch.sigmoid(self.gates(torch.cat([state, inputs], dim=1))).chunk(2, dim=1)
        candidate = torch.tanh(self.candidate(torch.cat([reset * state, inputs], dim=1)))
        return (1 - update) * state + update * candidate


class RecurrentMotionNet(CorrMotionNet):
    """Recurrent MotionNet: frames ``(B, T+1, 3, H, W)`` in [0, 1] -> forward flows, any H, W.

    :meth:`encode`, :attr:`feature_channels` and the output forms are MotionNet-C's; the coarse
    decoder stops at 1/8, where the recurrent refinement and the convex upsampling take over.
    """

    VARIANT = "recurrent"

    def __init__(self, config: MotionNetConfig) -> None:
        super().__init__(config)
        layers = config.layers
        features = layers.widths[REFINED]
        self.global_sharpness = nn.Parameter(torch.tensor(INITIAL_SHARPNESS))
        self.start_state = nn.Conv2d(features, layers.hidden + layers.context, 3, padding=1)
        self.motion_encoder = conv_lrelu((2 * layers.radius + 1) ** 2 + 2, layers.motion)
        self.gru = ConvGRU(layers.hidden, layers.motion + 2 + layers.context)
        self.flow_head = nn.Sequential(conv_lrelu(layers.hidden, layers.hidden), nn.Conv2d(layers.hidden, 2, 3, padding=1))
        self.mask_head = nn.Sequential(conv_lrelu(layers.hidden, 64), nn.Conv2d(64, 9 * UPSAMPLING ** 2, 1))
        # The GRU keeps PyTorch's default init (smaller than Kaiming), so its gates start unsaturated;
        # near-zero residuals and near-uniform masks (a 3x3 box upsampling) to begin with.
        for module in (self.start_state, self.motion_encoder, self.flow_head, self.mask_head):
            init_convs(module)
        init_small(self.flow_head[-1])
        init_small(self.mask_head[-1])

    def _decoded_widths(self) -> tuple[int, ...]:
        """Coarse decoding stops at 1/8: encoder maps 2 ... 4 (1/8 ... 1/32)."""
        return self.config.layers.widths[REFINED:]

    def _start(self, first: torch.Tensor, second: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The 1/32 flow from :func:`global_match` and frame t+1's features warped by it."""
        flow = global_match(normalise_features(first), normalise_features(second), self.global_sharpness)
        return flow, backward_warp(second, flow)[0].to(second.dtype)

    def _refine(self, first: torch.Tensor, second: torch.Tensor,
                flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Recurrent refinement of the 1/8 flow ``(N, 2, h, w)`` of frames t, t+1 (features
        ``(N, C, h, w)``) -> (refined flow, upsampling mask logits ``(N, 9 * 64, h, w)``)."""
        layers = self.config.layers
        state, context = self.start_state(first).split([layers.hidden, layers.context], dim=1)
        state, context = torch.tanh(state), torch.relu(context)
        matched = normalise_features(first)
        for _ in range(layers.iterations):
            # As RAFT, each step sees the flow detached: gradients reach earlier steps (and the coarse
            # stage) through the summed residuals only, not through the lookup, which keeps the
            # recurrence stable.
            current = flow.detach()
            warped = backward_warp(second, current)[0].to(second.dtype)
            cost = local_correlation(matched, normalise_features(warped), layers.radius)
            current = current.to(cost.dtype)
            motion = self.motion_encoder(torch.cat([cost, current], dim=1))
            state = self.gru(state, torch.cat([motion, current, context], dim=1))
            flow = flow + self.flow_head(state).float()
        return flow, self.mask_head(state)

    def decode_padded(self, features: list[torch.Tensor]) -> PaddedFlows:
        """Encoder maps (from :meth:`encode`) -> the flow pyramid and the convex-upsampled
        full-resolution flow, at the padded size."""
        coarse = self._coarse_to_fine(features)  # 1/32, 1/16, 1/8
        flow, mask = self._refine(*self._pairs(features[REFINED]), coarse[-1])
        full = convex_upsample(flow, mask, UPSAMPLING)
        finer = [F.avg_pool2d(full, factor) / factor for factor in (4, 2)]  # 1/4, 1/2: one mask for all
        window = (features[0].shape[0], self.num_flows)
        return PaddedFlows([level.unflatten(0, window) for level in coarse[:-1] + [flow] + finer],
                           full.unflatten(0, window))


def motionnet_recurrent(frames: int = 2) -> RecurrentMotionNet:
    """MotionNet-R at its default (CPU-sized) widths for windows of ``frames`` frames (random init)."""
    return RecurrentMotionNet(MotionNetConfig("recurrent", frames))
