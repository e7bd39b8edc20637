"""Moving-layer renderer: textured layers with hard masks under affine motion, and their exact flow.

A layer's pose at frame t is a 2x3 affine matrix ``A_t`` mapping layer coordinates (texture pixel
coordinates, x right, y down) to image pixel coordinates. Motion is a constant per-frame affine
``M``: ``A_{t+1} = M A_t``, so ``A_t = M^t A_0`` and the forward flow t -> t+1 of an image pixel x
owned by the layer is ``M x - x`` at every t. Compositing uses hard masks (no anti-aliasing), so
every pixel belongs to exactly one layer and the flow is exact. ``layers[0]`` is the background
and must cover the frame at every rendered time (see :func:`covering_layer`).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset


@dataclass(frozen=True)
class Layer:
    """A textured layer: ``texture (3, Ht, Wt)``, hard ``alpha (1, Ht, Wt)`` in {0, 1}, pose ``A_0 (2, 3)``
    (layer -> image pixel coordinates) and per-frame motion ``M (2, 3)``; matrices are float64."""

    texture: Tensor
    alpha: Tensor
    pose: Tensor
    motion: Tensor


def affine(
    center: tuple[float, float],
    translation: tuple[float, float] = (0.0, 0.0),
    rotation: float = 0.0,
    scale: float = 1.0,
    shear: float = 0.0,
) -> Tensor:
    """The 2x3 float64 map ``x -> c + t + R(rotation) * scale * Shear(shear) (x - c)``.

    ``rotation`` is in radians, clockwise on screen (y points down).
    """
    cos, sin = math.cos(rotation), math.sin(rotation)
    a, b = scale * cos, scale * (shear * cos - sin)  # R @ [[scale, scale * shear], [0, scale]]
    c, d = scale * sin, scale * (shear * sin + cos)
    cx, cy = center
    tx, ty = translation
    return torch.tensor(
        [[a, b, cx + tx - a * cx - b * cy], [c, d, cy + ty - c * cx - d * cy]], dtype=torch.float64
    )


def homogeneous(matrix: Tensor) -> Tensor:
    """``(..., 2, 3)`` affine -> ``(..., 3, 3)`` with last row ``0 0 1``."""
    last = torch.zeros(*matrix.shape[:-2], 1, 3, dtype=matrix.dtype)
    last[..., 0, 2] = 1.0
    return torch.cat([matrix, last], dim=-2)


def layer_poses(layers: Sequence[Layer], times: Sequence[int]) -> Tensor:
    """Poses ``A_t = M^t A_0`` of every layer at every time: ``(len(times), len(layers), 3, 3)`` float64."""
    if min(times) < 0:
        raise ValueError(f"frame times must be >= 0, got {min(times)}")
    motion = homogeneous(torch.stack([layer.motion for layer in layers]))
    poses = [homogeneous(torch.stack([layer.pose for layer in layers]))]
    for _ in range(max(times)):
        poses.append(motion @ poses[-1])
    return torch.stack([poses[t] for t in times])


def pixel_grid(height: int, width: int) -> Tensor:
    """Homogeneous pixel coordinates ``(H, W, 3)`` float32: ``[x, y, 1]`` at each pixel centre."""
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij")
    return torch.stack([xs, ys, torch.ones_like(xs)], dim=-1)


def render_frames(layers: Sequence[Layer], times: Iterable[int], height: int, width: int) -> tuple[Tensor, Tensor]:
    """Composite the layers back to front at each time.

    Returns ``images (N, 3, H, W)`` in the textures' range and ``layer_index (N, H, W)`` long, the
    topmost layer at each pixel. One bilinear ``grid_sample`` per layer covers all N frames; the
    alpha is thresholded at 0.5 so masks are hard.
    """
    times = list(times)
    inverse = torch.linalg.inv(layer_poses(layers, times))  # image -> layer coordinates
    pixels = pixel_grid(height, width)
    images = torch.zeros(len(times), 3, height, width)
    layer_index = torch.zeros(len(times), height, width, dtype=torch.long)
    for number, layer in enumerate(layers):
        _, tex_h, tex_w = layer.texture.shape
        to_normalised = torch.tensor(
            [[2.0 / (tex_w - 1), 0.0, -1.0], [0.0, 2.0 / (tex_h - 1), -1.0], [0.0, 0.0, 1.0]], dtype=torch.float64
        )
        theta = (to_normalised @ inverse[:, number])[:, :2].float()
        grid = (pixels.view(1, -1, 3) @ theta.transpose(1, 2)).view(len(times), height, width, 2)
        source = torch.cat([layer.texture, layer.alpha])[None].expand(len(times), -1, -1, -1)
        sampled = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
        inside = sampled[:, 3] > 0.5
        images = torch.where(inside[:, None], sampled[:, :3], images)
        layer_index[inside] = number
    return images, layer_index


def render(layers: Sequence[Layer], t: int, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Frame t: ``image (3, H, W)`` and ``layer_index (H, W)`` long."""
    images, layer_index = render_frames(layers, [t], height, width)
    return images[0], layer_index[0]


