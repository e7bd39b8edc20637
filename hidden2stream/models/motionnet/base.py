"""What every MotionNet variant shares: input normalisation and padding, the padded flow pyramid and
its one full-resolution ending (:class:`MotionNetBase`), and the small layers the variants build from.
"""
from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hidden2stream.flow.refine import refine_window_flows
from hidden2stream.models.motionnet.config import MotionNetConfig

NEGATIVE_SLOPE = 0.1
DOWNSAMPLING = 32  # total stride of the encoder: inputs are padded to a multiple of this


def upsample_flow(flow: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Bilinearly resize flows ``(B, T, 2, h, w)`` to ``(B, T, 2, H, W)``, rescaling the values.

    Flow is in pixels of the tensor it lives on, so u is multiplied by ``W / w`` and v by ``H / h``.
    """
    if flow.ndim != 5 or flow.shape[2] != 2:
        raise ValueError(f"upsample_flow expects flows (B, T, 2, h, w), got {tuple(flow.shape)}")
    b, t, _, h, w = flow.shape
    height, width = int(size[0]), int(size[1])
    resized = F.interpolate(
        flow.reshape(b * t, 2, h, w), size=(height, width), mode="bilinear", align_corners=False
    )
    ratio = resized.new_tensor([width / w, height / h]).view(1, 2, 1, 1)
    return (resized * ratio).reshape(b, t, 2, height, width)


def normalised_padded(images: torch.Tensor) -> torch.Tensor:
    """Images ``(N, C, H, W)`` in [0, 1] -> ``(x - 0.5) / 0.25``, replicate-padded at the bottom and
    right to a multiple of 32 (the encoder's stride)."""
    x = (images - 0.5) / 0.25
    pad_h, pad_w = -images.shape[-2] % DOWNSAMPLING, -images.shape[-1] % DOWNSAMPLING
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
    return x


class PaddedFlows(NamedTuple):
    """A MotionNet decoder's forward flows (frame t -> t+1) at the padded input size ``(H_pad, W_pad)``
    (multiples of 32), before they are cropped to the input's ``(H, W)``.

    ``pyramid``: coarse to fine, ``pyramid[i]`` ``(B, T, 2, H_pad / 2^(5-i), W_pad / 2^(5-i))`` in
    pixels of its level. ``full``: the variant's own full-resolution flow ``(B, T, 2, H_pad, W_pad)``
    (MotionNet-R's convex upsampling), or None: the 1/2 level upsampled x2.
    """

    pyramid: list[torch.Tensor]
    full: torch.Tensor | None = None

    def cropped(self, height: int, width: int) -> list[torch.Tensor]:
        """The pyramid of an ``(H, W)`` input: level i cropped to ``ceil(H / 2^(5-i)) x ceil(W / 2^(5-i))``."""
        return [flow[..., : -(-height // 2 ** (5 - i)), : -(-width // 2 ** (5 - i))]
                for i, flow in enumerate(self.pyramid)]

    def full_resolution(self, height: int, width: int) -> torch.Tensor:
        """The network's full-resolution flow ``(B, T, 2, H, W)`` of an ``(H, W)`` input, in pixels:
        ``full``, or the 1/2 level upsampled x2 at the padded size; then cropped."""
        full = self.full
        if full is None:
            finest = self.pyramid[-1]
            full = upsample_flow(finest, (2 * finest.shape[-2], 2 * finest.shape[-1]))
        return full[..., :height, :width]


class MotionNetBase(nn.Module):
    """What every MotionNet variant shares: the output forms and the final flow.

    A variant sets ``config`` and ``num_flows`` (T) and implements :meth:`encode` and
    :meth:`decode_padded`; the rest is here, so ``forward``, the hidden streams and the flow commands
    all make the final flow the same way (:meth:`final_flow`).
    """

    config: MotionNetConfig
    num_flows: int

    def encode(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Frames ``(B, T+1, 3, H, W)`` in [0, 1] -> the encoder maps, fine to coarse, at the padded size."""
        raise NotImplementedError

    def decode_padded(self, features: list[torch.Tensor]) -> PaddedFlows:
        """Encoder maps (from :meth:`encode`) -> the flows at the padded size."""
        raise NotImplementedError

    def decode(
        self,
        features: list[torch.Tensor],
        all_scales: bool | None = None,
        size: Sequence[int] | None = None,
    ) -> list[torch.Tensor] | torch.Tensor:
        """Encoder maps (from :meth:`encode`) -> the network's flows, unrefined; ``size`` = the input's
        (H, W), None meaning the padded size. Output forms as in :meth:`forward`."""
        if all_scales is None:
            all_scales = self.training
        flows = self.decode_padded(features)
        finest = flows.pyramid[-1]
        height, width = (2 * finest.shape[-2], 2 * finest.shape[-1]) if size is None else size
        return flows.cropped(height, width) if all_scales else flows.full_resolution(height, width)

    def final_flow(self, frames: torch.Tensor, flows: PaddedFlows) -> torch.Tensor:
        """The decoded ``flows`` of ``frames (B, T+1, 3, H, W)`` -> the final forward flow
        ``(B, T, 2, H, W)`` in pixels: :meth:`PaddedFlows.full_resolution`, refined as
        ``config.refinement`` says (differentiably). What ``forward(frames, all_scales=False)`` returns."""
        flow = flows.full_resolution(*frames.shape[-2:])
        refinement = self.config.refinement
        if refinement is None:
            return flow
        return refine_window_flows(frames, flow, refinement).to(flow.dtype)

    def pyramid_and_flow(self, frames: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """One pass over ``frames (B, T+1, 3, H, W)`` -> (``forward(frames, all_scales=True)``,
        ``forward(frames, all_scales=False)``): the pyramid and the final flow."""
        flows = self.decode_padded(self.encode(frames))
        return flows.cropped(*frames.shape[-2:]), self.final_flow(frames, flows)

    def pyramid(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """The forward flows of ``frames (B, T+1, 3, H, W)`` at five scales (``forward(frames, all_scales=True)``)."""
        return self.decode_padded(self.encode(frames)).cropped(*frames.shape[-2:])

    def backward_pyramid(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """The *backward* flows of ``frames`` (index t: frame t+1 -> frame t) at five scales, what occlusion
        masking compares the forward flows with: the pyramid of the time-reversed window, put back in order."""
        return reversed_in_time(self.pyramid(frames.flip(1)))

    def forward(
        self, frames: torch.Tensor, all_scales: bool | None = None, backward: bool = False
    ) -> list[torch.Tensor] | torch.Tensor | tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Frames ``(B, T+1, 3, H, W)`` in [0, 1] -> forward flows (frame t -> t+1).

        ``all_scales`` (default: ``self.training``): True gives five flows, coarse to fine, the
        i-th ``(B, T, 2, ceil(H / 2^(5-i)), ceil(W / 2^(5-i)))`` in pixels of its level; False gives
        the full-resolution flow ``(B, T, 2, H, W)`` in pixels (:meth:`final_flow`). ``backward``
        (training with occlusion masking): (forward pyramid, :meth:`backward_pyramid`), both from one
        batched pass over the window and its time reversal.
        """
        if backward:
            both = self.pyramid(torch.cat([frames, frames.flip(1)]))
            count = frames.shape[0]
            return [level[:count] for level in both], reversed_in_time([level[count:] for level in both])
        if all_scales is None:
            all_scales = self.training
        flows = self.decode_padded(self.encode(frames))
        return flows.cropped(*frames.shape[-2:]) if all_scales else self.final_flow(frames, flows)


def reversed_in_time(pyramid: list[torch.Tensor]) -> list[torch.Tensor]:
    """Flows of a time-reversed window put back in the window's order: reversed flow j goes from frame
    T-j to frame T-1-j, so flipping the time axis puts the flow from frame t+1 to frame t at index t."""
    return [level.flip(1) for level in pyramid]


def conv_lrelu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution + LeakyReLU(0.1)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
                         nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True))


def init_convs(module: nn.Module) -> None:
    """Kaiming (LeakyReLU 0.1) weights and zero biases for every conv in ``module``."""
    for conv in module.modules():
        if isinstance(conv, nn.Conv2d):
            nn.init.kaiming_normal_(conv.weight, a=NEGATIVE_SLOPE, nonlinearity="leaky_relu")
            nn.init.zeros_(conv.bias)


def init_small(conv: nn.Conv2d) -> None:
    """Outputs ~0.01 x the input RMS: a predictor that starts near zero yet passes gradients on."""
    nn.init.normal_(conv.weight, std=0.01 / math.sqrt(conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]))
