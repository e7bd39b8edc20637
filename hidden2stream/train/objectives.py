"""Training objectives for the loop: a batch in, a scalar loss and named metrics out.

* :class:`MotionObjective` - MotionNet pretraining, the unsupervised multi-scale loss only.
* :class:`SupervisedFlowObjective` - a warm start on exact synthetic flow (multi-scale EPE).
* :class:`ActionObjective` - hidden two-stream fine-tuning: action cross-entropy on every stream
  head plus the unsupervised motion loss on MotionNet's pyramid (the paper's multi-task loss).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hidden2stream.data.actions import mirror_flow
from hidden2stream.losses.motion import MotionLossConfig, multiscale_motion_loss
from hidden2stream.losses.supervised import multiscale_epe_loss, resize_flow


def _augmented(frames: torch.Tensor, augment: nn.Module | None) -> torch.Tensor:
    """Apply a clip-consistent augmentation to ``(B, T+1, 3, H, W)`` or ``(B, K, T+1, 3, H, W)``."""
    if augment is None:
        return frames
    shape = frames.shape
    return augment(frames.reshape(-1, *shape[-4:])).reshape(shape)


def random_mirror(frames: torch.Tensor, flows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each clip of ``frames (B, ..., 3, H, W)`` mirrored left-right with probability 1/2, and its
    ``flows (B, ..., 2, H, W)`` with it (:func:`~hidden2stream.data.actions.mirror_flow`: u negated)."""
    chosen = torch.rand(frames.shape[0], device=frames.device) < 0.5

    def pick(mirrored: torch.Tensor, plain: torch.Tensor) -> torch.Tensor:
        return torch.where(chosen.view(-1, *[1] * (plain.ndim - 1)), mirrored, plain)

    return pick(frames.flip(-1), frames), None if flows is None else pick(mirror_flow(flows), flows)


class MotionObjective:
    """MotionNet pretraining: ``batch["frames"] (B, T+1, 3, H, W)`` -> multi-scale motion loss."""

    def __init__(self, config: MotionLossConfig, augment: nn.Module | None = None) -> None:
        self.config, self.augment = config, augment

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        frames = _augmented(batch["frames"], self.augment)
        if self.config.occlusion:  # the backward flows too, from the same batch
            pyramid, backward = model(frames, all_scales=True, backward=True)
        else:
            pyramid, backward = model(frames, all_scales=True), None
        loss, terms = multiscale_motion_loss(frames, pyramid, self.config, backward_pyramid=backward)
        return loss, {name: value.detach() for name, value in terms.items()}


class ActionObjective:
    """Multi-task loss of the hidden two-stream network.

    ``loss = sum over heads of CE(head) + motion_weight * motion loss``. Heads are the streams
    asked for (``"spatial"``, ``"temporal"``) and ``"fused"`` when both are trained. The motion term
    is skipped when MotionNet is frozen or the temporal stream is not trained (and there is none
    for a two-stage model, which gets the batch's precomputed ``flows``). With occlusion
    masking (``motion.occlusion``) the model also returns the backward flows (``backward_pyramid``:
    MotionNet on the time-reversed windows, as in pretraining), so the mask is really applied. ``mirror``: a left-right
    flip of each clip with probability 1/2 (:func:`random_mirror`), applied here to the frames and
    to the given flows together, where an ``augment`` flip could not follow precomputed flows.
    """

    def __init__(self, streams: Sequence[str], motion: MotionLossConfig | None,
                 motion_weight: float = 1.0, augment: nn.Module | None = None, mirror: bool = False) -> None:
        self.streams, self.motion, self.motion_weight, self.augment = tuple(streams), motion, motion_weight, augment
        self.mirror = mirror

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        frames, flows = _augmented(batch["frames"], self.augment), batch.get("flows")
        if self.mirror:
            frames, flows = random_mirror(frames, flows)
        labels = batch["label"]
        backward = self.motion is not None and self.motion.occlusion
        out = model(frames, streams=self.streams, backward=backward, **({} if flows is None else {"flows": flows}))
        loss = frames.new_zeros(())
        metrics: dict[str, torch.Tensor] = {}
        for head in ("spatial", "temporal", "fused"):
            if head in out:
                logits = out[head].float()
                ce = F.cross_entropy(logits, labels)
                loss = loss + ce
                metrics[f"ce_{head}"] = ce.detach()
                metrics[f"acc_{head}"] = (logits.argmax(1) == labels).float().mean()
        pyramid = out.get("pyramid")
        if self.motion is not None and pyramid is not None and pyramid[-1].requires_grad:
            windows = frames.reshape(-1, *frames.shape[-4:])
            motion, _ = multiscale_motion_loss(windows, pyramid, self.motion,
                                               backward_pyramid=out.get("backward_pyramid"))
            loss = loss + self.motion_weight * motion
            metrics["motion"] = motion.detach()
        return loss, metrics


def random_rescale(frames: torch.Tensor, flow: torch.Tensor,
                   scale_range: tuple[float, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize a batch of windows and their exact flows by one random factor in ``scale_range``.

    ``frames (B, T+1, 3, H, W)``, ``flow (B, T, 2, H, W)`` in pixels. Zooming out makes motions
    smaller in pixels and textures finer, so one rendered size teaches several image scales.
    """
    low, high = scale_range
    factor = low + (high - low) * float(torch.rand(()))
    height, width = frames.shape[-2:]
    size = (max(32, round(height * factor)), max(32, round(width * factor)))
    if size == (height, width):
        return frames, flow
    frames = F.interpolate(frames.flatten(0, 1), size=size, mode="bilinear", antialias=True,
                           align_corners=False).clamp(0, 1).unflatten(0, frames.shape[:2])
    return frames, resize_flow(flow.flatten(0, 1), size).unflatten(0, flow.shape[:2])


class SupervisedFlowObjective:
    """Warm start on exact flow (FlowNet's recipe): ``batch["frames"]``, ``batch["flow"]`` ->
    multi-scale EPE. Beyond the paper, whose MotionNet never sees flow labels."""

    def __init__(self, scale_range: tuple[float, float] = (1.0, 1.0),
                 augment: nn.Module | None = None) -> None:
        self.scale_range, self.augment = scale_range, augment

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        frames, flow = random_rescale(batch["frames"], batch["flow"], self.scale_range)
        pyramid = model(_augmented(frames, self.augment), all_scales=True)
        loss, terms = multiscale_epe_loss(pyramid, flow)
        return loss, {name: value.detach() for name, value in terms.items()}
