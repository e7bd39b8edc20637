"""TensorBoard pictures and end-of-run figures for the training loop.

:class:`FlowImages` is an image callback for :func:`hidden2stream.train.loop.train` (``--log-images-every
N``): every N steps it draws, for the first windows of the current batch, the first frame, MotionNet's
flow (colour wheel, :func:`~hidden2stream.flow.visualize.flow_to_rgb`), the photometric error of
the warped frame ``|frame_t - warp(frame_t+1, flow)|`` (mean over RGB, times ``error_gain``, grey)
and, when the batch has ``"flow"``, the ground truth on the same colour scale as the prediction.
:func:`log_final` adds evaluation scalars and pictures (a confusion matrix) when a run ends.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from torchvision.utils import make_grid

from hidden2stream.flow.visualize import flow_to_rgb
from hidden2stream.flow.warp import backward_warp
from hidden2stream.runtime import Runtime, evaluation

TENSORBOARD_DIR = "tensorboard"


def _rgb(flow: Tensor, scale: float | None) -> Tensor:
    return flow_to_rgb(flow, scale).float() / 255


def flow_tiles(frames: Tensor, flow: Tensor, truth: Tensor | None = None, error_gain: float = 4.0) -> Tensor:
    """One image ``(3, H', W')`` in [0, 1]: a row per window of ``frame | flow | error [| truth]``.

    ``frames (N, >=2, 3, H, W)`` (first pair used), ``flow (N, 2, H, W)`` the predicted flow of that
    pair, ``truth (N, 2, H, W)`` its ground truth or None. With ground truth, the prediction is
    coloured on the truth's scale (its largest vector), so the two pictures compare.
    """
    first, second = frames[:, 0].float(), frames[:, 1].float()
    warped, _ = backward_warp(second, flow.float())
    error = ((first - warped).abs().mean(1, keepdim=True) * error_gain).clamp(0, 1).expand(-1, 3, -1, -1)
    tiles: list[Tensor] = []
    for i in range(frames.shape[0]):
        scale = None
        if truth is not None:
            scale = float(torch.linalg.vector_norm(truth[i].float(), dim=0).max().clamp(min=1e-3))
        tiles += [first[i].clamp(0, 1), _rgb(flow[i], scale), error[i]]
        if truth is not None:
            tiles.append(_rgb(truth[i], scale))
    return make_grid(tiles, nrow=4 if truth is not None else 3, padding=2, pad_value=1.0)


class FlowImages:
    """Image callback ``(model, batch, step, writer)``: flow pictures of a training batch's windows.

    ``flow_model(model)`` gives the MotionNet (the identity for pretraining; ``lambda m:
    m.motionnet`` for the two-stream network). Windows are ``batch["frames"]`` ``(B, T+1, 3, H, W)``
    or the first of the K windows of ``(B, K, T+1, 3, H, W)``; at most ``max_items`` of them. The
    model runs in eval mode without gradients, on rank 0 only, so training is unchanged.
    """

    def __init__(self, runtime: Runtime, flow_model: Callable[[nn.Module], nn.Module] | None = None,
                 tag: str = "flow/train", max_items: int = 4, error_gain: float = 4.0) -> None:
        self.runtime, self.flow_model = runtime, flow_model or (lambda model: model)
        self.tag, self.max_items, self.error_gain = tag, max_items, error_gain

    def __call__(self, model: nn.Module, batch: dict, step: int, writer) -> None:
        frames = batch["frames"][: self.max_items]
        if frames.ndim == 6:
            frames = frames[:, 0]
        truth = batch["flow"][: self.max_items, 0].cpu() if "flow" in batch else None
        net = self.flow_model(model)
        with evaluation(net), self.runtime.autocast():
            flow = net(frames.to(self.runtime.device), all_scales=False)[:, 0].float().cpu()
        image = flow_tiles(frames.cpu(), flow, truth, self.error_gain)
        writer.add_image(self.tag, image, step)


def log_final(out_dir: str | Path, step: int, scalars: dict[str, float],
              images: dict[str, Tensor] | None = None) -> None:
    """Add end-of-run ``scalars`` and float ``(3, H, W)`` ``images`` at ``step`` to the run's
    TensorBoard folder (``out_dir/tensorboard``, beside the training curves)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(log_dir=str(Path(out_dir) / TENSORBOARD_DIR))
    try:
        for name, value in scalars.items():
            writer.add_scalar(name, float(value), step)
        for name, image in (images or {}).items():
            writer.add_image(name, image, step)
    finally:
        writer.close()


def flatten_scalars(prefix: str, values: dict) -> dict[str, float]:
    """``{"video_top1": {"fused": 0.9}}`` -> ``{"prefix/video_top1/fused": 0.9}``: numbers only."""
    flat: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}/{key}"
        if isinstance(value, dict):
            flat.update(flatten_scalars(name, value))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat
