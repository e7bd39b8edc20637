"""Hidden two-stream network: spatial RGB stream + hidden (MotionNet) temporal stream, fused.

Videos come as TSN batches ``frames (B, K, T+1, 3, H, W)``: K segments per video, each a window
of T+1 frames. Each segment is processed independently; per-stream logits are averaged over the
K segments (TSN consensus). With ``fusion="late"`` the fused logits are the weighted mean of the
two streams' logits (trainable; :func:`~hidden2stream.models.fusion.late_fusion` is the
test-time score rule); with a conv fusion the two streams' feature maps are fused per segment,
fused over segments by a :class:`TemporalFusion`, pooled and classified.

Either stream may be 3D (a video arch, see ``streams.VIDEO_ARCHS``): a 3D spatial stream sees the
whole window ``(B*K, 3, T+1, H, W)`` instead of its centre frame, a 3D temporal stream sees the
T flows as a clip ``(B*K, 2, T, H, W)``. Conv fusion with a 3D stream pools the time axis of
its maps when the temporal fusion is ``avg``, and keeps it for ``max3d`` / ``conv3d``, whose 3D
pooling / conv then run over all ``K * T'`` time steps of the video
(:meth:`~hidden2stream.models.fusion.ConvFusion.fuse_maps`).

With ``flow`` one of the classical methods (``HiddenTwoStreamConfig.flow``: TV-L1, DIS,
Farneback) the network is the two-stage baseline: no MotionNet, the temporal stream
(:class:`~hidden2stream.models.hidden.GivenFlowStream`) classifies flows computed beforehand,
``forward(frames, streams, flows)``.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Sequence

import torch
from torch import nn

from hidden2stream.checkpoint import register_family
from hidden2stream.flow.classic import CLASSIC_METHODS
from hidden2stream.models.fusion import ConvFusion, TemporalFusion, check_fusion, check_kind
from hidden2stream.models.hidden import HIDDEN_KINDS, BranchedHiddenStream, GivenFlowStream, StackedHiddenStream
from hidden2stream.models.motionnet import MotionNetBase, MotionNetConfig, build_motionnet
from hidden2stream.models.streams import MIN_CLIP, VIDEO_ARCHS, Stream, spatial_stream, temporal_stream

STREAMS = ("spatial", "temporal")
#: Where the temporal stream's flow comes from: MotionNet inside the network, or a classical method
#: computed beforehand (the two-stage baseline).
FLOW_SOURCES = ("motionnet", *CLASSIC_METHODS)


class HiddenTwoStream(nn.Module):
    """Spatial stream + hidden stream + fusion.

    ``forward(frames (B, K, T+1, 3, H, W), streams) -> dict`` with

    * ``"spatial"``: ``(B, classes)`` logits of the spatial stream on the centre frame
      ``frames[:, :, T // 2]`` of each window (a 3D spatial stream: on the window's T+1 frames as
      a clip ``(3, T+1, H, W)``), averaged over K;
    * ``"temporal"``: ``(B, classes)`` logits of the hidden stream, averaged over K (a stacked hidden
      stream classifies MotionNet's final full-resolution flow, ``motionnet(windows,
      all_scales=False)``: refined when ``config.motion.refinement`` says so, the flow
      ``experiments/flow.py`` writes);
    * ``"fused"``: ``(B, classes)`` fused logits (only when both streams run);
    * ``"pyramid"``: MotionNet's coarse-to-fine flows for the ``B*K`` windows, each
      ``(B*K, T, 2, h_i, w_i)``, for the unsupervised motion loss (only when the temporal
      stream runs, and not for a two-stage model);
    * ``"backward_pyramid"``: the backward flows of the same windows (frame t+1 -> t), when
      ``forward(..., backward=True)`` asks for them (occlusion masking in the motion loss).

    A two-stage model (``hidden`` a :class:`GivenFlowStream`: no MotionNet) takes the windows'
    flows ``flows (B, K, T, 2, H, W)`` (forward, frame t -> t+1, in pixels) for its temporal stream.

    ``config`` is the :class:`HiddenTwoStreamConfig` it was built from (stored with checkpoints).
    """

    def __init__(
        self,
        spatial: Stream,
        hidden: StackedHiddenStream | BranchedHiddenStream | GivenFlowStream,
        num_classes: int,
        fusion: str = "late",
        temporal_fusion: str = "avg",
        segments: int = 3,
        temporal_weight: float = 1.5,
        dropout: float = 0.5,
        config: "HiddenTwoStreamConfig | None" = None,
    ) -> None:
        super().__init__()
        check_fusion(fusion, temporal_fusion)
        if temporal_weight < 0:
            raise ValueError(f"temporal_weight must be >= 0, got {temporal_weight}")
        self.spatial = spatial
        self.hidden = hidden
        self.num_classes = num_classes
        self.fusion = fusion
        self.keep_time = temporal_fusion != "avg"  # with a 3D stream: pool its time axis, or keep it
        self.temporal_weight = temporal_weight
        self.config = config
        self.conv_fusion = None
        self.temporal_fusion = None
        self.head = None
        if fusion != "late":
            self.conv_fusion = ConvFusion(fusion, spatial.feature_channels, hidden.feature_channels)
            c = self.conv_fusion.out_channels
            self.temporal_fusion = TemporalFusion(temporal_fusion, c, segments)
            self.head = nn.Sequential(
                nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(dropout), nn.Linear(c, num_classes)
            )

    def to(self, *args: Any, **kwargs: Any) -> "HiddenTwoStream":
        """``nn.Module.to``, except that ``memory_format=torch.channels_last`` (what
        ``Runtime.prepare`` asks for on CUDA) is applied per tensor: 4D weights get
        ``channels_last`` and 5D ones (3D streams, the ``conv3d`` temporal fusion)
        ``channels_last_3d``, where torch would refuse the whole model ("required rank 4 tensor
        to use channels_last format")."""
        if kwargs.get("memory_format") is not torch.channels_last:
            return super().to(*args, **kwargs)
        kwargs.pop("memory_format")
        model = super().to(*args, **kwargs) if args or kwargs else self

        def memory_format(t: torch.Tensor) -> torch.Tensor:
            if t.dim() == 4:
                return t.to(memory_format=torch.channels_last)
            return t.to(memory_format=torch.channels_last_3d) if t.dim() == 5 else t

        return model._apply(memory_format)

    @property
    def motionnet(self) -> MotionNetBase | None:
        """The MotionNet inside the hidden stream (for the motion loss and pretraining); None for a
        two-stage model (temporal stream on given flows)."""
        return None if isinstance(self.hidden, GivenFlowStream) else self.hidden.motionnet

    @property
    def window(self) -> int:
        """T+1: the frames of each segment's window."""
        motionnet = self.motionnet
        return self.hidden.num_flows + 1 if motionnet is None else motionnet.config.frames

    def _check(self, frames: torch.Tensor, streams: Sequence[str], flows: torch.Tensor | None) -> None:
        window = self.window
        if frames.ndim != 6 or frames.shape[2] != window or frames.shape[3] != 3:
            raise ValueError(f"expected frames (B, K, {window}, 3, H, W), got {tuple(frames.shape)}")
        if not streams or any(s not in STREAMS for s in streams):
            raise ValueError(f"streams must be a non-empty subset of {STREAMS}, got {tuple(streams)}")
        if self.motionnet is None and "temporal" in streams:
            expected = (*frames.shape[:2], window - 1, 2, *frames.shape[-2:])
            if flows is None:
                raise ValueError(f"the temporal stream of a two-stage model runs on given flows: pass flows {expected}")
            if tuple(flows.shape) != expected:
                raise ValueError(f"expected flows {expected} for frames {tuple(frames.shape)}, got {tuple(flows.shape)}")

    def forward(self, frames: torch.Tensor, streams: Sequence[str] = STREAMS,
                flows: torch.Tensor | None = None, backward: bool = False) -> dict[str, Any]:
        """See the class docstring; ``flows`` only for a two-stage model (ignored otherwise). ``backward``
        (training with occlusion masking): with the temporal stream, ``out["backward_pyramid"]`` holds
        MotionNet's backward flows of the windows (``MotionNetBase.backward_pyramid``) beside ``pyramid``."""
        self._check(frames, streams, flows)
        b, k = frames.shape[:2]
        windows = frames.flatten(0, 1)  # (B*K, T+1, 3, H, W)
        out: dict[str, Any] = {}
        spatial_map = temporal_map = None
        if "spatial" in streams:
            if self.spatial.is_video:
                spatial_input = windows.transpose(1, 2)  # (B*K, 3, T+1, H, W): the window as a clip
            else:
                spatial_input = windows[:, (windows.shape[1] - 1) // 2]  # (B*K, 3, H, W): centre frame
            spatial_map = self.spatial.forward_features(spatial_input)
            out["spatial"] = self._consensus(self.spatial.classify(spatial_map), b, k)
        if "temporal" in streams:
            if isinstance(self.hidden, GivenFlowStream):
                temporal_map = self.hidden.forward_features(flows.flatten(0, 1).to(windows.dtype))
            else:
                temporal_map, out["pyramid"] = self.hidden.forward_features(windows)
                if backward:
                    out["backward_pyramid"] = self.motionnet.backward_pyramid(windows)
            out["temporal"] = self._consensus(self.hidden.classify(temporal_map), b, k)
        if spatial_map is not None and temporal_map is not None:
            if self.conv_fusion is None:
                w = self.temporal_weight
                out["fused"] = (out["spatial"] + w * out["temporal"]) / (1.0 + w)
            else:
                # (B*K, T'', C', h, w): T'' = 1 for 2D streams or with time pooled
                fused = self.conv_fusion.fuse_maps(spatial_map, temporal_map, self.keep_time)
                fused = self.temporal_fusion(fused.unflatten(0, (b, k)).flatten(1, 2))  # (B, C', h, w)
                out["fused"] = self.head(fused)
        return out

    @staticmethod
    def _consensus(logits: torch.Tensor, b: int, k: int) -> torch.Tensor:
        """Per-segment logits ``(B*K, C)`` -> video logits ``(B, C)`` (mean over segments)."""
        return logits.unflatten(0, (b, k)).mean(dim=1)


@register_family
@dataclass(frozen=True)
class HiddenTwoStreamConfig:
    """A hidden two-stream network: all a checkpoint stores to rebuild it (:meth:`to_dict`).

    ``motion``: the MotionNet inside (its ``frames`` = the window T+1 of every segment).
    ``flow``: where the temporal stream's flow comes from: ``"motionnet"`` (the hidden stream), or
    a classical method of ``CLASSIC_METHODS`` computed beforehand (the two-stage baseline: no
    MotionNet is built, ``motion`` gives only the window length, ``hidden`` must be stacked).
    ``hidden``: ``"stacked"`` (MotionNet -> temporal stream of ``temporal_arch`` on the 2T flow
    channels, dropout ``temporal_dropout``) or ``"branched"`` (classifier on MotionNet's encoder;
    ``temporal_arch`` unused). ``dropout``: the spatial stream, the branched head and the fused
    head. ``class_names`` (the labels of the outputs, empty when unnamed) and ``size`` (the input
    ``(H, W)`` it was trained on, None when unknown) are what the network was trained on, for
    prediction; they do not change its layers.
    """

    num_classes: int
    motion: MotionNetConfig = field(default_factory=MotionNetConfig)
    spatial_arch: str = "tiny"
    temporal_arch: str = "tiny"
    hidden: str = "stacked"
    fusion: str = "late"
    temporal_fusion: str = "avg"
    segments: int = 3
    dropout: float = 0.5
    temporal_dropout: float = 0.7
    temporal_weight: float = 1.5
    class_names: tuple[str, ...] = ()
    size: tuple[int, int] | None = None
    flow: str = "motionnet"

    FAMILY: ClassVar[str] = "two_stream"
    VERSION: ClassVar[int] = 1

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        object.__setattr__(self, "size", None if self.size is None else tuple(int(v) for v in self.size))
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.num_classes} classes")
        check_kind(self.hidden, HIDDEN_KINDS, "hidden stream")
        check_kind(self.flow, FLOW_SOURCES, "flow source")
        if self.flow != "motionnet" and self.hidden != "stacked":
            raise ValueError(f"the {self.hidden} hidden stream classifies MotionNet's encoder map; a temporal "
                             f"stream on {self.flow} flow is stacked")
        check_fusion(self.fusion, self.temporal_fusion)
        if self.hidden == "branched" and self.temporal_arch in VIDEO_ARCHS:
            raise ValueError(f"temporal arch {self.temporal_arch} is a 3D stream on flow, for the stacked hidden "
                             "stream; the branched one classifies MotionNet's encoder map, which has no time axis")
        self._check_clip_lengths()

    def _check_clip_lengths(self) -> None:
        """Video archs with clip-length rules: ``mvit_v2_s`` takes exactly 16 steps, ``s3d`` at least 5
        (:data:`MIN_CLIP`); a spatial stream sees T+1 frames, a stacked temporal one T flows."""
        frames = self.motion.frames
        for arch, clip, role in ((self.spatial_arch, frames, "spatial"), (self.temporal_arch, frames - 1, "temporal")):
            if role == "temporal" and self.hidden != "stacked":
                continue
            what, offset = ("frames", 0) if role == "spatial" else ("flows", 1)
            if arch == "mvit_v2_s" and clip != 16:
                raise ValueError(f"mvit_v2_s as {role} arch needs 16 {what} per window (frames={16 + offset}) at "
                                 f"224x224, got frames={frames}")
            shortest = MIN_CLIP.get(arch, (1,))[0]
            if clip < shortest:
                raise ValueError(f"{arch} as {role} arch needs at least {shortest} {what} per window "
                                 f"(frames >= {shortest + offset}), got frames={frames}")

    def to_dict(self) -> dict[str, Any]:
        """Plain primitives for a checkpoint, tagged with the family and format version."""
        plain = {f.name: getattr(self, f.name) for f in fields(self)}
        plain.update(motion=self.motion.to_dict(), class_names=list(self.class_names),
                     size=None if self.size is None else list(self.size))
        if self.flow == "motionnet":  # the hidden stream: stored as before the two-stage model existed
            del plain["flow"]
        return {"family": self.FAMILY, "version": self.VERSION, **plain}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "HiddenTwoStreamConfig":
        """Inverse of :meth:`to_dict` (the tag is checked by ``Checkpoint.tagged_config``)."""
        values = {f.name: data[f.name] for f in fields(cls) if f.name != "flow"}
        flow = data.get("flow", "motionnet")  # saved before the two-stage model: MotionNet's flow
        return cls(**{**values, "motion": MotionNetConfig.from_dict(values["motion"]), "flow": flow})


def build_two_stream(config: HiddenTwoStreamConfig, spatial_weights: str | None = None,
                     temporal_weights: str | None = None) -> HiddenTwoStream:
    """The network ``config`` describes. ``spatial_weights`` / ``temporal_weights`` only
    initialise the streams (``"imagenet"``, ``"kinetics"`` or a local state_dict file; the temporal
    ones cross-modality) and are not part of the config: a checkpoint holds the trained weights."""
    spatial = spatial_stream(config.spatial_arch, config.num_classes, spatial_weights, config.dropout)
    num_flows = config.motion.frames - 1
    motionnet = build_motionnet(config.motion) if config.flow == "motionnet" else None  # None: two-stage
    hidden_stream: StackedHiddenStream | BranchedHiddenStream | GivenFlowStream
    if config.hidden == "stacked":
        video = config.temporal_arch in VIDEO_ARCHS
        channels = 2 if video else 2 * num_flows  # flow clip or stack
        temporal = temporal_stream(config.temporal_arch, config.num_classes, channels, temporal_weights,
                                   config.temporal_dropout)
        hidden_stream = GivenFlowStream(temporal, num_flows) if motionnet is None else \
            StackedHiddenStream(motionnet, temporal)
    else:
        hidden_stream = BranchedHiddenStream(motionnet, config.num_classes, config.dropout)
    return HiddenTwoStream(spatial, hidden_stream, config.num_classes, config.fusion, config.temporal_fusion,
                           config.segments, config.temporal_weight, config.dropout, config)


def hidden_two_stream(num_classes: int, motion: str = "tiny", frames: int = 11, spatial_arch: str = "tiny",
                      temporal_arch: str = "tiny", hidden: str = "stacked", fusion: str = "late",
                      temporal_fusion: str = "avg", segments: int = 3, spatial_weights: str | None = None,
                      temporal_weights: str | None = None, dropout: float = 0.5, temporal_dropout: float = 0.7,
                      temporal_weight: float = 1.5) -> HiddenTwoStream:
    """Build a :class:`HiddenTwoStream` from names: the config's fields, the MotionNet as its
    ``variant`` and ``frames`` = T+1 (see :class:`HiddenTwoStreamConfig` and :func:`build_two_stream`).

    Video archs (``streams.VIDEO_ARCHS``) give 3D streams: ``spatial_arch`` on the window's T+1
    frames, ``temporal_arch`` (stacked only: the branched stream's encoder map has no time axis)
    on the T flows; weights ``"kinetics"`` / ``"imagenet"`` (``i3d_*``) or a local state_dict
    file. ``mvit_v2_s`` needs 16-frame clips: ``frames=16`` as spatial arch, 17 (16 flows) as
    temporal arch, and 224x224 frames.
    """
    config = HiddenTwoStreamConfig(
        num_classes, MotionNetConfig(motion, frames), spatial_arch, temporal_arch, hidden, fusion, temporal_fusion,
        segments, dropout, temporal_dropout, temporal_weight)
    return build_two_stream(config, spatial_weights, temporal_weights)
