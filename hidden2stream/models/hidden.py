"""Hidden temporal streams: action recognition from MotionNet's learned flow (Zhu et al. 2017).

* :class:`StackedHiddenStream` feeds MotionNet's final full-resolution flow (the flow
  ``experiments/flow.py`` writes: ``motionnet(frames, all_scales=False)``, refined when its config
  says so), as a TSN-style flow stack, to a temporal CNN (or, for a 3D temporal CNN, as a flow clip
  ``(N, 2, T, H, W)``); trained end to end, the classification loss back-propagates through the
  (differentiable) refinement into MotionNet.
* :class:`BranchedHiddenStream` classifies from MotionNet's own encoder features, so motion
  estimation and recognition share one encoder.

Both return the MotionNet pyramid next to the logits so the unsupervised motion loss can be
added during training. :class:`GivenFlowStream` is the two-stage baseline they are compared
with: the same temporal stream on flows computed beforehand (classical flow), no MotionNet.
"""
from __future__ import annotations

import torch
from torch import nn

from hidden2stream.models.motionnet import MotionNetBase
from hidden2stream.models.streams import Stream

HIDDEN_KINDS = ("stacked", "branched")


def flow_to_stack(flow: torch.Tensor, clip: float = 20.0) -> torch.Tensor:
    """Flows ``(N, T, 2, H, W)`` in pixels -> stack ``(N, 2T, H, W)`` in [-1, 1], channels u0, v0, u1, ...

    Each component is clipped to ``[-clip, clip]`` pixels and divided by ``clip``. This is TSN's
    flow input up to an affine map: TSN quantises ``[-20, 20]`` to 0..255 and subtracts 128, i.e.
    ``tsn = 127.5 * ours - 0.5``. Gradients pass unchanged (times 1/clip) inside the clip range.
    """
    if flow.ndim != 5 or flow.shape[2] != 2:
        raise ValueError(f"flow_to_stack expects flows (N, T, 2, H, W), got {tuple(flow.shape)}")
    if clip <= 0:
        raise ValueError(f"clip must be > 0, got {clip}")
    n, t, _, h, w = flow.shape
    return (flow.clamp(-clip, clip) / clip).reshape(n, 2 * t, h, w)


def flow_to_clip(flow: torch.Tensor, clip: float = 20.0) -> torch.Tensor:
    """Flows ``(N, T, 2, H, W)`` in pixels -> flow clip ``(N, 2, T, H, W)`` in [-1, 1] for a 3D CNN.

    The same clipping and scaling as :func:`flow_to_stack`, but u and v stay two channels and the
    T flows become the clip's time axis (what a 3D temporal stream convolves over), instead of
    2T channels of one image.
    """
    if flow.ndim != 5 or flow.shape[2] != 2:
        raise ValueError(f"flow_to_clip expects flows (N, T, 2, H, W), got {tuple(flow.shape)}")
    if clip <= 0:
        raise ValueError(f"clip must be > 0, got {clip}")
    return (flow.clamp(-clip, clip) / clip).transpose(1, 2)


