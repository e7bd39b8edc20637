"""Fusing the spatial and temporal streams (Feichtenhofer, Pinz & Zisserman, CVPR 2016).

Three places to fuse:

* :class:`ConvFusion` combines the two streams' feature maps at each location of one segment.
* :class:`TemporalFusion` combines the fused maps of the K segments of a video.
* :func:`late_fusion` combines the two streams' class scores at test time (the classic
  two-stream / TSN rule).

A 2D stream gives one map ``(N, C, h, w)`` per segment; a 3D stream gives ``(N, C, T', h, w)``.
:meth:`ConvFusion.fuse_maps` brings any pair to a common time axis (:func:`align_time`): with
the time axis **pooled**, each 3D map is averaged over T' and the fusion is the 2D one; with time
**kept**, a 2D map (one frame's appearance, or one flow stack) is repeated along the other map's
T', two 3D maps are resampled (linear in time) to the larger T', and the fusion runs at every
``(t, y, x)``. The fused maps of the K segments, each T'' steps, then form a sequence of
``K * T''`` maps in time order for :class:`TemporalFusion`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FUSIONS = ("late", "sum", "max", "concat", "conv", "bilinear")
CONV_FUSIONS = FUSIONS[1:]
TEMPORAL_FUSIONS = ("avg", "max3d", "conv3d")


def check_kind(kind: str, kinds: tuple[str, ...], what: str) -> None:
    """``ValueError`` naming the choices unless ``kind`` is one of ``kinds`` (``what``: its name)."""
    if kind not in kinds:
        raise ValueError(f"unknown {what} {kind!r}; choose from {', '.join(kinds)}")


def check_fusion(fusion: str, temporal_fusion: str) -> None:
    """``ValueError`` unless ``fusion`` (:data:`FUSIONS`) and ``temporal_fusion``
    (:data:`TEMPORAL_FUSIONS`) are known and work together: bilinear fusion's ``Cs * Ct``
    channels are too many for the conv3d temporal fusion's C -> C 3D conv."""
    check_kind(fusion, FUSIONS, "fusion")
    check_kind(temporal_fusion, TEMPORAL_FUSIONS, "temporal fusion")
    if fusion == "bilinear" and temporal_fusion == "conv3d":
        raise ValueError("bilinear fusion has Cs*Ct channels; use temporal fusion 'avg' or 'max3d'")


class ConvFusion(nn.Module):
    """Fuse a spatial map ``(N, Cs, h, w)`` and a temporal map ``(N, Ct, h', w')`` per location.

    The temporal map is bilinearly resized to ``(h, w)`` when its size differs. Kinds:

    * ``"sum"`` / ``"max"``: element-wise sum / maximum -> ``(N, Cs, h, w)``. When ``Ct != Cs``
      the temporal map is first projected to Cs channels by a learned 1x1 conv.
    * ``"concat"``: channel concatenation -> ``(N, Cs + Ct, h, w)``.
    * ``"conv"``: 1x1 conv over the concatenation -> ``(N, Cs, h, w)``, initialised as sum fusion
      (weights ``[I | I]``, zero bias; for ``Ct != Cs`` the temporal block is the rectangular
      identity, i.e. the first ``min(Cs, Ct)`` channels are summed).
    * ``"bilinear"``: outer product of the two C-vectors at each location, summed over locations,
      then signed square root and L2 normalisation -> ``(N, Cs * Ct, 1, 1)``. It has no spatial
      extent and ``Cs * Ct`` channels (65536 for two 256-channel maps; 4.2M for resnet50).

    ``out_channels`` is the fused map's channel count.
    """

    def __init__(self, kind: str, spatial_channels: int, temporal_channels: int) -> None:
        super().__init__()
        check_kind(kind, CONV_FUSIONS, "conv fusion")
        self.kind = kind
        cs, ct = spatial_channels, temporal_channels
        self.project = nn.Conv2d(ct, cs, 1) if kind in ("sum", "max") and cs != ct else None
        self.conv = nn.Conv2d(cs + ct, cs, 1) if kind == "conv" else None
        if self.conv is not None:
            with torch.no_grad():
                weight = self.conv.weight.view(cs, cs + ct)
                weight.zero_()
                weight[:, :cs].copy_(torch.eye(cs))
                weight[:, cs:].copy_(torch.eye(cs, ct))
                self.conv.bias.zero_()
        self.out_channels = {"concat": cs + ct, "bilinear": cs * ct}.get(kind, cs)

    def forward(self, spatial: torch.Tensor, temporal: torch.Tensor) -> torch.Tensor:
        if temporal.shape[-2:] != spatial.shape[-2:]:
            temporal = F.interpolate(temporal, size=spatial.shape[-2:], mode="bilinear", align_corners=False)
        if self.project is not None:
            temporal = self.project(temporal)
        if self.kind == "sum":
            return spatial + temporal
        if self.kind == "max":
            return torch.maximum(spatial, temporal)
        if self.kind == "concat":
            return torch.cat([spatial, temporal], dim=1)
        if self.kind == "conv":
            return self.conv(torch.cat([spatial, temporal], dim=1))
        # bilinear: sum over locations of spatial(p) temporal(p)^T
        outer = torch.einsum("nchw,ndhw->ncd", spatial, temporal).flatten(1)
        outer = torch.sign(outer) * torch.sqrt(outer.abs() + 1e-8)
        return F.normalize(outer, dim=1)[:, :, None, None]


    def fuse_maps(self, spatial: torch.Tensor, temporal: torch.Tensor, keep_time: bool) -> torch.Tensor:
        """2D or 3D maps ``(N, Cs, [Ts,] h, w)``, ``(N, Ct, [Tt,] h', w')`` -> ``(N, T'', C', h, w)``.

        ``keep_time=False``: 3D maps are averaged over time first, ``T'' = 1``. ``keep_time=True``:
        :func:`align_time` gives both maps ``T'' = max(Ts, Tt)`` steps (a 2D map counts as one
        step) and the fusion is applied at each step with the same weights. Two 2D maps give
        ``(N, 1, C', h, w)``: the 2D fusion, unchanged.
        """
        if not keep_time or (spatial.ndim == 4 and temporal.ndim == 4):
            spatial = spatial.mean(dim=2) if spatial.ndim == 5 else spatial
            temporal = temporal.mean(dim=2) if temporal.ndim == 5 else temporal
            return self(spatial, temporal)[:, None]
        spatial, temporal = align_time(spatial, temporal)
        n, steps = spatial.shape[0], spatial.shape[2]
        fused = self(spatial.transpose(1, 2).flatten(0, 1), temporal.transpose(1, 2).flatten(0, 1))
        return fused.unflatten(0, (n, steps))


