"""Classical optical flow baselines from OpenCV (TV-L1, Farneback, DIS).

TV-L1 with OpenCV's default parameters is the reference the benchmarks compare MotionNet with.
OpenCV returns forward flow, ``prev(y, x) ~ next(y + v, x + u)``, which is this package's
convention (docs/architecture.md).
"""
from __future__ import annotations

from functools import cache

import cv2
import numpy as np
import torch
from torch import Tensor


CLASSIC_METHODS = ("tvl1", "farneback", "dis")


@cache
def _tvl1() -> cv2.optflow.DualTVL1OpticalFlow:
    return cv2.optflow.DualTVL1OpticalFlow_create()


@cache
def _dis() -> cv2.DISOpticalFlow:
    return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)


def _gray_uint8(frame: Tensor) -> np.ndarray:
    """RGB float frame ``(3, H, W)`` in [0, 1] -> grayscale uint8 ``(H, W)``."""
    if frame.ndim != 3 or frame.shape[0] != 3:
        raise ValueError(f"frames must have shape (3, H, W), got {tuple(frame.shape)}")
    rgb = (frame.detach().float().cpu().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return cv2.cvtColor(np.ascontiguousarray(rgb.permute(1, 2, 0).numpy()), cv2.COLOR_RGB2GRAY)


def classic_flow(method: str, frame0: Tensor, frame1: Tensor) -> Tensor:
    """Forward flow frame0 -> frame1 as a float32 tensor ``(2, H, W)`` in pixels (u, v)."""
    if method not in CLASSIC_METHODS:
        choices = ", ".join(CLASSIC_METHODS)
        raise ValueError(f"unknown classic flow method {method!r}; choose one of {choices}")
    prev, nxt = _gray_uint8(frame0), _gray_uint8(frame1)
    if method == "tvl1":
        flow = _tvl1().calc(prev, nxt, None)
    elif method == "dis":
        flow = _dis().calc(prev, nxt, None)
    else:
        flow = cv2.calcOpticalFlowFarneback(prev, nxt, None, 0.5, 3, 15, 3, 5, 1.2, 0)
    return torch.from_numpy(np.ascontiguousarray(flow, np.float32)).permute(2, 0, 1).contiguous()


def classic_flow_sequence(method: str, frames: Tensor) -> Tensor:
    """Flows between consecutive frames: ``(T+1, 3, H, W)`` -> ``(T, 2, H, W)``."""
    if frames.ndim != 4 or frames.shape[0] < 2:
        raise ValueError(f"frames must have shape (T+1, 3, H, W), T >= 1, got {tuple(frames.shape)}")
    pairs = zip(frames[:-1], frames[1:])
    return torch.stack([classic_flow(method, prev, nxt) for prev, nxt in pairs])
