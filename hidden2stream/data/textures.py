"""Textures for synthetic moving layers: procedural images, or random crops of real photographs.

A texture is a ``(3, H, W)`` float tensor in ``[0, 1]``. Flow needs structure at several scales to
lock on to, so procedural textures mix coloured noise octaves, soft blobs and a stripe pattern.
"""
from __future__ import annotations

import functools
import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image
from torchvision.transforms.v2.functional import to_dtype

from hidden2stream.errors import UserError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
NOISE_PERIODS = (32.0, 16.0, 8.0, 4.0)  # pixels per noise cell, coarse to fine
BLOBS = 6
MAX_CROP_ZOOM = 3.0  # an image crop spans at most this many source pixels per output pixel


def procedural_texture(generator: torch.Generator, height: int, width: int) -> Tensor:
    """A random colourful texture ``(3, height, width)`` in ``[0, 1]``, drawn from ``generator``.

    Sum of colour-mixed bicubic noise octaves (periods 32..4 px), soft-edged blobs of random colour
    and one oriented stripe pattern, then contrast-normalised per channel through a sigmoid.
    """
    texture = torch.zeros(3, height, width)
    for octave, period in enumerate(NOISE_PERIODS):
        rows, cols = max(2, math.ceil(height / period) + 1), max(2, math.ceil(width / period) + 1)
        mix = torch.randn(3, 3, generator=generator)
        noise = (mix @ torch.randn(3, rows * cols, generator=generator)).view(3, rows, cols)
        texture += 0.8**octave * (_upsampling(height, rows) @ noise @ _upsampling(width, cols).T)

    ys = torch.arange(height, dtype=torch.float32).view(1, height, 1)
    xs = torch.arange(width, dtype=torch.float32).view(1, 1, width)
    side = max(height, width)
    u = torch.rand(BLOBS, 3, generator=generator)
    cy, cx = (u[:, 0] * height).view(-1, 1, 1), (u[:, 1] * width).view(-1, 1, 1)
    radius = (0.05 + 0.15 * u[:, 2]).view(-1, 1, 1) * side
    # sigmoid of (r^2 - d^2) / 2r: an edge about 1.5 px wide at distance r, without a square root
    blobs = torch.sigmoid((radius**2 - (ys - cy) ** 2 - (xs - cx) ** 2) * (0.75 / radius))
    colours = 1.5 * torch.randn(3, BLOBS, generator=generator)
    texture += (colours @ blobs.view(BLOBS, -1)).view(3, height, width)

    angle, period, phase = (torch.rand(3, generator=generator) * torch.tensor([math.pi, 14.0, 2 * math.pi])).tolist()
    along = xs * math.cos(angle) + ys * math.sin(angle)
    stripes = torch.tanh(2.0 * torch.sin(2 * math.pi * along / (6.0 + period) + phase))
    texture += stripes * torch.randn(3, 1, 1, generator=generator)

    texture -= texture.mean(dim=(1, 2), keepdim=True)
    std = texture.square().mean(dim=(1, 2), keepdim=True).sqrt_()
    tint = torch.rand(3, 1, 1, generator=generator) - 0.5
    return torch.sigmoid(texture * (1.5 / (std + 1e-6)) + tint)


@functools.lru_cache(maxsize=1024)
def _upsampling(out_size: int, in_size: int) -> Tensor:
    """Matrix ``(out_size, in_size)`` of 1-D bicubic interpolation (align_corners=True): a separable
    upsampling ``U_h @ x @ U_w.T`` costs two small matmuls instead of an ``F.interpolate`` call."""
    eye = torch.eye(in_size).view(1, 1, in_size, in_size)
    return F.interpolate(eye, size=(out_size, in_size), mode="bicubic", align_corners=True)[0, 0]


class ImageTextures:
    """Textures cut from a folder of ``.jpg`` / ``.png`` photographs, loaded once as uint8 RGB."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise UserError(f"image folder {folder} does not exist")
        self.images: list[Tensor] = []
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
            try:
                image = decode_image(str(path), mode=ImageReadMode.RGB)
            except (RuntimeError, ValueError, OSError) as error:
                log.warning("skipping unreadable image %s: %s", path, str(error).splitlines()[0])
                continue
            self.images.append(to_dtype(image, torch.uint8, scale=True))
        if not self.images:
            raise UserError(f"no readable .jpg/.png images in {folder}")

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, generator: torch.Generator, height: int, width: int) -> Tensor:
        """A random crop ``(3, height, width)`` in ``[0, 1]`` of a random image.

        The crop covers ``zoom`` source pixels per output pixel, ``zoom`` uniform in
        ``[1, min(3, fit)]``, then is resized; an image smaller than the crop is upscaled to fit.
        """
        pick = int(torch.randint(len(self.images), (), generator=generator))
        image = self.images[pick]
        _, image_h, image_w = image.shape
        fit = min(image_h / height, image_w / width)
        zoom_u, y_u, x_u = torch.rand(3, generator=generator).tolist()
        zoom = 1.0 + (min(MAX_CROP_ZOOM, fit) - 1.0) * zoom_u if fit > 1.0 else fit
        crop_h, crop_w = min(image_h, max(1, round(height * zoom))), min(image_w, max(1, round(width * zoom)))
        top, left = int(y_u * (image_h - crop_h + 1)), int(x_u * (image_w - crop_w + 1))
        crop = image[:, top : top + crop_h, left : left + crop_w].float().div_(255.0)
        if (crop_h, crop_w) != (height, width):
            crop = F.interpolate(crop[None], size=(height, width), mode="bilinear", antialias=True, align_corners=False)[0]
        return crop.clamp_(0.0, 1.0)