def flows_from_index(layers: Sequence[Layer], layer_index: Tensor) -> tuple[Tensor, Tensor]:
    """Exact forward flows between consecutive frames given their ``layer_index (N+1, H, W)``.

    ``layer_index[k]`` must be frame ``t0 + k`` of :func:`render_frames`. Returns
    ``flow (N, 2, H, W)`` in pixels (channel 0 = x) with ``flow[k](x) = M^L x - x`` for the topmost
    layer L at x, and ``valid (N, 1, H, W)`` float, 0 where the destination leaves the frame or the
    layer at the rounded destination in the next frame is not L (occlusion).
    """
    frames, height, width = layer_index.shape
    pixels = pixel_grid(height, width)
    identity = torch.eye(2, 3, dtype=torch.float64)
    motion = torch.stack([layer.motion for layer in layers]) - identity
    displacement = (pixels.view(1, -1, 3) @ motion.float().transpose(1, 2)).view(-1, 2)  # (L*H*W, 2)
    source = layer_index[:-1]
    flat = source * (height * width) + torch.arange(height * width).view(height, width)
    flow = displacement[flat]  # (N, H, W, 2)
    target = pixels[..., :2] + flow
    x, y = target[..., 0], target[..., 1]
    inside = (x >= 0) & (x <= width - 1) & (y >= 0) & (y <= height - 1)
    landing = y.round().clamp(0, height - 1).long() * width + x.round().clamp(0, width - 1).long()
    landed = layer_index[1:].flatten(1).gather(1, landing.flatten(1)).view_as(source)
    valid = (inside & (landed == source)).float()
    return flow.permute(0, 3, 1, 2).contiguous(), valid[:, None]


def exact_flow(layers: Sequence[Layer], t: int, height: int, width: int) -> tuple[Tensor, Tensor]:
    """Forward flow t -> t+1: ``flow (2, H, W)`` in pixels and ``valid (1, H, W)`` (see :func:`flows_from_index`)."""
    _, layer_index = render_frames(layers, [t, t + 1], height, width)
    flow, valid = flows_from_index(layers, layer_index)
    return flow[0], valid[0]


def superellipse_mask(height: int, width: int, semi_x: float, semi_y: float, exponent: float) -> Tensor:
    """Hard mask ``(1, H, W)``: ``|dx / semi_x|^e + |dy / semi_y|^e <= 1`` about the array centre.

    ``e = 2`` is an ellipse, large ``e`` a rounded rectangle, ``e < 2`` a pinched diamond.
    """
    pixels = pixel_grid(height, width)
    dx = (pixels[..., 0] - (width - 1) / 2).abs() / semi_x
    dy = (pixels[..., 1] - (height - 1) / 2).abs() / semi_y
    return (dx**exponent + dy**exponent <= 1.0).float()[None]


def covering_layer(
    motion: Tensor, frames: int, height: int, width: int, texture: Callable[[int, int], Tensor]
) -> Layer:
    """A background layer centred on the frame that covers it for frames ``0 .. frames-1``.

    The texture size ``texture(Ht, Wt)`` is the smallest whose inverse-mapped frame rectangle
    (with a one-pixel margin) stays inside it under ``motion`` (2x3, about any centre).
    """
    center = torch.tensor([(width - 1) / 2, (height - 1) / 2], dtype=torch.float64)
    corners = torch.tensor(
        [[-1.0, -1.0, 1.0], [width, -1.0, 1.0], [-1.0, height, 1.0], [width, height, 1.0]], dtype=torch.float64
    ).T
    step = torch.linalg.inv(homogeneous(motion))
    points = [corners]
    for _ in range(frames - 1):
        points.append(step @ points[-1])
    half = (torch.cat(points, dim=1)[:2] - center[:, None]).abs().amax(dim=1)
    tex_w, tex_h = (2 * math.ceil(float(h)) + 3 for h in half)
    tex_center = ((tex_w - 1) / 2, (tex_h - 1) / 2)
    pose = affine(tex_center, translation=(center[0].item() - tex_center[0], center[1].item() - tex_center[1]))
    return Layer(texture(tex_h, tex_w), torch.ones(1, tex_h, tex_w), pose, motion)


SEED_STRIDE = 1_000_003


class SeededDataset(Dataset):
    """``length`` rendered items; item i draws from its own ``Generator().manual_seed(seed *
    1_000_003 + i)``, so it is the same whatever the order, worker or process that asks for it."""

    def __init__(self, length: int, seed: int) -> None:
        if length < 1:
            raise ValueError(f"dataset length must be >= 1, got {length}")
        self.length, self.seed = length, seed

    def __len__(self) -> int:
        return self.length

    def generator(self, index: int) -> torch.Generator:
        """Item ``index``'s generator; ``IndexError`` past the end (ends iteration by indexing)."""
        if not 0 <= index < self.length:
            raise IndexError(f"index {index} out of range for {self.length} items")
        return torch.Generator().manual_seed(self.seed * SEED_STRIDE + index)
