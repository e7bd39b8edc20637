"""SyntheticFlowDataset: FlyingChairs-style clips of affinely moving layers with exact forward flow.

A textured background moves slightly; 2-4 textured superellipse layers move with larger affine
motion on top. Each item is generated from its own seeded generator, so it is deterministic per
index, and a training set and a held-out set differ only by ``seed``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from hidden2stream.data.layers import (Layer, SeededDataset, affine, covering_layer, flows_from_index, render_frames,
                                      superellipse_mask)
from hidden2stream.data.textures import ImageTextures, procedural_texture


@dataclass
class SyntheticFlowConfig:
    """Clip size and motion ranges. Motions are per frame; rotations in degrees, scales relative."""

    frames: int = 2  # T + 1
    height: int = 64
    width: int = 64
    foreground: tuple[int, int] = (2, 4)  # min, max number of foreground layers
    foreground_size: tuple[float, float] = (0.15, 0.45)  # layer extent as a fraction of the frame side
    max_translation: float = 4.0  # foreground, pixels per frame
    max_rotation_deg: float = 3.0
    max_scale: float = 0.04
    max_shear: float = 0.02
    background_translation: float = 2.0
    background_rotation_deg: float = 1.0
    background_scale: float = 0.02
    static_background: float = 0.0  # probability that the background (camera) stays still
    photometric_noise: float = 0.0  # std of Gaussian noise added to frames; 0 keeps brightness constancy exact
    image_dir: str | None = None  # None: procedural textures; a folder: crops of its photos
    translation_power: float = 1.0  # translation length = max * u^power, u uniform: > 1 favours small motions

    @classmethod
    def realistic(cls, frames: int, height: int, width: int, image_dir: str | None = None) -> SyntheticFlowConfig:
        """Motions in proportion to the frame, as in real footage at that size.

        Foreground layers move up to 12 % of the shorter side per frame (27 px at 224) and the
        background (camera) up to 5 %, with lengths ``max * u^2``: half the motions are under
        a quarter of the maximum, as in video, where most pixels move little and few move far.
        Rotation, zoom and shear are those of FlyingChairs-like data; a little sensor noise.
        """
        side = min(height, width)
        return cls(frames=frames, height=height, width=width, foreground=(2, 5),
                   max_translation=0.12 * side, max_rotation_deg=5.0, max_scale=0.06, max_shear=0.03,
                   background_translation=0.05 * side, background_rotation_deg=2.0, background_scale=0.04,
                   photometric_noise=0.01, image_dir=image_dir, translation_power=2.0)

    def __post_init__(self) -> None:
        if self.frames < 2:
            raise ValueError(f"frames must be >= 2 (T+1), got {self.frames}")
        if min(self.height, self.width) < 8:
            raise ValueError(f"frame size must be at least 8x8, got {self.height}x{self.width}")
        low, high = self.foreground
        if not 0 <= low <= high:
            raise ValueError(f"foreground must be (min, max) with 0 <= min <= max, got {self.foreground}")
        if not 0 < self.foreground_size[0] <= self.foreground_size[1] <= 1:
            raise ValueError(f"foreground_size must be fractions 0 < min <= max <= 1, got {self.foreground_size}")
        if self.translation_power <= 0:
            raise ValueError(f"translation_power must be > 0, got {self.translation_power}")
        if not 0 <= self.static_background <= 1:
            raise ValueError(f"static_background must be a probability in [0, 1], got {self.static_background}")
        if self.photometric_noise < 0:
            raise ValueError(f"photometric_noise must be >= 0, got {self.photometric_noise}")


def random_motion(
    generator: torch.Generator, center: tuple[float, float], translation: float, rotation_deg: float, scale: float,
    shear: float, translation_power: float = 1.0,
) -> Tensor:
    """A per-frame affine about ``center``: translation of random direction and length
    ``translation * u^translation_power`` (u uniform in [0, 1)), rotation, relative scale and shear
    uniform in ``±`` their bounds."""
    u = torch.rand(5, generator=generator).tolist()
    direction, length = 2 * math.pi * u[0], translation * u[1] ** translation_power
    return affine(
        center,
        translation=(length * math.cos(direction), length * math.sin(direction)),
        rotation=math.radians(rotation_deg) * (2 * u[2] - 1),
        scale=1.0 + scale * (2 * u[3] - 1),
        shear=shear * (2 * u[4] - 1),
    )


class SyntheticFlowDataset(SeededDataset):
    """Items ``{"frames": (T+1, 3, H, W) in [0, 1], "flow": (T, 2, H, W), "valid": (T, 1, H, W)}``.

    ``flow[t]`` is the exact forward flow t -> t+1 in pixels; ``valid`` is 0 where the point is
    occluded in frame t+1 or leaves the frame. Item i comes from ``Generator().manual_seed(seed *
    1_000_003 + i)``.
    """

    def __init__(self, length: int, config: SyntheticFlowConfig | None = None, seed: int = 0) -> None:
        super().__init__(length, seed)
        self.config = config or SyntheticFlowConfig()
        self.images = ImageTextures(self.config.image_dir) if self.config.image_dir is not None else None

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        generator = self.generator(index)
        cfg = self.config
        layers = self.scene(generator)
        frames, layer_index = render_frames(layers, range(cfg.frames), cfg.height, cfg.width)
        flow, valid = flows_from_index(layers, layer_index)
        if cfg.photometric_noise > 0:
            noise = torch.randn(frames.shape, generator=generator)
            frames = (frames + cfg.photometric_noise * noise).clamp_(0.0, 1.0)
        return {"frames": frames, "flow": flow, "valid": valid}

    def texture(self, generator: torch.Generator, height: int, width: int) -> Tensor:
        """A layer texture: a photo crop when ``image_dir`` is set, else a procedural texture."""
        if self.images is not None:
            return self.images.sample(generator, height, width)
        return procedural_texture(generator, height, width)

    def scene(self, generator: torch.Generator) -> list[Layer]:
        """Background plus a random number of foreground layers, back to front."""
        cfg = self.config
        frame_center = ((cfg.width - 1) / 2, (cfg.height - 1) / 2)
        # A still camera, as in much real footage, with probability static_background (no draw when 0,
        # so configs without it keep their exact samples).
        still = cfg.static_background > 0 and float(torch.rand((), generator=generator)) < cfg.static_background
        moves = 0.0 if still else 1.0
        background_motion = random_motion(
            generator, frame_center, moves * cfg.background_translation, moves * cfg.background_rotation_deg,
            moves * cfg.background_scale, 0.0, cfg.translation_power,
        )
        layers = [
            covering_layer(
                background_motion, cfg.frames, cfg.height, cfg.width, lambda h, w: self.texture(generator, h, w)
            )
        ]
        low, high = cfg.foreground
        count = int(torch.randint(low, high + 1, (), generator=generator))
        for _ in range(count):
            layers.append(self.foreground_layer(generator))
        return layers

    def foreground_layer(self, generator: torch.Generator) -> Layer:
        """A textured superellipse at a random place and orientation with a random affine motion."""
        cfg = self.config
        u = torch.rand(6, generator=generator).tolist()
        small, large = cfg.foreground_size
        semi_x = (small + (large - small) * u[0]) * cfg.width / 2
        semi_y = (small + (large - small) * u[1]) * cfg.height / 2
        exponent = 0.8 + 3.2 * u[2]
        tex_w, tex_h = 2 * math.ceil(semi_x) + 3, 2 * math.ceil(semi_y) + 3
        tex_center = ((tex_w - 1) / 2, (tex_h - 1) / 2)
        center = ((0.1 + 0.8 * u[3]) * (cfg.width - 1), (0.1 + 0.8 * u[4]) * (cfg.height - 1))
        pose = affine(
            tex_center, translation=(center[0] - tex_center[0], center[1] - tex_center[1]), rotation=2 * math.pi * u[5]
        )
        motion = random_motion(
            generator, center, cfg.max_translation, cfg.max_rotation_deg, cfg.max_scale, cfg.max_shear, cfg.translation_power
        )
        texture = self.texture(generator, tex_h, tex_w)
        return Layer(texture, superellipse_mask(tex_h, tex_w, semi_x, semi_y, exponent), pose, motion)
