"""Training objectives for the loop: a batch in, a scalar loss and named metrics out.

* :class:`MotionObjective` - MotionNet pretraining, the unsupervised multi-scale loss only.
* :class:`ActionObjective` - hidden two-stream fine-tuning: action cross-entropy on every stream
  head plus the unsupervised motion loss on MotionNet's pyramid (the paper's multi-task loss).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hidden2stream.losses.motion import MotionLossConfig, multiscale_motion_loss


def _augmented(frames: torch.Tensor, augment: nn.Module | None) -> torch.Tensor:
    """Apply a clip-consistent augmentation to ``(B, T+1, 3, H, W)`` or ``(B, K, T+1, 3, H, W)``."""
    if augment is None:
        return frames
    shape = frames.shape
    return augment(frames.reshape(-1, *shape[-4:])).reshape(shape)


def motion_loss(model_output: Sequence[torch.Tensor], frames: torch.Tensor,
                config: MotionLossConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The unsupervised loss of a pyramid computed on ``cat([frames, frames.flip(1)])`` or ``frames``.

    When the batch holds the time-reversed windows too (occlusion masking), the second half of
    each level is the backward flow: reversed flow j goes from frame T-j to T-1-j, so flipping
    the time axis puts the flow from frame t+1 to frame t at index t.
    """
    if config.occlusion:
        half = frames.shape[0]
        forward = [level[:half] for level in model_output]
        backward = [level[half:].flip(1) for level in model_output]
        return multiscale_motion_loss(frames, forward, config, backward_pyramid=backward)
    return multiscale_motion_loss(frames, list(model_output), config)


class MotionObjective:
    """MotionNet pretraining: ``batch["frames"] (B, T+1, 3, H, W)`` -> multi-scale motion loss."""

    def __init__(self, config: MotionLossConfig, augment: nn.Module | None = None) -> None:
        self.config, self.augment = config, augment

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        frames = _augmented(batch["frames"], self.augment)
        inputs = torch.cat([frames, frames.flip(1)]) if self.config.occlusion else frames
        pyramid = model(inputs, all_scales=True)
        loss, terms = motion_loss(pyramid, frames, self.config)
        return loss, {name: value.detach() for name, value in terms.items()}


class ActionObjective:
    """Multi-task loss of the hidden two-stream network.

    ``loss = sum over heads of CE(head) + motion_weight * motion loss``. Heads are the streams
    asked for (``"spatial"``, ``"temporal"``) and ``"fused"`` when both are trained. The motion term
    is skipped when MotionNet is frozen or the temporal stream is not trained.
    """

    def __init__(self, streams: Sequence[str], motion: MotionLossConfig | None,
                 motion_weight: float = 1.0, augment: nn.Module | None = None) -> None:
        self.streams, self.motion, self.motion_weight, self.augment = tuple(streams), motion, motion_weight, augment

    def __call__(self, model: nn.Module, batch: dict[str, torch.Tensor]):
        frames = _augmented(batch["frames"], self.augment)
        labels = batch["label"]
        out = model(frames, streams=self.streams)
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
            motion, _ = multiscale_motion_loss(windows, pyramid, self.motion)
            loss = loss + self.motion_weight * motion
            metrics["motion"] = motion.detach()
        return loss, metrics
