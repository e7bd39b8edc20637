"""Hand-made inputs shared by the flow, loss and benchmark tests (frames, flows, ground-truth files)."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import logging
import math
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

import av
import cv2
import numpy as np
import torch
from torchvision.io import write_png

from hidden2stream_experiments.cli import run_cli
from hidden2stream.data.textures import procedural_texture
from hidden2stream.flow.warp import backward_warp, pixel_grid

REPO = Path(__file__).resolve().parent.parent


def load_script(folder: str, name: str) -> ModuleType:
    """Import ``REPO/folder/name.py`` (an experiment or benchmark script) as a module, with its own
    folder on ``sys.path`` while it loads so it can import its sibling scripts."""
    spec = importlib.util.spec_from_file_location(f"{folder}_{name}", REPO / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(REPO / folder))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / folder))
    return module


class ScriptResult(NamedTuple):
    """What a script run gave: exit status, standard output, standard error (log lines included)."""

    returncode: int
    stdout: str
    stderr: str


def run_script(folder: str, name: str, argv: list[str], cwd: Path) -> ScriptResult:
    """Run ``REPO/folder/name.py`` with ``argv`` as its command line does (through :func:`run_cli`),
    in this process, from ``cwd``: the same one-line error handling as ``python name.py ...`` without
    starting Python and importing torch again (seconds per call). Log records are written to the
    captured standard error, as the command line's logging would."""
    module = load_script(folder, name)
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    root = logging.getLogger()
    level, previous = root.level, Path.cwd()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    code = 0
    try:
        os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            run_cli(module.main, argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os.chdir(previous)
        root.removeHandler(handler)
        root.setLevel(level)
    return ScriptResult(code, out.getvalue(), err.getvalue())


def write_video(path: Path, frames: int, level: int = 128, size: int = 32) -> Path:
    """An mp4 of ``frames`` frames of ``size`` x ``size`` pixels, all of grey ``level`` but for a small
    square moving right one pixel per frame (so consecutive frames differ)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        for t in range(frames):
            image = np.full((size, size, 3), level, dtype=np.uint8)
            image[4:8, t % (size - 4):t % (size - 4) + 4] = 255 - level
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


LEVEL_STEP = 6  # grey level of frame t of write_counter_video: LEVEL_STEP * t


def write_counter_video(path: Path, frames: int, size: int = 32) -> Path:
    """A video whose frame t is uniformly grey at level ``LEVEL_STEP * t``: its frames say their number."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = size, size, "yuv420p"
        for t in range(frames):
            image = np.full((size, size, 3), LEVEL_STEP * t, dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path


def smooth_texture(
    height: int, width: int, dx: float = 0.0, dy: float = 0.0, frequency: float = 1.0
) -> torch.Tensor:
    """RGB texture (3, H, W) in [0, 1] of low-frequency sinusoids, sampled at (x - dx, y - dy)."""
    grid = pixel_grid(height, width, dtype=torch.float64)
    x, y = (grid[0] - dx) * frequency, (grid[1] - dy) * frequency
    channels = [
        0.5
        + 0.2 * torch.sin(0.31 * x + 0.17 * y + phase)
        + 0.2 * torch.cos(0.13 * x - 0.29 * y + 2 * phase)
        for phase in (0.0, 1.0, 2.0)
    ]
    return torch.stack(channels).float()


def constant_flow(n: int, height: int, width: int, u: float, v: float) -> torch.Tensor:
    flow = torch.empty(n, 2, height, width)
    flow[:, 0], flow[:, 1] = u, v
    return flow


def write_frame_png(path, frame: torch.Tensor) -> None:
    """Write an RGB uint8 frame ``(3, H, W)`` as an 8-bit PNG (creating parent folders)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_png(frame, str(path))


def write_kitti_flow_png(path, u, v, valid) -> None:
    """Write a KITTI flow PNG by hand, as the KITTI devkit does with OpenCV: 16-bit, channels
    (u * 64 + 2^15, v * 64 + 2^15, valid) in RGB order, i.e. reversed for cv2's BGR."""
    rgb = np.stack([np.asarray(u, np.float64) * 64 + 2**15, np.asarray(v, np.float64) * 64 + 2**15,
                    np.asarray(valid, np.float64)], axis=-1)
    assert (rgb == rgb.round()).all() and rgb.min() >= 0 and rgb.max() < 2**16  # exactly representable
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1].astype(np.uint16)))


def write_flo_by_hand(path, width: int, height: int, values: list[float]) -> None:
    """A .flo file written by hand: magic (float32), width, height (int32), then u, v interleaved
    row by row."""
    path.write_bytes(np.float32(202021.25).tobytes() + np.array([width, height], np.int32).tobytes()
                     + np.array(values, np.float32).tobytes())


def random_frame(height: int, width: int, seed: int) -> torch.Tensor:
    """A uint8 RGB noise frame ``(3, H, W)``."""
    return torch.randint(0, 256, (3, height, width), generator=torch.Generator().manual_seed(seed),
                         dtype=torch.uint8)


def make_middlebury(folder, frame1, frame2, u: float, v: float) -> None:
    """A Middlebury-layout pair folder with constant flow (u, v) and the top-left pixel unknown."""
    height, width = frame1.shape[-2:]
    write_frame_png(folder / "frame1.png", frame1)
    write_frame_png(folder / "frame2.png", frame2)
    values = np.tile(np.array([u, v], np.float32), height * width)
    values[:2] = [1e10, 1e10]
    write_flo_by_hand(folder / "flow.flo", width, height, values.tolist())


def make_kitti(root, stem: str, frame1, frame2, u: float, v: float) -> None:
    """A KITTI-layout pair: image_2/STEM_10.png, _11.png, flow_occ/STEM_10.png with constant flow
    (u, v) and the bottom-right pixel invalid."""
    height, width = frame1.shape[-2:]
    write_frame_png(root / "image_2" / f"{stem}_10.png", frame1)
    write_frame_png(root / "image_2" / f"{stem}_11.png", frame2)
    valid = np.ones((height, width))
    valid[-1, -1] = 0
    write_kitti_flow_png(root / "flow_occ" / f"{stem}_10.png", np.full((height, width), u),
                         np.full((height, width), v), valid)


def load(folder: str, name: str):
    """A benchmark or experiment script as a module (:func:`load_script`)."""
    return load_script(folder, name)


def positive(value) -> bool:
    """A finite number > 0 (a figure a benchmark reports)."""
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def one_clip(tmp_path: Path, clips_dir: Path) -> Path:
    """A folder holding one real shared clip (a link)."""
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "carphone_lowbitrate.mp4").symlink_to(clips_dir / "carphone_lowbitrate.mp4")
    return folder


def assert_machine(machine: dict) -> None:
    """A benchmark's machine description names the CPU, its cores and threads."""
    assert machine["cores"] >= 1 and machine["torch_threads"] >= 1 and machine["cpu"]


def translated_pair(shift: tuple[float, float], height: int = 96, width: int = 128, seed: int = 0):
    """A textured frame, the same frame moved by ``shift`` (u, v) px, and that constant flow."""
    frame1 = procedural_texture(torch.Generator().manual_seed(seed), height, width)[None]
    flow = torch.tensor(shift).view(1, 2, 1, 1).expand(1, 2, height, width).contiguous()
    frame2 = backward_warp(frame1, -flow)[0]  # frame2(x) = frame1(x - shift): frame1(x) = frame2(x + shift)
    return frame1, frame2, flow