class StackedHiddenStream(nn.Module):
    """MotionNet stacked onto a temporal stream.

    ``forward(frames (N, T+1, 3, H, W) in [0, 1]) -> (logits (N, classes), pyramid)``: one MotionNet
    pass (:meth:`~hidden2stream.models.motionnet.MotionNetBase.pyramid_and_flow`) gives the pyramid and
    the final forward flows ``(N, T, 2, H, W)`` in pixels, exactly ``motionnet(frames,
    all_scales=False)``: the network's full-resolution flow, Lucas-Kanade refined when
    ``motionnet.config.refinement`` is set (gradients pass through the refinement). Those flows are
    clipped and scaled by :func:`flow_to_stack` and classified by ``temporal``, whose input must have
    ``2T`` channels. A 3D ``temporal`` stream (``temporal.is_video``) gets the flows as a clip
    ``(N, 2, T, H, W)`` (:func:`flow_to_clip`) and must take 2 channels; its feature map is then
    ``(N, C, T', h, w)``. ``pyramid`` is MotionNet's coarse-to-fine list of ``(N, T, 2, h_i, w_i)``
    flows (never refined), for the motion loss.
    """

    def __init__(self, motionnet: MotionNetBase, temporal: Stream, clip: float = 20.0) -> None:
        super().__init__()
        if temporal.is_video and temporal.in_channels != 2:
            raise ValueError(f"a 3D temporal stream takes the 2 flow channels (u, v), not {temporal.in_channels}")
        if not temporal.is_video and temporal.in_channels != 2 * motionnet.num_flows:
            raise ValueError(
                f"temporal stream takes {temporal.in_channels} channels but MotionNet gives "
                f"{motionnet.num_flows} flows ({2 * motionnet.num_flows} channels)"
            )
        self.motionnet = motionnet
        self.temporal = temporal
        self.clip = clip
        self.feature_channels = temporal.feature_channels

    def forward_features(self, frames: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``frames (N, T+1, 3, H, W)`` -> (temporal feature map ``(N, C, [T',] h, w)``, pyramid)."""
        pyramid, flow = self.motionnet.pyramid_and_flow(frames)
        to_input = flow_to_clip if self.temporal.is_video else flow_to_stack
        return self.temporal.forward_features(to_input(flow, self.clip)), pyramid

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Feature map ``(N, C, [T',] h, w)`` -> logits ``(N, classes)``."""
        return self.temporal.classify(features)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features, pyramid = self.forward_features(frames)
        return self.classify(features), pyramid


class GivenFlowStream(nn.Module):
    """A temporal stream on given flows (a two-stage model: flow computed beforehand, no MotionNet).

    ``forward(flows (N, T, 2, H, W) in pixels) -> logits (N, classes)``: forward flows (frame t ->
    t+1) of each window, clipped and scaled as :class:`StackedHiddenStream` does with MotionNet's
    flow (:func:`flow_to_stack`, or :func:`flow_to_clip` for a 3D ``temporal`` stream, which must
    take 2 channels); a 2D ``temporal`` stream takes ``2 * num_flows`` channels.
    """

    def __init__(self, temporal: Stream, num_flows: int, clip: float = 20.0) -> None:
        super().__init__()
        if temporal.is_video and temporal.in_channels != 2:
            raise ValueError(f"a 3D temporal stream takes the 2 flow channels (u, v), not {temporal.in_channels}")
        if not temporal.is_video and temporal.in_channels != 2 * num_flows:
            raise ValueError(f"temporal stream takes {temporal.in_channels} channels but windows have "
                             f"{num_flows} flows ({2 * num_flows} channels)")
        self.temporal = temporal
        self.num_flows = num_flows
        self.clip = clip
        self.feature_channels = temporal.feature_channels

    def forward_features(self, flows: torch.Tensor) -> torch.Tensor:
        """``flows (N, T, 2, H, W)`` -> temporal feature map ``(N, C, [T',] h, w)``."""
        if flows.ndim != 5 or flows.shape[1] != self.num_flows or flows.shape[2] != 2:
            raise ValueError(f"expected flows (N, {self.num_flows}, 2, H, W), got {tuple(flows.shape)}")
        to_input = flow_to_clip if self.temporal.is_video else flow_to_stack
        return self.temporal.forward_features(to_input(flows, self.clip))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Feature map ``(N, C, [T',] h, w)`` -> logits ``(N, classes)``."""
        return self.temporal.classify(features)

    def forward(self, flows: torch.Tensor) -> torch.Tensor:
        return self.classify(self.forward_features(flows))


class BranchedHiddenStream(nn.Module):
    """A classifier branch on MotionNet's deepest encoder map.

    ``forward(frames (N, T+1, 3, H, W)) -> (logits (N, classes), pyramid)``. The branch is a 3x3
    conv-BN-ReLU block (C -> C, C = ``motionnet.feature_channels``) giving the feature map, then
    global average pooling, dropout and a linear layer. The encoder runs once: its features feed
    both the branch and MotionNet's flow decoder.
    """

    def __init__(self, motionnet: MotionNetBase, num_classes: int, dropout: float = 0.5) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.motionnet = motionnet
        c = motionnet.feature_channels
        self.feature_channels = c
        self.block = nn.Sequential(
            nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)
        )
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Dropout(dropout), nn.Linear(c, num_classes)
        )

    def forward_features(self, frames: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``frames (N, T+1, 3, H, W)`` -> (branch feature map ``(N, C, h, w)``, pyramid)."""
        encoded = self.motionnet.encode(frames)
        pyramid = self.motionnet.decode(encoded, all_scales=True, size=frames.shape[-2:])
        return self.block(encoded[-1]), pyramid

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Feature map ``(N, C, h, w)`` -> logits ``(N, classes)``."""
        return self.head(features)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        features, pyramid = self.forward_features(frames)
        return self.classify(features), pyramid
