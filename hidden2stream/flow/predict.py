"""MotionNet flow for a frame pair or a frame sequence, whatever the model's window length T+1.

* :func:`pair_flow`: a model with ``config.frames == 2`` sees the pair; a window model sees
  ``[frame1, frame2, frame2, ...]`` (T+1 frames, the second one repeated) and its first flow is kept.
* :func:`window_flows`: the consecutive flows of a sequence, as ``experiments/flow.py`` computes
  them for a video: windows of T+1 frames that share their end frames, the last one padded by
  repeating its final frame.

Both run in eval mode without gradients (the model's mode is restored after) and return float32
CPU tensors at the frames' size (MotionNet pads internally, so any H, W works).
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch
from torch import Tensor, nn

from hidden2stream.runtime import Runtime, evaluation


def _placement(runtime_or_device: Runtime | torch.device | str) -> tuple[torch.device, Callable[[], contextlib.AbstractContextManager]]:
    """The device and autocast context to run on: a :class:`Runtime`'s, or a device with no autocast."""
    if isinstance(runtime_or_device, Runtime):
        return runtime_or_device.device, runtime_or_device.autocast
    return torch.device(runtime_or_device), contextlib.nullcontext


def window_length(model: nn.Module) -> int:
    """The model's window length T+1 (``model.config.frames``)."""
    return int(model.config.frames)


def _check_frames(frames: Tensor) -> None:
    if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[0] < 2:
        raise ValueError(f"frames must have shape (N, 3, H, W) with N >= 2, got {tuple(frames.shape)}")


def _run(model: nn.Module, windows: Tensor, runtime_or_device: Runtime | torch.device | str) -> Tensor:
    """Full-resolution flows ``(B, T, 2, H, W)`` float32 on the CPU of windows ``(B, T+1, 3, H, W)``."""
    device, autocast = _placement(runtime_or_device)
    with evaluation(model), autocast():
        return model(windows.to(device), all_scales=False).float().cpu()


def pair_window(frame1: Tensor, frame2: Tensor, frames: int) -> Tensor:
    """The window ``(frames, 3, H, W)`` ``[frame1, frame2, frame2, ...]`` that feeds a pair to a
    model of window length ``frames``."""
    if frame1.shape != frame2.shape or frame1.ndim != 3 or frame1.shape[0] != 3:
        raise ValueError(f"a pair needs two frames (3, H, W) of one size, got {tuple(frame1.shape)} "
                         f"and {tuple(frame2.shape)}")
    return torch.stack([frame1] + [frame2] * (frames - 1))


def pair_flow(model: nn.Module, frame1: Tensor, frame2: Tensor,
              runtime_or_device: Runtime | torch.device | str) -> Tensor:
    """MotionNet's forward flow frame1 -> frame2 ``(2, H, W)`` in pixels, at the frames' size.

    ``frame1``, ``frame2``: ``(3, H, W)`` in [0, 1]. A window model (T+1 > 2) gets the pair as
    ``[frame1, frame2, frame2, ...]`` and its first flow is returned. ``runtime_or_device``: a
    :class:`Runtime` (its device and autocast) or a device (float32).
    """
    window = pair_window(frame1, frame2, window_length(model))
    return _run(model, window[None], runtime_or_device)[0, 0]


def window_flows(model: nn.Module, frames: Tensor, runtime_or_device: Runtime | torch.device | str,
                 batch_size: int = 8) -> Tensor:
    """Flows ``(N-1, 2, H, W)`` between consecutive frames of ``frames (N, 3, H, W)``.

    Windows of T+1 frames start every T frames (they share their end frames); the last one is
    padded by repeating its final frame and only its real flows are kept.
    """
    _check_frames(frames)
    windows = split_windows(frames, window_length(model))
    flows = torch.cat([_run(model, windows[i:i + batch_size], runtime_or_device)
                       for i in range(0, len(windows), batch_size)])
    return flows.flatten(0, 1)[:frames.shape[0] - 1]


def split_windows(frames: Tensor, length: int) -> Tensor:
    """Windows ``(B, length, 3, H, W)`` of ``frames (N, 3, H, W)``, one every ``length - 1`` frames
    (consecutive windows share their end frames), the last one padded by repeating its final
    frame: flow ``j`` of window ``b`` is the flow from frame ``b * (length - 1) + j`` to the next."""
    steps, total = length - 1, frames.shape[0] - 1
    windows = []
    for start in range(0, total, steps):
        window = frames[start:start + length]
        if window.shape[0] < length:
            window = torch.cat([window, window[-1:].expand(length - window.shape[0], -1, -1, -1)])
        windows.append(window)
    return torch.stack(windows)
