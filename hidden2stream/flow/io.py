"""Middlebury ``.flo`` files: magic 202021.25 (float32), width, height (int32), then H*W*2
float32 values, u and v interleaved row by row."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from hidden2stream.errors import UserError

FLO_MAGIC = np.float32(202021.25)


def read_flo(path: str | Path) -> Tensor:
    """Read a ``.flo`` file as a float32 tensor ``(2, H, W)`` (u, v in pixels)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"cannot read flow file {path}: {err.strerror}") from err
    if len(data) < 12 or np.frombuffer(data, np.float32, 1)[0] != FLO_MAGIC:
        raise UserError(f"{path} is not a Middlebury .flo file (bad magic number)")
    width, height = (int(v) for v in np.frombuffer(data, np.int32, 2, offset=4))
    expected = 12 + 4 * 2 * width * height
    if width <= 0 or height <= 0 or len(data) < expected:
        raise UserError(f"{path} is truncated: header says {width}x{height}, has {len(data)} bytes")
    flow = np.frombuffer(data, np.float32, 2 * width * height, offset=12).reshape(height, width, 2)
    return torch.from_numpy(flow.transpose(2, 0, 1).copy())


def write_flo(path: str | Path, flow: Tensor | np.ndarray) -> None:
    """Write a flow ``(2, H, W)`` (tensor or array) as a ``.flo`` file, creating parent folders."""
    if isinstance(flow, Tensor):
        flow = flow.detach().cpu().float().numpy()
    array = np.asarray(flow, np.float32)
    if array.ndim != 3 or array.shape[0] != 2:
        raise UserError(f"flow to write to {path} must have shape (2, H, W), got {array.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _, height, width = array.shape
    with path.open("wb") as file:
        file.write(FLO_MAGIC.tobytes())
        file.write(np.array([width, height], np.int32).tobytes())
        file.write(np.ascontiguousarray(array.transpose(1, 2, 0), np.float32).tobytes())
