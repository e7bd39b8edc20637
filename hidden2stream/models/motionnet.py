"""MotionNet (Zhu et al. 2017, Hidden Two-Stream): a CNN that learns multi-frame optical flow.

A FlowNetSimple-style encoder-decoder maps ``T+1`` stacked RGB frames to ``T`` forward flows
(``flow[t]``: frame t -> frame t+1, u right, v down) at five scales, 1/32 ... 1/2 of the input,
each in pixels of its own level. Widths and flow scaling follow the authors' released files.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hidden2stream.flow.refine import LucasKanadeRefinement, refine_window_flows
from hidden2stream.train.checkpoint import plain

NEGATIVE_SLOPE = 0.1
DOWNSAMPLING = 32  # total stride of the encoder: inputs are padded to a multiple of this
MOTIONNETS = ("paper", "tiny", "corr", "recurrent")  # the variants of the MotionNet family


@dataclass(frozen=True)
class MotionNetLayers:
    """Widths of a :class:`MotionNet` (the ``paper`` and ``tiny`` variants).

    ``widths``: the six encoder stages (1 ... 1/32). ``decoder_widths``: decoder levels 5..2
    (1/16 ... 1/2). ``flow_scale``: a raw prediction r at downsampling factor s means
    ``r * flow_scale / s`` pixels of that level.
    """

    widths: tuple[int, ...] = (64, 128, 256, 512, 512, 1024)
    decoder_widths: tuple[int, ...] = (512, 256, 128, 64)
    flow_scale: float = 20.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "decoder_widths", tuple(int(w) for w in self.decoder_widths))
        if len(self.widths) != 6 or len(self.decoder_widths) != 4:
            raise ValueError(f"MotionNet needs 6 encoder and 4 decoder widths, got {len(self.widths)} "
                             f"and {len(self.decoder_widths)}")
        if min(self.widths + self.decoder_widths) < 1 or self.flow_scale <= 0:
            raise ValueError("MotionNet widths and flow_scale must be positive")


TINY_LAYERS = MotionNetLayers(widths=(16, 32, 48, 64, 96, 128), decoder_widths=(64, 48, 32, 16))


def _default_layers(variant: str) -> Any:
    """The widths a variant is built with (``corr``'s and ``recurrent``'s live beside their models)."""
    if variant == "corr":
        from hidden2stream.models.motionnet_corr import CorrLayers

        return CorrLayers()
    if variant == "recurrent":
        from hidden2stream.models.motionnet_recurrent import RecurrentLayers

        return RecurrentLayers()
    return TINY_LAYERS if variant == "tiny" else MotionNetLayers()


@dataclass(frozen=True)
class MotionNetConfig:
    """One member of the MotionNet family: all a checkpoint stores to rebuild it (:meth:`to_dict`).

    ``variant``: ``paper`` / ``tiny`` (:class:`MotionNet` at the authors' or narrow widths),
    ``corr`` (:class:`~hidden2stream.models.motionnet_corr.CorrMotionNet`) or ``recurrent``
    (:class:`~hidden2stream.models.motionnet_recurrent.RecurrentMotionNet`). ``frames``: window
    length T+1 (gives T flows). ``layers``: the variant's widths (:class:`MotionNetLayers`,
    ``CorrLayers`` or ``RecurrentLayers``); None takes the variant's defaults. ``refinement``: a
    parameter-free, differentiable :class:`~hidden2stream.flow.refine.LucasKanadeRefinement` of the
    full-resolution output (``all_scales=False``: what flow commands and benchmarks read, and what the
    stacked hidden stream classifies; the multi-scale pyramid of the training losses is left as the
    network predicts it), or None.
    """

    variant: str = "tiny"
    frames: int = 11
    layers: Any = None
    refinement: LucasKanadeRefinement | None = None

    FAMILY: ClassVar[str] = "motionnet"
    VERSION: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if self.variant not in MOTIONNETS:
            raise ValueError(f"unknown MotionNet {self.variant!r}; choose one of {', '.join(MOTIONNETS)}")
        if self.frames < 2:
            raise ValueError(f"MotionNet needs at least 2 frames per window, got {self.frames}")
        default = _default_layers(self.variant)
        layers = default if self.layers is None else self.layers
        if isinstance(layers, dict):
            layers = type(default)(**layers)
        if type(layers) is not type(default):
            raise TypeError(f"MotionNet-{self.variant} takes {type(default).__name__}, got {type(layers).__name__}")
        object.__setattr__(self, "layers", layers)
        if isinstance(self.refinement, dict):
            object.__setattr__(self, "refinement", LucasKanadeRefinement(**self.refinement))

    @property
    def window_free(self) -> bool:
        """True when the weights serve any window length (``corr``, ``recurrent``: one per-pair
        decoder shared by all the window's pairs), so :meth:`with_frames` may change ``frames`` under
        trained weights."""
        return self.variant in ("corr", "recurrent")

    def with_frames(self, frames: int) -> "MotionNetConfig":
        """The same network for windows of ``frames`` frames."""
        return replace(self, frames=frames)

    def same_weights_as(self, other: "MotionNetConfig") -> bool:
        """True when ``other`` holds the same weights (configs equal but for the parameter-free
        ``refinement``)."""
        return replace(self, refinement=None) == replace(other, refinement=None)

    def describe(self) -> str:
        """A short name for messages: ``MotionNet-tiny (T+1=6)``."""
        return f"MotionNet-{self.variant} (T+1={self.frames})"

    def to_dict(self) -> dict[str, Any]:
        """Plain primitives for a checkpoint, tagged with the family and format version."""
        return {"family": self.FAMILY, "version": self.VERSION, "variant": self.variant,
                "frames": self.frames, "layers": plain(asdict(self.layers)),
                "refinement": None if self.refinement is None else self.refinement.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MotionNetConfig":
        """Inverse of :meth:`to_dict` (the tag is checked by ``checkpoint.model_config_of``; a config
        saved before refinements existed has none)."""
        return cls(variant=data["variant"], frames=int(data["frames"]), layers=dict(data["layers"]),
                   refinement=data.get("refinement"))


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

    def forward(
        self, frames: torch.Tensor, all_scales: bool | None = None
    ) -> list[torch.Tensor] | torch.Tensor:
        """Frames ``(B, T+1, 3, H, W)`` in [0, 1] -> forward flows (frame t -> t+1).

        ``all_scales`` (default: ``self.training``): True gives five flows, coarse to fine, the
        i-th ``(B, T, 2, ceil(H / 2^(5-i)), ceil(W / 2^(5-i)))`` in pixels of its level; False gives
        the full-resolution flow ``(B, T, 2, H, W)`` in pixels (:meth:`final_flow`).
        """
        if all_scales is None:
            all_scales = self.training
        flows = self.decode_padded(self.encode(frames))
        return flows.cropped(*frames.shape[-2:]) if all_scales else self.final_flow(frames, flows)


def _conv(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution + LeakyReLU(0.1)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1),
        nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True),
    )


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
        self.fuse = _conv(skip_channels + width + flow_channels, width)
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
        stages = [nn.Sequential(_conv(3 * config.frames, widths[0]), _conv(widths[0], widths[0]))]
        for prev, width in zip(widths[:-1], widths[1:]):
            stages.append(nn.Sequential(_conv(prev, width, stride=2), _conv(width, width)))
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


def build_motionnet(config: MotionNetConfig) -> MotionNetBase:
    """The MotionNet ``config`` describes, with fresh weights: the family's one factory."""
    if config.variant == "corr":
        from hidden2stream.models.motionnet_corr import CorrMotionNet

        return CorrMotionNet(config)
    if config.variant == "recurrent":
        from hidden2stream.models.motionnet_recurrent import RecurrentMotionNet

        return RecurrentMotionNet(config)
    return MotionNet(config)


def motionnet(frames: int = 11) -> MotionNet:
    """Paper MotionNet (widths of the authors' release) for windows of ``frames`` frames."""
    return MotionNet(MotionNetConfig("paper", frames))


def motionnet_tiny(frames: int = 11) -> MotionNet:
    """A small MotionNet for CPU training and tests; same topology, narrower layers."""
    return MotionNet(MotionNetConfig("tiny", frames))
