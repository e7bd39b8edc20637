"""MotionNet flow of a frame pair or a whole video at a chosen working size, written as files.

The job behind ``experiments/flow.py`` (:class:`FlowOptions` -> :func:`run`). The model sees the frames
at a *working size* (``--size HxW``, or the native size with its longer side capped by ``--max-side``);
MotionNet pads its input to a multiple of 32 itself (replicate padding, cropped off after), so any
working size is valid.

Units: every flow written (``.flo`` and its PNG picture) is rescaled to the source's native size
in native pixels: the working-size flow is resized bilinearly and u, v are multiplied by
``W / w`` and ``H / h`` (:func:`to_native`), so a ``.flo`` of a video matches the video's pixels
whatever working size computed it. The ``--write-video`` tiles show the working-size flow.

Files: ``flow_00012.flo`` (and ``.png``) is the forward flow from frame 12 to frame
``12 + stride`` (channel 0 = x, pixels).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hidden2stream.data.video import probe_video, read_frames_uint8
from hidden2stream.errors import UserError, VideoError
from hidden2stream.flow.io import write_flo
from hidden2stream.flow.predict import pair_flow, window_flows, window_length
from hidden2stream.flow.visualize import flow_to_rgb, frame_and_flow, save_png
from hidden2stream.images import read_rgb
from hidden2stream.options import existing_path, image_size, option, options_check, positive_int
from hidden2stream.pretrained import load_flow_model
from hidden2stream.models.motionnet import upsample_flow
from hidden2stream.progress import Progress
from hidden2stream.runtime import Runtime, RuntimeOptions
from hidden2stream.video_writer import VideoWriter, check_output, display_size

#: Frames decoded per read at most: a chunk is read in pieces of this span, each decoded from
#: the keyframe before it, which bounds the memory of a large ``stride``.
READ_SPAN = 256


@dataclass(frozen=True)
class FlowOptions(RuntimeOptions):
    """The options of ``flow.py``: one of ``video`` / ``pair``; ``checkpoint`` or shipped ``weights``; ``size`` or
    ``max_side`` (or neither: the native size)."""

    checkpoint: Path | None = option(None, "pretrain_motion.py or train_two_stream.py checkpoint", parse=existing_path)
    weights: str = option("default", "shipped MotionNet weights by name, used when no --checkpoint is given "
                          "(default: default)")
    video: Path | None = option(None, parse=existing_path)
    pair: tuple[Path, Path] | None = option(None, parse=existing_path, nargs=2, metavar=("FRAME0", "FRAME1"))
    out: Path = option(Path("flow_out"), parse=Path)
    size: tuple[int, int] | None = option(None, "working size N or HxW (default: native)", parse=image_size)
    max_side: int | None = option(None, "working size: the longer side at most N pixels, aspect kept (default: "
                                  "native)", parse=positive_int)
    stride: int = option(1, "video: frames between the two frames of a flow", parse=positive_int)
    batch: int = option(8, "video: windows per forward pass", parse=positive_int)
    max_flows: int = option(100, "video: flows to write at most", parse=positive_int)
    no_png: bool = option(False, "write .flo files only")
    write_video: Path | None = option(None, "video: also write frame | flow side by side, 480 px on the longer side "
                                      "and at least 320 px tall (.mp4/.mkv/.mov, or a folder for PNG frames)",
                                      parse=Path, metavar="OUT.mp4")

    def check(self) -> None:
        """One line for options that do not go together (what a mutually exclusive choice refuses)."""
        if (self.video is None) == (self.pair is None):
            raise UserError("give one of --video and --pair")
        if self.checkpoint is not None and self.weights != "default":
            raise UserError("--checkpoint and --weights name two models: give one")
        if self.size is not None and self.max_side is not None:
            raise UserError("--size and --max-side both set the working size: give one")
        if self.write_video is not None:
            if self.pair is not None:
                raise UserError("--write-video needs --video")
            options_check("--write-video", check_output, self.write_video)


def run(options: FlowOptions) -> int:
    """Write the flows (and pictures, and the frame | flow video) the options ask for; returns how many."""
    options.check()
    runtime = options.resolve()
    model = runtime.prepare(load_flow_model(options.checkpoint or options.weights, pair=options.pair is not None))
    options.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    if options.pair is not None:
        written = write_pair_flow(model, tuple(options.pair), options.out, runtime, options.size, options.max_side,
                                  png=not options.no_png)
    else:
        written = write_video_flows(model, options.video, options.out, runtime, options.size, options.max_side,
                                    options.stride, options.batch, options.max_flows, png=not options.no_png,
                                    video=options.write_video)
    rate = written / (time.perf_counter() - began)
    print(f"wrote {written} flow{'s' if written != 1 else ''} to {options.out}/ ({rate:.3g} pairs/s)")
    if options.write_video:
        print(f"wrote {written} frames of frame | flow to {options.write_video}")
    return written


def working_size(height: int, width: int, size: tuple[int, int] | None = None,
                 max_side: int | None = None) -> tuple[int, int]:
    """``size`` when given; else ``(height, width)``, scaled down (aspect kept) so that the longer
    side is at most ``max_side`` (never scaled up)."""
    if size is not None:
        return size
    if max_side is None or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def to_native(flow: Tensor, size: tuple[int, int]) -> Tensor:
    """Flow ``(2, h, w)`` in pixels of its own size -> ``(2, H, W)`` in pixels of ``size`` = ``(H, W)``
    (bilinear resize, u times ``W / w``, v times ``H / h``)."""
    if tuple(flow.shape[-2:]) == tuple(size):
        return flow
    return upsample_flow(flow[None, None], size)[0, 0]


def _resize(frame: Tensor, size: tuple[int, int]) -> Tensor:
    if tuple(frame.shape[-2:]) == tuple(size):
        return frame
    return F.interpolate(frame[None], size=size, mode="bilinear", antialias=True)[0]


def save_flow(out: Path, index: int, flow: Tensor, png: bool) -> None:
    """``out/flow_{index:05d}.flo`` (and ``.png``, the flow's colours) for a flow ``(2, H, W)``."""
    name = out / f"flow_{index:05d}"
    write_flo(name.with_suffix(".flo"), flow)
    if png:
        save_png(flow_to_rgb(flow), name.with_suffix(".png"))


def write_pair_flow(model: nn.Module, paths: tuple[Path, Path], out: Path, runtime: Runtime,
                    size: tuple[int, int] | None = None, max_side: int | None = None, png: bool = True) -> int:
    """The flow from image ``paths[0]`` to ``paths[1]`` (one size), computed at the working size and
    written at the native size as ``out/flow_00000.flo``; returns 1."""
    first, second = (read_rgb(p) for p in paths)
    if first.shape != second.shape:
        raise UserError(f"{paths[0]} and {paths[1]} differ in size")
    native = (first.shape[1], first.shape[2])
    work = working_size(*native, size, max_side)
    flow = pair_flow(model, _resize(first, work), _resize(second, work), runtime)
    save_flow(out, 0, to_native(flow, native), png)
    return 1


def flow_count(path: Path, num_frames: int, stride: int, max_flows: int | None) -> int:
    """Flows of a ``num_frames`` video at ``stride`` (frame k*stride -> (k+1)*stride), at most
    ``max_flows``; :class:`VideoError` when there is none."""
    count = (num_frames - 1) // stride
    if count < 1:
        apart = f" {stride} frames apart" if stride > 1 else ""
        raise VideoError(f"{path} has {num_frames} frame{'s' if num_frames != 1 else ''}: "
                         f"a flow{apart} needs at least {stride + 1}")
    return count if max_flows is None else min(count, max_flows)


def read_strided(path: Path, first: int, count: int, stride: int, size: tuple[int, int] | None) -> Tensor:
    """Frames ``first, first + stride, ...`` (``count`` of them) as float ``(count, 3, h, w)`` in [0, 1]."""
    per_read = max(1, READ_SPAN // stride)
    pieces = []
    for k in range(0, count, per_read):
        n = min(per_read, count - k)
        pieces.append(read_frames_uint8(path, first + k * stride, (n - 1) * stride + 1, size)[::stride])
    return torch.from_numpy(np.concatenate(pieces)).permute(0, 3, 1, 2).float().div_(255.0)


def video_flows(model: nn.Module, path: Path, runtime: Runtime, size: tuple[int, int] | None = None,
                stride: int = 1, batch: int = 8, max_flows: int | None = None) -> Iterator[tuple[int, Tensor, Tensor]]:
    """Yield ``(i, frame i (3, h, w), flow i -> i + stride (2, h, w))`` for i = 0, stride, 2 stride, ...

    At the working ``size`` (None: native), in working-size pixels. Sampled frames are cut into
    the model's windows (:func:`~hidden2stream.flow.predict.window_flows`) and ``batch`` windows
    run per forward pass; frames are decoded a chunk of ``batch`` windows at a time.
    """
    total = flow_count(path, probe_video(path).num_frames, stride, max_flows)
    per_chunk = batch * (window_length(model) - 1)
    for start in range(0, total, per_chunk):
        count = min(per_chunk, total - start)
        frames = read_strided(path, start * stride, count + 1, stride, size)
        flows = window_flows(model, frames, runtime, batch_size=batch)
        for j in range(count):
            yield (start + j) * stride, frames[j], flows[j]


def write_video_flows(model: nn.Module, path: Path, out: Path, runtime: Runtime,
                      size: tuple[int, int] | None = None, max_side: int | None = None, stride: int = 1,
                      batch: int = 8, max_flows: int | None = None, png: bool = True,
                      video: Path | None = None) -> int:
    """Write the flows of :func:`video_flows` at the native size (:func:`save_flow`) and, with
    ``video``, frame | flow tiles at :func:`~hidden2stream.video_writer.display_size` (playing at
    the video's frame rate / stride); returns the number of flows."""
    info = probe_video(path)
    native = (info.height, info.width)
    work = working_size(*native, size, max_side)
    total = flow_count(path, info.num_frames, stride, max_flows)
    shown = display_size(*work)
    writer = VideoWriter(video, info.fps / stride) if video is not None else contextlib.nullcontext()
    with Progress(total, "flow", unit="pair") as bar, writer:
        for index, frame, flow in video_flows(model, path, runtime, None if work == native else work,
                                              stride, batch, total):
            save_flow(out, index, to_native(flow, native), png)
            if video is not None:
                writer.write(frame_and_flow(frame, flow, shown))
            bar.update()
    return total
