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
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import nn

from hidden2stream.errors import UserError
from hidden2stream.models.fusion import FUSIONS, TEMPORAL_FUSIONS, ConvFusion, TemporalFusion
from hidden2stream.models.hidden import HIDDEN_KINDS, BranchedHiddenStream, StackedHiddenStream
from hidden2stream.models.motionnet import MotionNet, build_motionnet
from hidden2stream.models.streams import VIDEO_ARCHS, Stream, spatial_stream, temporal_stream

STREAMS = ("spatial", "temporal")


class HiddenTwoStream(nn.Module):
    """Spatial stream + hidden stream + fusion.

    ``forward(frames (B, K, T+1, 3, H, W), streams) -> dict`` with

    * ``"spatial"``: ``(B, classes)`` logits of the spatial stream on the centre frame
      ``frames[:, :, T // 2]`` of each window (a 3D spatial stream: on the window's T+1 frames as
      a clip ``(3, T+1, H, W)``), averaged over K;
    * ``"temporal"``: ``(B, classes)`` logits of the hidden stream, averaged over K;
    * ``"fused"``: ``(B, classes)`` fused logits (only when both streams run);
    * ``"pyramid"``: MotionNet's coarse-to-fine flows for the ``B*K`` windows, each
      ``(B*K, T, 2, h_i, w_i)``, for the unsupervised motion loss (only when the temporal
      stream runs).

    ``config`` is a plain dict of the factory arguments, stored with checkpoints.
    """

    def __init__(
        self,
        spatial: Stream,
        hidden: StackedHiddenStream | BranchedHiddenStream,
        num_classes: int,
        fusion: str = "late",
        temporal_fusion: str = "avg",
        segments: int = 3,
        temporal_weight: float = 1.5,
        dropout: float = 0.5,
        config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise UserError(f"unknown fusion {fusion!r}; choose from {', '.join(FUSIONS)}")
        if temporal_fusion not in TEMPORAL_FUSIONS:
            raise UserError(
                f"unknown temporal fusion {temporal_fusion!r}; choose from {', '.join(TEMPORAL_FUSIONS)}"
            )
        if fusion == "bilinear" and temporal_fusion == "conv3d":
            raise UserError("bilinear fusion has Cs*Ct channels; use temporal fusion 'avg' or 'max3d'")
        if temporal_weight < 0:
            raise UserError(f"temporal_weight must be >= 0, got {temporal_weight}")
        self.spatial = spatial
        self.hidden = hidden
        self.num_classes = num_classes
        self.fusion = fusion
        self.keep_time = temporal_fusion != "avg"  # with a 3D stream: pool its time axis, or keep it
        self.temporal_weight = temporal_weight
        self.config = dict(config or {})
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
    def motionnet(self) -> MotionNet:
        """The MotionNet inside the hidden stream (for the motion loss and pretraining)."""
        return self.hidden.motionnet

    def _check(self, frames: torch.Tensor, streams: Sequence[str]) -> None:
        window = self.motionnet.config.frames
        if frames.ndim != 6 or frames.shape[2] != window or frames.shape[3] != 3:
            raise UserError(f"expected frames (B, K, {window}, 3, H, W), got {tuple(frames.shape)}")
        if not streams or any(s not in STREAMS for s in streams):
            raise UserError(f"streams must be a non-empty subset of {STREAMS}, got {tuple(streams)}")

    def forward(self, frames: torch.Tensor, streams: Sequence[str] = STREAMS) -> dict[str, Any]:
        self._check(frames, streams)
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
            temporal_map, out["pyramid"] = self.hidden.forward_features(windows)
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


def hidden_two_stream(
    num_classes: int,
    motion: str = "tiny",
    frames: int = 11,
    spatial_arch: str = "tiny",
    temporal_arch: str = "tiny",
    hidden: str = "stacked",
    fusion: str = "late",
    temporal_fusion: str = "avg",
    segments: int = 3,
    spatial_weights: str | None = None,
    temporal_weights: str | None = None,
    dropout: float = 0.5,
    temporal_dropout: float = 0.7,
    temporal_weight: float = 1.5,
) -> HiddenTwoStream:
    """Build a :class:`HiddenTwoStream` from names.

    ``motion``: MotionNet variant for ``build_motionnet`` with windows of ``frames`` = T+1 frames.
    ``hidden``: ``"stacked"`` (MotionNet -> temporal stream of ``temporal_arch`` on 2T flow
    channels, ``temporal_weights`` cross-modality initialised, dropout ``temporal_dropout``) or
    ``"branched"`` (classifier on MotionNet's encoder; ``temporal_arch``/``temporal_weights``
    unused). ``dropout`` is used by the spatial stream, the branched head and the fused head.

    Video archs (``streams.VIDEO_ARCHS``) give 3D streams: ``spatial_arch`` on the window's T+1
    frames, ``temporal_arch`` (stacked only: the branched stream's encoder map has no time axis)
    on the T flows; weights ``"kinetics"`` / ``"imagenet"`` (``i3d_*``) or a local state_dict
    file. ``mvit_v2_s`` needs 16-frame clips: ``frames=16`` as spatial arch, 17 (16 flows) as
    temporal arch, and 224x224 frames.
    """
    config = dict(
        num_classes=num_classes, motion=motion, frames=frames, spatial_arch=spatial_arch,
        temporal_arch=temporal_arch, hidden=hidden, fusion=fusion, temporal_fusion=temporal_fusion,
        segments=segments, spatial_weights=spatial_weights, temporal_weights=temporal_weights,
        dropout=dropout, temporal_dropout=temporal_dropout, temporal_weight=temporal_weight,
    )
    if hidden not in HIDDEN_KINDS:
        raise UserError(f"unknown hidden stream {hidden!r}; choose from {', '.join(HIDDEN_KINDS)}")
    if fusion not in FUSIONS:
        raise UserError(f"unknown fusion {fusion!r}; choose from {', '.join(FUSIONS)}")
    if hidden == "branched" and temporal_arch in VIDEO_ARCHS:
        raise UserError(f"temporal arch {temporal_arch} is a 3D stream on flow, for the stacked hidden stream; "
                        "the branched one classifies MotionNet's encoder map, which has no time axis")
    for arch, clip, role in ((spatial_arch, frames, "spatial"), (temporal_arch, frames - 1, "temporal")):
        if arch == "mvit_v2_s" and clip != 16 and (role == "spatial" or hidden == "stacked"):
            what, needed = ("frames", 16) if role == "spatial" else ("flows", 17)
            raise UserError(f"mvit_v2_s as {role} arch needs 16 {what} per window (frames={needed}) at 224x224, "
                            f"got frames={frames}")
    spatial = spatial_stream(spatial_arch, num_classes, spatial_weights, dropout)
    motionnet = build_motionnet(motion, frames)
    if hidden == "stacked":
        channels = 2 if temporal_arch in VIDEO_ARCHS else 2 * motionnet.num_flows  # flow clip or stack
        temporal = temporal_stream(temporal_arch, num_classes, channels, temporal_weights, temporal_dropout)
        hidden_stream: StackedHiddenStream | BranchedHiddenStream = StackedHiddenStream(motionnet, temporal)
    else:
        hidden_stream = BranchedHiddenStream(motionnet, num_classes, dropout)
    return HiddenTwoStream(
        spatial, hidden_stream, num_classes, fusion, temporal_fusion, segments,
        temporal_weight, dropout, config,
    )
