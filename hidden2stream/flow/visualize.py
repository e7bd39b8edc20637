"""Flow pictures (Middlebury colour wheel via torchvision), frame | flow video tiles, PNG output."""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision.transforms.functional as TF
from torch import Tensor
from torchvision.io import write_png
from torchvision.utils import flow_to_image, make_grid


def _one_flow_to_rgb(flow: Tensor, max_magnitude: float | None) -> Tensor:
    """Colour one flow ``(2, H, W)``; see :func:`flow_to_rgb`."""
    flow = flow.detach().float().cpu()
    if max_magnitude is None:
        return flow_to_image(flow)
    norm = torch.linalg.vector_norm(flow, dim=0, keepdim=True)
    unit = flow / torch.maximum(norm, torch.tensor(max_magnitude))  # |unit| <= 1, == 1 at the cap
    # flow_to_image divides by the largest norm it sees; one extra column holding a unit vector
    # pins that to 1, so max_magnitude lands on the rim of the wheel. The column is cropped off.
    rim = torch.zeros(2, flow.shape[1], 1)
    rim[0] = 1.0
    return flow_to_image(torch.cat((unit, rim), dim=2))[..., :-1]


def flow_to_rgb(flow: Tensor, max_magnitude: float | None = None) -> Tensor:
    """Colour-code flow ``(2, H, W)`` or ``(N, 2, H, W)`` as uint8 ``(3, H, W)`` / ``(N, 3, H, W)``.

    Hue = direction, saturation = length (white = no motion). Without ``max_magnitude`` each flow
    is scaled by its own largest vector (so pictures of different flows are not comparable). With
    ``max_magnitude`` (pixels) every flow uses the same scale: a vector of that length is fully
    saturated and longer ones are clamped to it, so pictures from several methods can be compared.
    """
    if flow.ndim not in (3, 4) or flow.shape[-3] != 2:
        raise ValueError(f"flow must have shape (2, H, W) or (N, 2, H, W), got {tuple(flow.shape)}")
    if max_magnitude is not None and max_magnitude <= 0:
        raise ValueError(f"max_magnitude must be positive, got {max_magnitude}")
    if flow.ndim == 3:
        return _one_flow_to_rgb(flow, max_magnitude)
    return torch.stack([_one_flow_to_rgb(f, max_magnitude) for f in flow])


def colour_wheel(diameter: int) -> tuple[Tensor, Tensor]:
    """The legend of :func:`flow_to_rgb`: uint8 ``(3, d, d)`` and its disc mask ``(d, d)`` (bool).

    The pixel at offset ``(x, y)`` from the centre (image axes, y down) has the colour of the flow
    ``(u, v) = (x, y)``, the rim (radius d/2) being fully saturated; a dark ring outlines the disc.
    """
    radius = (diameter - 1) / 2
    ys, xs = torch.meshgrid(torch.arange(diameter) - radius, torch.arange(diameter) - radius, indexing="ij")
    wheel = flow_to_rgb(torch.stack([xs, ys]) / radius, max_magnitude=1.0)
    distance = torch.sqrt(xs**2 + ys**2)
    wheel[:, distance > radius - max(1.0, diameter / 30)] = 48
    return wheel, distance <= radius


def frame_and_flow(frame: Tensor, flow: Tensor, size: tuple[int, int], legend: bool = True) -> Tensor:
    """A video tile uint8 ``(3, H, 2W)``: ``frame`` (uint8 or float ``(3, h, w)``) beside the colours
    of its ``flow`` ``(2, h', w')``, both resized to ``size`` = ``(H, W)``.

    The flow is colour-coded at its own size (:func:`flow_to_rgb`, scaled by its largest vector),
    then resized, so the picture is the flow as computed. ``legend`` puts a :func:`colour_wheel` in
    the flow's bottom-right corner.
    """
    tiles = [_to_uint8(frame), flow_to_rgb(flow)]
    tiles = [t if tuple(t.shape[-2:]) == tuple(size) else TF.resize(t, list(size), antialias=True) for t in tiles]
    if legend:
        diameter = max(24, size[0] // 6)
        wheel, disc = colour_wheel(diameter)
        margin = max(4, size[0] // 60)
        corner = tiles[1][:, -margin - diameter:-margin, -margin - diameter:-margin]
        corner[:, disc] = wheel[:, disc]
    return torch.cat(tiles, dim=2)


def _to_uint8(image: Tensor) -> Tensor:
    """uint8 ``(3, H, W)`` on the CPU from a uint8 image or a float image in [0, 1]."""
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise ValueError(f"image must have shape (3, H, W) or (1, H, W), got {tuple(image.shape)}")
    image = image.detach().cpu()
    if image.dtype != torch.uint8:
        image = (image.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return image.expand(3, -1, -1)


def save_png(image: Tensor, path: str | Path) -> Path:
    """Write an image (uint8 ``(3, H, W)`` or float in [0, 1]) as PNG, creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(_to_uint8(image).contiguous(), str(path))
    return path


def make_grid_png(images: list[Tensor], path: str | Path, ncol: int) -> Path:
    """Tile images (uint8 ``(3, H, W)`` or float frames in [0, 1]) into a PNG, ``ncol`` per row.

    Images of another size are resized to the first one's size; tiles are separated by a 2-pixel
    white border.
    """
    if not images:
        raise ValueError(f"no images to tile into {path}")
    if ncol < 1:
        raise ValueError(f"ncol must be >= 1, got {ncol}")
    tiles = [_to_uint8(image) for image in images]
    size = list(tiles[0].shape[-2:])
    tiles = [t if list(t.shape[-2:]) == size else TF.resize(t, size, antialias=True) for t in tiles]
    return save_png(make_grid(tiles, nrow=ncol, padding=2, pad_value=255), path)
