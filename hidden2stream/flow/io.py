"""Ground-truth flow files.

* Middlebury ``.flo``: magic 202021.25 (float32), width, height (int32), then H*W*2 float32 values,
  u and v interleaved row by row. A pixel whose |u| or |v| exceeds 1e9 has no ground truth.
* KITTI flow PNG (``flow_occ/*.png``, ``flow_noc/*.png``): 16-bit, 3 channels; in RGB order
  R = u, G = v, B = valid (0 = no ground truth), with ``flow = (value - 2**15) / 64`` pixels.

:func:`read_flow_with_valid` reads either and returns the flow with its validity mask.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from hidden2stream.errors import UserError

FLO_MAGIC = np.float32(202021.25)
FLO_UNKNOWN = 1e9  # Middlebury: |u| or |v| above this marks a pixel without ground truth
KITTI_OFFSET = 2.0**15  # KITTI PNG: flow = (value - 2^15) / 64
KITTI_SCALE = 64.0


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
        raise ValueError(f"flow to write to {path} must have shape (2, H, W), got {array.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _, height, width = array.shape
    with path.open("wb") as file:
        file.write(FLO_MAGIC.tobytes())
        file.write(np.array([width, height], np.int32).tobytes())
        file.write(np.ascontiguousarray(array.transpose(1, 2, 0), np.float32).tobytes())


def flo_valid(flow: Tensor) -> Tensor:
    """Validity ``(1, H, W)`` float32 of a ``.flo`` flow ``(2, H, W)``: 0 where |u| or |v| > 1e9
    (Middlebury's "unknown") or a value is not finite, 1 elsewhere."""
    known = torch.isfinite(flow) & (flow.abs() <= FLO_UNKNOWN)
    return known.all(dim=0, keepdim=True).float()


def read_kitti_flow(path: str | Path) -> tuple[Tensor, Tensor]:
    """Read a KITTI flow PNG as ``(flow (2, H, W), valid (1, H, W))`` float32 tensors.

    The file is a 16-bit RGB PNG (R = u, G = v, B = valid; OpenCV reads it as BGR, which is undone
    here); ``flow = (value - 2**15) / 64`` pixels. Flow is set to 0 where ``valid`` is 0.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"cannot read flow file {path}: no such file")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise UserError(f"{path} is not a readable PNG image")
    if image.dtype != np.uint16 or image.ndim != 3 or image.shape[2] != 3:
        raise UserError(f"{path} is not a KITTI flow PNG: expected 16-bit, 3 channels, got "
                        f"{image.dtype}, {image.shape[2] if image.ndim == 3 else 1} channel(s)")
    rgb = torch.from_numpy(image[..., ::-1].astype(np.float32).transpose(2, 0, 1).copy())
    valid = (rgb[2:] > 0).float()
    flow = (rgb[:2] - KITTI_OFFSET) / KITTI_SCALE * valid
    return flow, valid


def read_flow_with_valid(path: str | Path) -> tuple[Tensor, Tensor]:
    """Ground-truth flow ``(2, H, W)`` and validity ``(1, H, W)`` (1 = has ground truth), float32.

    ``.flo``: Middlebury (unknown pixels, |value| > 1e9, are invalid and their flow set to 0);
    ``.png``: KITTI 16-bit flow PNG (see :func:`read_kitti_flow`).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".flo":
        flow = read_flo(path)
        valid = flo_valid(flow)
        return torch.where(valid > 0, flow, torch.zeros(())), valid
    if suffix == ".png":
        return read_kitti_flow(path)
    raise UserError(f"{path}: unknown flow file type {path.suffix!r} (expected .flo or a KITTI .png)")