def align_time(spatial: torch.Tensor, temporal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Two maps, each ``(N, C, h, w)`` or ``(N, C, T, h, w)``, -> both ``(N, C, T'', h, w)``.

    ``T'' = max`` of the two time lengths (1 for a 2D map). A map with one step is repeated
    along time; a longer one is resampled linearly in time (``align_corners=False``, as the
    spatial resizes here). The temporal map is also resized to the spatial map's ``(h, w)``, as
    in the 2D fusion; the spatial map keeps its size.
    """
    spatial = spatial if spatial.ndim == 5 else spatial[:, :, None]
    temporal = temporal if temporal.ndim == 5 else temporal[:, :, None]
    steps = max(spatial.shape[2], temporal.shape[2])
    size_s = (steps, *spatial.shape[-2:])
    return _resize3d(spatial, size_s), _resize3d(temporal, size_s)


def _resize3d(x: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    if tuple(x.shape[2:]) == tuple(size):
        return x
    if x.shape[2] == 1 and tuple(x.shape[3:]) == tuple(size[1:]):
        return x.expand(-1, -1, size[0], -1, -1)  # repeat one step along time, exactly
    return F.interpolate(x, size=size, mode="trilinear", align_corners=False)


class TemporalFusion(nn.Module):
    """Fuse the per-segment maps ``(N, K, C, h, w)`` of a video into one map ``(N, C, h, w)``.

    With 3D streams and time kept, the sequence is ``K * T''`` maps long (see
    :meth:`ConvFusion.fuse_maps`); every kind below covers whatever length it gets.

    Kinds:

    * ``"avg"``: mean over the K segments (TSN's average consensus, on maps).
    * ``"max3d"``: 3D max pooling with kernel ``(K, 1, 1)``: max over time at each location and
      channel; space is kept so the classifier's global pooling still sees the layout.
    * ``"conv3d"``: 3x3x3 Conv3d (C -> C, padding 1, Dirac/identity init so it starts as pure
      pooling) + BatchNorm3d + ReLU over ``(time, h, w)``, then the ``(K, 1, 1)`` max pooling,
      as Feichtenhofer's 3D conv + 3D pooling fusion.

    ``segments`` records the training K; the pooling covers whatever K the input has, so a model
    can be evaluated with more segments. ``out_channels == channels``.
    """

    def __init__(self, kind: str, channels: int, segments: int) -> None:
        super().__init__()
        check_kind(kind, TEMPORAL_FUSIONS, "temporal fusion")
        if segments < 1:
            raise ValueError(f"segments must be >= 1, got {segments}")
        self.kind, self.segments, self.out_channels = kind, segments, channels
        self.conv = None
        if kind == "conv3d":
            conv = nn.Conv3d(channels, channels, 3, padding=1, bias=False)
            nn.init.dirac_(conv.weight)
            self.conv = nn.Sequential(conv, nn.BatchNorm3d(channels), nn.ReLU(inplace=True))

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        if maps.ndim != 5:
            raise ValueError(f"temporal fusion expects (N, K, C, h, w) maps, got {tuple(maps.shape)}")
        if self.kind == "avg":
            return maps.mean(dim=1)
        x = maps.transpose(1, 2)  # (N, C, K, h, w)
        if self.conv is not None:
            x = self.conv(x)
        return F.max_pool3d(x, kernel_size=(x.shape[2], 1, 1)).squeeze(2)


def late_fusion(
    spatial_scores: torch.Tensor, temporal_scores: torch.Tensor, temporal_weight: float = 1.5
) -> torch.Tensor:
    """Test-time score fusion ``(N, C), (N, C) -> (N, C)``.

    Negative scores are clipped to 0, each stream's scores are L1-normalised per sample, then
    combined as ``spatial + temporal_weight * temporal`` (TSN weights the flow stream 1.5).
    """
    if spatial_scores.shape != temporal_scores.shape or spatial_scores.ndim != 2:
        raise ValueError(
            f"late fusion needs two (N, C) score tensors of one shape, got "
            f"{tuple(spatial_scores.shape)} and {tuple(temporal_scores.shape)}"
        )
    s = F.normalize(spatial_scores.clamp(min=0), p=1, dim=1)
    t = F.normalize(temporal_scores.clamp(min=0), p=1, dim=1)
    return s + temporal_weight * t
