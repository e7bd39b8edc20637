"""Read an image file as an RGB frame; anything else is one line saying why, without library paths.

torchvision's decoder errors name its C++ source files (``decode_image, /__w/vision/...cpp:61,
Unsupported image file...``); :func:`read_rgb` checks the file's signature first, so a user sees
``notes.txt is not a readable image (not a PNG, JPEG, WebP or GIF file)``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image

from hidden2stream.errors import UserError

#: Leading bytes of the formats torchvision's ``decode_image`` reads (WebP: "RIFF", size, "WEBP").
SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF", b"GIF89a": "GIF"}


def image_format(data: bytes) -> str | None:
    """``"PNG"``, ``"JPEG"``, ``"GIF"`` or ``"WebP"`` from a file's first bytes; None for anything else."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in SIGNATURES.items() if data.startswith(magic)), None)


def read_rgb(path: str | Path) -> Tensor:
    """The image at ``path`` as float ``(3, H, W)`` in [0, 1] (grey and RGBA become RGB).

    Raises :class:`UserError` ("X is not a readable image (reason)") for a missing, empty or
    unreadable file, a file of another format, or damaged image data.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"{path} is not a readable image ({err.strerror or type(err).__name__})") from None
    kind = image_format(data)
    if kind is None:
        reason = "empty file" if not data else "not a PNG, JPEG, WebP or GIF file"
        raise UserError(f"{path} is not a readable image ({reason})")
    try:
        image = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError:
        raise UserError(f"{path} is not a readable image (damaged {kind} data)") from None
    return image.float() / 255
