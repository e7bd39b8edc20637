"""SyntheticActionDataset: classes are (appearance, motion) pairs, so only a fused two-stream model solves it.

A coloured, patterned object (the appearance, e.g. red stripes) moves with the class motion (e.g.
"right") over a grey-ish procedural background that drifts at random. Appearance and motion are
drawn independently of everything else, so one frame tells the appearance but not the motion, and
the flow tells the motion but not the appearance. Items are TSN clips: K windows of T+1 frames at
random offsets within K equal segments of a ``clip_frames``-long clip.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from hidden2stream.data.actions import RESIZE_FACTOR, TEST_CROPS, eval_flow_views, eval_views
from hidden2stream.data.flow_cache import FlowCache
from hidden2stream.data.layers import (Layer, SeededDataset, affine, covering_layer, pixel_grid, render_frames,
                                      superellipse_mask)
from hidden2stream.data.sampling import evenly_spaced_starts
from hidden2stream.data.textures import procedural_texture

APPEARANCES: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("red-stripes", (0.9, 0.12, 0.1)),
    ("green-dots", (0.1, 0.8, 0.15)),
    ("blue-checker", (0.15, 0.3, 0.95)),
    ("yellow-rings", (0.95, 0.85, 0.1)),
    ("magenta-waves", (0.85, 0.15, 0.85)),
    ("cyan-grid", (0.1, 0.8, 0.85)),
)
MOTIONS = ("right", "left", "up", "down", "rotate_cw", "rotate_ccw", "zoom_in", "zoom_out")
DIRECTIONS = {"right": (1.0, 0.0), "left": (-1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
DARK_TONE = 0.45  # the pattern alternates between the colour and this fraction of it
MAX_ZOOM = 2.0  # scale change over a whole clip at the top speed


@dataclass
class SyntheticActionConfig:
    """Clip geometry and class set; speeds in pixels per frame."""

    segments: int = 3  # K windows per item
    frames: int = 6  # T+1 frames per window
    height: int = 64
    width: int = 64
    appearances: int = 3  # the first n of APPEARANCES
    motions: int = 4  # the first n of MOTIONS
    speed: tuple[float, float] = (1.5, 3.0)
    clip_frames: int = 16  # length of the clip the K windows are sampled from
    object_size: tuple[float, float] = (0.12, 0.2)  # object semi-axes as a fraction of min(H, W)
    background_drift: float = 0.5  # max background translation, pixels per frame

    def __post_init__(self) -> None:
        if self.segments < 1 or self.frames < 2:
            raise ValueError(f"need segments >= 1 and frames >= 2, got {self.segments} and {self.frames}")
        if self.clip_frames < self.frames:
            raise ValueError(f"clip_frames ({self.clip_frames}) must be >= frames per window ({self.frames})")
        if not 1 <= self.appearances <= len(APPEARANCES):
            raise ValueError(f"appearances must be in 1..{len(APPEARANCES)}, got {self.appearances}")
        if not 1 <= self.motions <= len(MOTIONS):
            raise ValueError(f"motions must be in 1..{len(MOTIONS)}, got {self.motions}")
        if not 0 < self.speed[0] <= self.speed[1]:
            raise ValueError(f"speed must be (min, max) with 0 < min <= max, got {self.speed}")
        if not 0 < self.object_size[0] <= self.object_size[1] <= 0.3:
            raise ValueError(f"object_size must be fractions 0 < min <= max <= 0.3, got {self.object_size}")
        side = min(self.height, self.width)
        room = side - 1 - self.object_size[1] * side
        path = self.speed[1] * (self.clip_frames - 1)
        if path > room:
            raise ValueError(
                f"an object at {self.speed[1]} px/frame travels {path:.0f} px over {self.clip_frames} frames, "
                f"more than the {room:.0f} px that fit in a {self.height}x{self.width} frame: "
                "lower speed or clip_frames"
            )


def pattern(style: str, height: int, width: int, period: float, phase: float) -> Tensor:
    """A smooth two-tone pattern ``(H, W)`` in ``[0, 1]`` (1 = colour, 0 = dark tone) of ``period`` px."""
    pixels = pixel_grid(height, width)
    x = (pixels[..., 0] - (width - 1) / 2) * (2 * math.pi / period) + phase
    y = (pixels[..., 1] - (height - 1) / 2) * (2 * math.pi / period) + phase
    if style == "stripes":
        wave = torch.sin(x)
    elif style == "dots":
        wave = torch.cos(x) + torch.cos(y) - 1.0
    elif style == "checker":
        wave = torch.sin(x) * torch.sin(y)
    elif style == "rings":
        wave = torch.sin(torch.sqrt((x - phase) ** 2 + (y - phase) ** 2) + phase)
    elif style == "waves":
        wave = torch.sin(x + 1.5 * torch.sin(0.5 * y))
    elif style == "grid":
        wave = torch.cos(x).abs().maximum(torch.cos(y).abs()) - 0.85
    else:
        raise ValueError(f"unknown pattern style {style!r}")
    return 0.5 + 0.5 * torch.tanh(4.0 * wave)


class SyntheticActionDataset(SeededDataset):
    """Items ``{"frames": (K, T+1, 3, H, W) in [0, 1], "label": long ()}``.

    ``label = appearance * motions + motion`` and ``label = i % num_classes`` (balanced); the rest
    of item i comes from ``Generator().manual_seed(seed * 1_000_003 + i)``.

    Test protocols (as :class:`~hidden2stream.data.actions.ActionVideoDataset`'s test items): with
    ``test_windows`` the K windows are that many evenly spaced starts over the clip instead of
    the TSN offsets; with ``test_crops="multi"`` or ``test_flip`` items are views
    ``(V, K, T+1, 3, H, W)``. Multi-crop renders the scene on a canvas 1.15x larger (object size
    and speeds in pixels as in training; a new scene, since textures are drawn per size) and cuts
    the centre and four corner crops. Flipping mirrors the motion: "right" becomes "left", and
    clockwise rotation counter-clockwise, so flipped views show another class's motion.

    With a ``flow_cache`` (:class:`~hidden2stream.data.flow_cache.FlowCache`, the two-stage model's
    classical flow) items also hold ``"flows"`` ``(K, T, 2, H, W)`` (views: ``(V, K, T, 2, H, W)``):
    the forward flows between consecutive frames of each rendered window, computed once per item
    (keyed by the rendered config, seed, test windows and index: an item is the same every time),
    then cut into views as the frames (a flipped view negates u).
    """

    def __init__(self, length: int, config: SyntheticActionConfig | None = None, seed: int = 0,
                 test_windows: int | None = None, test_crops: str = "centre", test_flip: bool = False,
                 flow_cache: FlowCache | None = None) -> None:
        super().__init__(length, seed)
        if test_crops not in TEST_CROPS:
            raise ValueError(f"test crops must be 'centre' or 'multi', got {test_crops!r}")
        if test_windows is not None and test_windows < 1:
            raise ValueError(f"test_windows must be >= 1, got {test_windows}")
        self.config = config or SyntheticActionConfig()
        self.test_windows, self.test_crops, self.test_flip = test_windows, test_crops, test_flip
        self.flow_cache = flow_cache
        self.render = self.config if test_crops == "centre" else self._canvas(self.config)
        self.num_classes = self.config.appearances * self.config.motions
        self.class_names = [
            f"{APPEARANCES[a][0]}/{MOTIONS[m]}" for a in range(self.config.appearances) for m in range(self.config.motions)
        ]

    @staticmethod
    def _canvas(config: SyntheticActionConfig) -> SyntheticActionConfig:
        """The config of the larger canvas multi-crop views are cut from (same pixel geometry)."""
        height, width = round(RESIZE_FACTOR * config.height), round(RESIZE_FACTOR * config.width)
        shrink = min(config.height, config.width) / min(height, width)
        low, high = config.object_size
        return dataclasses.replace(config, height=height, width=width, object_size=(low * shrink, high * shrink))

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        generator = self.generator(index)
        cfg = self.render
        label = index % self.num_classes
        appearance, motion = divmod(label, cfg.motions)
        layers = [self.background(generator), self.moving_object(generator, appearance, MOTIONS[motion])]
        starts = self.window_starts(generator)
        if self.test_windows is not None:
            starts = torch.tensor(evenly_spaced_starts(cfg.clip_frames, self.test_windows, cfg.frames))
        times = (starts[:, None] + torch.arange(cfg.frames)).flatten().tolist()
        frames, _ = render_frames(layers, times, cfg.height, cfg.width)
        clip = frames.view(len(starts), cfg.frames, 3, cfg.height, cfg.width)
        item = {"frames": clip, "label": torch.tensor(label, dtype=torch.long)}
        if self.flow_cache is not None:
            key = f"synthetic-actions {cfg!r} seed={self.seed} test_windows={self.test_windows} index={index}"
            item["flows"] = self.flow_cache.item_flows(key, clip)
        if cfg is not self.config or self.test_flip:
            size = (self.config.height, self.config.width)
            item["frames"] = eval_views(clip, size, self.test_crops, self.test_flip)
            if "flows" in item:
                item["flows"] = eval_flow_views(item["flows"], size, self.test_crops, self.test_flip)
        return item

    def window_starts(self, generator: torch.Generator) -> Tensor:
        """TSN: one window start at a random offset within each of K equal segments of the clip."""
        cfg = self.config
        choices = cfg.clip_frames - cfg.frames + 1
        offsets = torch.rand(cfg.segments, generator=generator)
        starts = ((torch.arange(cfg.segments) + offsets) * (choices / cfg.segments)).long()
        return starts.clamp_(max=choices - 1)

    def background(self, generator: torch.Generator) -> Layer:
        """A grey-ish procedural background drifting by at most ``background_drift`` px per frame."""
        cfg = self.render
        direction, length = torch.rand(2, generator=generator).tolist()
        drift = cfg.background_drift * length
        angle = 2 * math.pi * direction
        motion = affine((0.0, 0.0), translation=(drift * math.cos(angle), drift * math.sin(angle)))

        def grey(height: int, width: int) -> Tensor:
            texture = procedural_texture(generator, height, width)
            return 0.3 + 0.4 * (0.85 * texture.mean(dim=0, keepdim=True) + 0.15 * texture)

        return covering_layer(motion, cfg.clip_frames, cfg.height, cfg.width, grey)

    def moving_object(self, generator: torch.Generator, appearance: int, motion: str) -> Layer:
        """The class object: a patterned superellipse whose path over the clip stays mostly in frame."""
        cfg = self.render
        side = min(cfg.height, cfg.width)
        u = torch.rand(9, generator=generator).tolist()
        low, high = cfg.object_size
        semi_x, semi_y = (low + (high - low) * u[0]) * side, (low + (high - low) * u[1]) * side
        radius = max(semi_x, semi_y)
        speed = cfg.speed[0] + (cfg.speed[1] - cfg.speed[0]) * u[2]
        steps = cfg.clip_frames - 1

        name, colour = APPEARANCES[appearance]
        tex_w, tex_h = 2 * math.ceil(semi_x) + 3, 2 * math.ceil(semi_y) + 3
        tone = pattern(name.split("-")[1], tex_h, tex_w, period=5.0 + 4.0 * u[3], phase=2 * math.pi * u[4])
        rgb = torch.tensor(colour).view(3, 1, 1)
        shade = 0.85 + 0.3 * (procedural_texture(generator, tex_h, tex_w).mean(dim=0, keepdim=True) - 0.5)
        texture = (rgb * (DARK_TONE + (1 - DARK_TONE) * tone) * shade).clamp_(0.0, 1.0)
        alpha = superellipse_mask(tex_h, tex_w, semi_x, semi_y, exponent=1.5 + 2.5 * u[5])

        def uniform(lo: float, hi: float, v: float) -> float:
            return lo + (hi - lo) * v

        scale = 1.0
        if motion in DIRECTIONS:
            dx, dy = DIRECTIONS[motion]
            path = (speed * steps * dx, speed * steps * dy)
            center = tuple(
                uniform(radius / 2 + max(0.0, -p), size - 1 - radius / 2 - max(0.0, p), v)
                for p, size, v in zip(path, (cfg.width, cfg.height), u[6:8])
            )
            step = affine(center, translation=(speed * dx, speed * dy))
        else:
            margin = radius * math.sqrt(MAX_ZOOM) if motion.startswith("zoom") else radius
            center = (uniform(margin, cfg.width - 1 - margin, u[6]), uniform(margin, cfg.height - 1 - margin, u[7]))
            if motion.startswith("rotate"):
                spin = speed / radius * (1.0 if motion == "rotate_cw" else -1.0)
                step = affine(center, rotation=spin)
            else:
                rate = math.log(MAX_ZOOM) * speed / cfg.speed[1] / steps
                rate = rate if motion == "zoom_in" else -rate
                scale = math.exp(-rate * steps / 2)  # the clip's middle frame is at scale 1
                step = affine(center, scale=math.exp(rate))
        tex_center = ((tex_w - 1) / 2, (tex_h - 1) / 2)
        pose = affine(
            tex_center,
            translation=(center[0] - tex_center[0], center[1] - tex_center[1]),
            rotation=2 * math.pi * u[8],
            scale=scale,
        )
        return Layer(texture, alpha, pose, step)
