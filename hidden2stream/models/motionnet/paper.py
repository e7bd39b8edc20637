"""MotionNet (Zhu et al. 2017, Hidden Two-Stream): a CNN that learns multi-frame optical flow.

A FlowNetSimple-style encoder-decoder maps ``T+1`` stacked RGB frames to ``T`` forward flows
(``flow[t]``: frame t -> frame t+1, u right, v down) at five scales, 1/32 ... 1/2 of the input,
each in pixels of its own level. Widths and flow scaling follow the authors' released files.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from hidden2stream.models.motionnet.base import (NEGATIVE_SLOPE, MotionNetBase, PaddedFlows, conv_lrelu,
                                                 normalised_padded)
from hidden2stream.models.motionnet.config import MotionNetConfig


def _bilinear_kernel(size: int) -> torch.Tensor:
    """``(size, size)`` kernel making a stride ``size // 2`` transposed conv bilinear upsampling."""
    factor = (size + 1) // 2
    centre = factor - 1 if size % 2 == 1 else factor - 0.5
    taps = 1 - (torch.arange(size, dtype=torch.float32) - centre).abs() / factor
    return taps[:, None] * taps[None, :]


class _DecoderLevel(nn.Module):
    """A refinement level: (coarser features, coarser raw flow, skip) -> (features, raw flow).

    The coarser features pass a 4x4 stride-2 deconv (+LeakyReLU); the coarser flow a learned 4x4
    stride-2 upsampling (initialised to bilinear); both are concatenated with the skip, fused by a
    3x3 conv (+LeakyReLU), and a 3x3 conv predicts the raw flow (2T channels).
    """

    def __init__(
        self, in_channels: int, skip_channels: int, width: int, flow_channels: int
    ) -> None:
        super().__init__()
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(in_channels, width, 4, stride=2, padding=1),
            nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True),
        )
        self.upflow = nn.ConvTranspose2d(flow_channels, flow_channels, 4, stride=2, padding=1)
        self.fuse = conv_lrelu(skip_channels + width + flow_channels, width)
        self.predict = nn.Conv2d(width, flow_channels, 3, padding=1)

    def forward(
        self, features: torch.Tensor, flow: torch.Tensor, skip: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        fused = self.fuse(torch.cat([skip, self.deconv(features), self.upflow(flow)], dim=1))
        return fused, self.predict(fused)


class MotionNet(MotionNetBase):
    """MotionNet: frames ``(B, T+1, 3, H, W)`` in [0, 1] -> forward flows, any H, W.

    Frames are normalised internally as ``(x - 0.5) / 0.25`` and replicate-padded (bottom/right)
    to a multiple of 32; outputs are cropped back. See :meth:`MotionNetBase.forward` for the output
    forms.
    """

    def __init__(self, config: MotionNetConfig) -> None:
        super().__init__()
        self.config = config
        if config.variant not in ("paper", "tiny"):
            raise ValueError(f"MotionNet builds the paper and tiny variants, not {config.variant!r}")
        self.num_flows = config.frames - 1
        flow_channels = 2 * self.num_flows
        widths, dec = config.layers.widths, config.layers.decoder_widths
        stages = [nn.Sequential(conv_lrelu(3 * config.frames, widths[0]), conv_lrelu(widths[0], widths[0]))]
        for prev, width in zip(widths[:-1], widths[1:]):
            stages.append(nn.Sequential(conv_lrelu(prev, width, stride=2), conv_lrelu(width, width)))
        self.encoder = nn.ModuleList(stages)
        self.predict_coarsest = nn.Conv2d(widths[-1], flow_channels, 3, padding=1)
        inputs = (widths[-1],) + dec[:-1]
        skips = widths[-2:0:-1]  # 1/16, 1/8, 1/4, 1/2
        self.decoder = nn.ModuleList(
            _DecoderLevel(i, s, w, flow_channels) for i, s, w in zip(inputs, skips, dec)
        )
        self._init_weights()

    @property
    def feature_channels(self) -> int:
        """Channels of the deepest (1/32) encoder map."""
        return self.config.layers.widths[-1]

    def _init_weights(self) -> None:
        """Kaiming (LeakyReLU 0.1) convs, bilinear flow upsampling, near-zero flow predictions."""
        gain = nn.init.calculate_gain("leaky_relu", NEGATIVE_SLOPE)
        for module in self.modules():
            if isinstance(module, nn.ConvTranspose2d):
                # Each output pixel of a stride-s transposed conv sums in * (k / s)^2 inputs.
                k, s = module.kernel_size[0], module.stride[0]
                fan_in = module.in_channels * (k // s) ** 2
                nn.init.normal_(module.weight, std=gain / math.sqrt(fan_in))
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=NEGATIVE_SLOPE, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)
        predictors = [self.predict_coarsest] + [level.predict for level in self.decoder]
        for conv in predictors:
            # Raw output std ~ 0.01 x feature RMS: initial flows are a fraction of a pixel.
            fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
            nn.init.normal_(conv.weight, std=0.01 / math.sqrt(fan_in))
        kernel = _bilinear_kernel(4)
        for level in self.decoder:
            with torch.no_grad():
                level.upflow.weight.zero_()
                for c in range(level.upflow.in_channels):
                    level.upflow.weight[c, c] = kernel

    def _check(self, frames: torch.Tensor) -> None:
        if frames.ndim != 5 or frames.shape[1] != self.config.frames or frames.shape[2] != 3:
            raise ValueError(
                f"MotionNet expects frames (B, {self.config.frames}, 3, H, W), "
                f"got {tuple(frames.shape)}"
            )

    def encode(self, frames: torch.Tensor) -> list[torch.Tensor]:
        """Frames ``(B, T+1, 3, H, W)`` -> the six encoder maps, fine to coarse (1 ... 1/32).

        Maps are at the padded resolution: map k is ``(B, widths[k], H_pad / 2^k, W_pad / 2^k)``.
        """
        self._check(frames)
        height, width = frames.shape[-2:]
        x = normalised_padded(frames.reshape(frames.shape[0], -1, height, width))
        features = []
        for stage in self.encoder:
            x = stage(x)
            features.append(x)
        return features

    def decode_padded(self, features: list[torch.Tensor]) -> PaddedFlows:
        """Encoder maps (from :meth:`encode`) -> the flow pyramid at the padded size."""
        x = features[-1]
        raw = [self.predict_coarsest(x)]
        for level, skip in zip(self.decoder, features[-2:0:-1]):
            x, flow = level(x, raw[-1], skip)
            raw.append(flow)
        pyramid = []
        for i, flow in enumerate(raw):
            stride = 2 ** (5 - i)
            pixels = (flow * (self.config.layers.flow_scale / stride)).unflatten(1, (self.num_flows, 2))
            pyramid.append(pixels)
        return PaddedFlows(pyramid)


def motionnet(frames: int = 11) -> MotionNet:
    """Paper MotionNet (widths of the authors' release) for windows of ``frames`` frames."""
    return MotionNet(MotionNetConfig("paper", frames))


def motionnet_tiny(frames: int = 11) -> MotionNet:
    """A small MotionNet for CPU training and tests; same topology, narrower layers."""
    return MotionNet(MotionNetConfig("tiny", frames))
