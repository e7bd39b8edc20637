"""Video -> label speed: the hidden two-stream network against the two-stage TV-L1 pipeline, same windows.

    python benchmarks/video_speed.py [--clips DIR] [--sizes 224,native] [--frames 11] [--segments 3]
                                     [--motion tiny,paper] [--streams auto] [--hidden stacked,branched]
                                     [--repeats 3] [--native-repeats 1] [--warmup 1] [--workers N]
                                     [--onnx auto] [--device auto] [--amp auto] [--channels-last auto]
                                     [--compile] [--out benchmarks/results]

Every pipeline classifies the same videos from the same windows: ``--segments`` windows of
``--frames`` frames per video at the centres of its K segments (TSN test sampling), at 224x224
(shorter side resized in the decoder, centre crop) and at each clip's native size.

* **hidden two-stream**: ``hidden_two_stream`` with random weights (speed does not depend on them):
  MotionNet (``--motion``: tiny, paper) stacked onto a temporal CNN, or branched from its encoder,
  plus the spatial CNN, late fusion. Streams (``--streams auto``): tiny for MotionNet-tiny and -corr,
  ResNet-18 for the paper-size MotionNet. With ONNX Runtime installed, each network also runs
  exported to ONNX (``-ort`` rows, fp32, CPU).
* **two-stage**: OpenCV TV-L1 flow of the same windows pair by pair (``hidden2stream.flow.parallel``:
  one single-threaded process per core, ``--workers``), then the same temporal CNN on the TV-L1 flow
  stack (``flow_to_stack``) plus the spatial CNN. The TV-L1 stage is timed once per clip and shared
  by the two-stage rows of every stream size.

Decoding (PyAV ``read_frames``) is timed once per clip and repeat and included in every row (it is
the same work for every pipeline); it is also reported apart. Each repeat runs every pipeline on
every clip in turn after ``--warmup`` untimed passes of the networks (TV-L1 has nothing to warm up:
its worker processes are started before). Per-video latency = mean over the videos of (decode +
compute), videos/s = videos / total time, both medians over the repeats. The two-stage pipeline's
flow storage is measured by writing its TV-L1 flows as TSN's JPEG pairs (u, v clipped to [-20, 20]
px -> 0..255 grayscale, ``cv2.imwrite``, quality 95) and scaled to one hour at each clip's fps; the
hidden stream stores nothing. A broken or too-short video is skipped with a log line. Writes
``video_speed.json`` and ``video_speed.md`` to ``--out``.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from benchmarks.common import (add_onnx_option, comma_choices, machine_info, machine_line, median, onnx_rows,
                               run_benchmark, timed)
from benchmarks.flow_speed import sizes_arg
from hidden2stream.options import existing_dir, frame_count, non_negative_int, positive_int
from hidden2stream_experiments.cli import OneLineParser, run_cli
from hidden2stream_experiments.parsing import argparse_type
from hidden2stream.data.clips import centre_crop
from hidden2stream.data.sampling import segment_starts
from hidden2stream.data.video import probe_video, read_frames, scaled_size
from hidden2stream.errors import UserError, VideoError
from hidden2stream.flow.parallel import FlowPool
from hidden2stream.models.hidden import HIDDEN_KINDS, flow_to_stack
from hidden2stream.models.motionnet import MOTIONNETS
from hidden2stream.models.streams import STREAM_ARCHS
from hidden2stream.models.two_stream import HiddenTwoStream, hidden_two_stream
from hidden2stream.paths import shared_data
from hidden2stream.evaluation.report import markdown_table
from hidden2stream.runtime import Runtime, RuntimeOptions
from hidden2stream_experiments.parsing import add_options

log = logging.getLogger("video_speed")

FLOW_BOUND = 20.0  # TSN / dense_flow: u and v clipped to [-20, 20] px, mapped to 0..255
JPEG_QUALITY = 95  # OpenCV's default, what dense_flow's cv::imwrite writes
DEFAULT_STREAMS = {"tiny": "tiny", "corr": "tiny", "recurrent": "tiny", "paper": "resnet18"}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--clips", type=argparse_type(existing_dir), default=shared_data("clips"), help="folder of videos")
    p.add_argument("--sizes", type=sizes_arg, default=["224", "native"],
                   help="comma list: N (shorter side resized, NxN centre crop) and/or native")
    p.add_argument("--frames", type=argparse_type(frame_count), default=11, help="frames per window (T+1)")
    p.add_argument("--segments", type=argparse_type(positive_int), default=3, help="windows per video (TSN segments)")
    p.add_argument("--motion", type=comma_choices(list(MOTIONNETS), "--motion"), default=["tiny", "paper"],
                   help="MotionNet sizes")
    p.add_argument("--streams", default="auto", choices=("auto",) + STREAM_ARCHS,
                   help="spatial and temporal CNNs (auto: tiny for MotionNet-tiny/corr, resnet18 for paper)")
    p.add_argument("--hidden", type=comma_choices(HIDDEN_KINDS, "--hidden"), default=list(HIDDEN_KINDS),
                   help="hidden stream kinds: stacked (MotionNet -> temporal CNN) and/or branched")
    p.add_argument("--classes", type=argparse_type(positive_int), default=101, help="classes of the heads (UCF101: 101)")
    p.add_argument("--repeats", type=argparse_type(positive_int), default=3, help="timed repeats at square sizes (median)")
    p.add_argument("--native-repeats", type=argparse_type(positive_int), default=1, help="timed repeats at native size")
    p.add_argument("--warmup", type=argparse_type(non_negative_int), default=1, help="untimed passes before the timed repeats")
    p.add_argument("--workers", type=argparse_type(positive_int), default=os.cpu_count() or 1,
                   help="TV-L1 processes (default: one per core)")
    add_onnx_option(p)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output folder")
    add_options(p, RuntimeOptions)
    return p


class Clip:
    """A readable video and its windows: ``starts`` (one per segment) of ``frames`` frames, decoded at
    ``decode_size`` ``(H, W)`` (None: native) and centre-cropped to ``crop`` x ``crop`` (None: not)."""

    def __init__(self, path: Path, starts: list[int], frames: int, decode_size: tuple[int, int] | None,
                 crop: int | None, fps: float, num_frames: int) -> None:
        self.name, self.path, self.starts, self.frames = path.name, path, starts, frames
        self.decode_size, self.crop, self.fps, self.num_frames = decode_size, crop, fps, num_frames

    def decode(self) -> torch.Tensor:
        """The windows ``(K, T+1, 3, H, W)`` in [0, 1]."""
        windows = torch.stack([read_frames(self.path, s, self.frames, self.decode_size) for s in self.starts])
        return windows if self.crop is None else centre_crop(windows, (self.crop, self.crop)).contiguous()


def load_clips(folder: Path, size: str, frames: int, segments: int) -> list[Clip]:
    """Every video of ``folder`` whose ``segments`` windows decode; the others are skipped with a log line."""
    clips = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            info = probe_video(path)
            starts = segment_starts(info.num_frames, segments, frames)
            side = None if size == "native" else int(size)
            clip = Clip(path, starts, frames,
                        None if side is None else scaled_size(info.width, info.height, side), side,
                        info.fps, info.num_frames)
            clip.decode()  # a window past a truncation fails here, not in the timed loop
        except VideoError as exc:
            log.warning("skipping %s: %s", path.name, exc)
            continue
        clips.append(clip)
    if not clips:
        raise UserError(f"no video in {folder} holds {segments} decodable windows of {frames} frames")
    return clips


class TwoStageCNN(nn.Module):
    """The CNN half of the two-stage pipeline: the temporal stream on a precomputed flow stack plus the
    spatial stream on the centre frames, TSN consensus over the K windows, late fusion (as
    :class:`HiddenTwoStream`). Uses the streams of ``model`` (a stacked hidden two-stream network)."""

    def __init__(self, model: HiddenTwoStream) -> None:
        super().__init__()
        self.spatial = model.spatial
        self.temporal = model.hidden.temporal
        self.clip = model.hidden.clip
        self.temporal_weight = model.temporal_weight

    def forward(self, frames: torch.Tensor, flows: torch.Tensor) -> torch.Tensor:
        """``frames (B, K, T+1, 3, H, W)``, ``flows (B, K, T, 2, H, W)`` in pixels -> fused logits."""
        b, k, count = frames.shape[:3]
        spatial = self.spatial(frames[:, :, (count - 1) // 2].flatten(0, 1)).unflatten(0, (b, k)).mean(1)
        temporal = self.temporal(flow_to_stack(flows.flatten(0, 1), self.clip)).unflatten(0, (b, k)).mean(1)
        return (spatial + self.temporal_weight * temporal) / (1.0 + self.temporal_weight)


def flow_jpeg_bytes(flows: torch.Tensor, folder: Path, keep: bool = False) -> int:
    """Bytes of ``flows (..., 2, H, W)`` written as TSN's u/v grayscale JPEG pairs into ``folder``
    (``flow_x_00000.jpg``, ``flow_y_00000.jpg``, ...; removed after measuring unless ``keep``)."""
    total = 0
    pixels = ((flows.clamp(-FLOW_BOUND, FLOW_BOUND) + FLOW_BOUND) * (255.0 / (2 * FLOW_BOUND))).round()
    images = pixels.to(torch.uint8).reshape(-1, 2, *flows.shape[-2:]).numpy()
    for i, (u, v) in enumerate(images):
        for axis, image in (("x", u), ("y", v)):
            path = folder / f"flow_{axis}_{i:05d}.jpg"
            if not cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]):
                raise UserError(f"cannot write {path}")
            total += path.stat().st_size
            if not keep:
                path.unlink()
    return total


class Network:
    """A hidden two-stream row: the PyTorch model, and its ONNX Runtime session when asked for."""

    def __init__(self, key: str, motion: str, streams: str, hidden: str, model: nn.Module) -> None:
        self.key, self.motion, self.streams, self.hidden, self.model = key, motion, streams, hidden, model
        self.session = None
        self.ort_difference: float | None = None


def build_networks(args: argparse.Namespace, runtime: Runtime, onnx: bool, folder: Path) -> tuple[list[Network], dict]:
    """Hidden two-stream models per (MotionNet size, hidden kind), and the two-stage CNNs per streams."""
    networks, cnns = [], {}
    for motion in args.motion:
        streams = DEFAULT_STREAMS[motion] if args.streams == "auto" else args.streams
        for kind in args.hidden:
            torch.manual_seed(0)
            model = hidden_two_stream(args.classes, motion=motion, frames=args.frames, spatial_arch=streams,
                                      temporal_arch=streams, hidden=kind, segments=args.segments).eval()
            network = Network(f"hidden/{kind}/{motion}", motion, streams, kind, model)
            if onnx:
                from hidden2stream.export import TWO_STREAM_OUTPUTS, ExportableTwoStream, export_onnx, ort_session

                example = torch.rand(1, args.segments, args.frames, 3, 64, 64)
                path = export_onnx(ExportableTwoStream(model), example, folder / f"{kind}_{motion}.onnx",
                                   TWO_STREAM_OUTPUTS)
                network.session = ort_session(path)
            if kind == "stacked" and streams not in cnns:
                cnns[streams] = TwoStageCNN(model)
            networks.append(network)
        if streams not in cnns:  # only branched rows asked for: the two-stage rows still need the streams
            torch.manual_seed(0)
            cnns[streams] = TwoStageCNN(hidden_two_stream(args.classes, motion=motion, frames=args.frames,
                                                          spatial_arch=streams, temporal_arch=streams,
                                                          segments=args.segments).eval())
    compiled = []
    for network in networks:
        model = runtime.prepare(network.model).eval()
        network.model = torch.compile(model, dynamic=False) if runtime.compile else model
        compiled.append(network)
    cnns = {s: runtime.prepare(c).eval() for s, c in cnns.items()}
    if runtime.compile:
        cnns = {s: torch.compile(c, dynamic=False) for s, c in cnns.items()}
    return compiled, cnns


def ort_difference(network: Network, frames: torch.Tensor) -> float:
    """Max |ONNX Runtime - PyTorch fp32| over the three logits on one video."""
    from hidden2stream.export import TWO_STREAM_OUTPUTS, max_abs_difference

    model = getattr(network.model, "_orig_mod", network.model)
    reference = model.float()(frames.to(next(model.parameters()).device))
    return max(max_abs_difference(network.session, [reference[k] for k in TWO_STREAM_OUTPUTS], frames))


def time_size(clips: list[Clip], networks: list[Network], cnns: dict, pool: FlowPool, args: argparse.Namespace,
              runtime: Runtime, repeats: int, label: str) -> dict:
    """Time every pipeline on every clip: seconds[row][repeat][clip]; storage from the first timed repeat."""
    device = runtime.device
    rows = [n.key for n in networks] + [f"{n.key}/ort" for n in networks if n.session is not None]
    stages = {"decode": None, "tvl1": None, **{f"cnn/{s}": None for s in cnns}, **{r: None for r in rows}}
    seconds = {name: [[0.0] * len(clips) for _ in range(repeats)] for name in stages}
    storage = [0] * len(clips)
    steps = (args.warmup + repeats) * len(clips)
    with torch.inference_mode(), tqdm(total=steps, desc=f"video speed {label}", unit="video", disable=None) as bar:
        for rep in range(-args.warmup, repeats):
            for c, clip in enumerate(clips):
                spent: dict[str, float] = {}
                box: dict[str, torch.Tensor] = {}
                spent["decode"] = timed(lambda: box.__setitem__("frames", clip.decode()), device)
                frames = box["frames"]
                batch = frames[None]
                for network in networks:
                    def hidden_run(model=network.model):
                        with runtime.autocast():
                            model(batch.to(device))
                    spent[network.key] = timed(hidden_run, device)
                    if network.session is not None:
                        if network.ort_difference is None:
                            network.ort_difference = ort_difference(network, batch)
                        feed = {network.session.get_inputs()[0].name: batch.numpy()}
                        spent[f"{network.key}/ort"] = timed(lambda s=network.session: s.run(None, feed), device)
                if rep >= 0:
                    spent["tvl1"] = timed(lambda: box.__setitem__("flows", pool.windows(frames)), device)
                    flows = box["flows"][None]
                else:  # warm-up: TV-L1 has nothing to warm up (the pool is started); the CNNs need the shape
                    flows = torch.zeros(1, frames.shape[0], frames.shape[1] - 1, 2, *frames.shape[-2:])
                for streams, cnn in cnns.items():
                    def cnn_run(cnn=cnn):
                        with runtime.autocast():
                            cnn(batch.to(device), flows.to(device))
                    spent[f"cnn/{streams}"] = timed(cnn_run, device)
                if rep == 0:
                    with tempfile.TemporaryDirectory(prefix="flow_jpeg_") as folder:
                        storage[c] = flow_jpeg_bytes(box["flows"], Path(folder))
                if rep >= 0:
                    for name, value in spent.items():
                        seconds[name][rep][c] = value
                bar.update()
    return summarise(clips, networks, cnns, seconds, storage, repeats)


def summarise(clips: list[Clip], networks: list[Network], cnns: dict, seconds: dict, storage: list[int],
              repeats: int) -> dict:
    """Per-row decode / flow / CNN / latency per video and videos/s, speed-ups, per-clip latency, storage."""
    n = len(clips)
    reps = range(repeats)

    def total(parts: list[str], rep: int, clip: int | None = None) -> float:
        cs = range(n) if clip is None else [clip]
        return sum(seconds[p][rep][c] for p in parts for c in cs)

    rows: dict[str, dict] = {}
    for streams in cnns:
        parts = ["decode", "tvl1", f"cnn/{streams}"]
        rows[f"two-stage/tvl1/{streams}"] = {
            "pipeline": "two-stage", "engine": "opencv + pytorch", "streams": streams, "parts": parts}
    for network in networks:
        for suffix, engine in [("", "pytorch")] + [("/ort", "onnxruntime")] * (network.session is not None):
            rows[network.key + suffix] = {
                "pipeline": "hidden", "engine": engine, "motion": network.motion, "streams": network.streams,
                "hidden": network.hidden, "parts": ["decode", network.key + suffix],
                "baseline": f"two-stage/tvl1/{network.streams}"}
            if suffix:
                rows[network.key + suffix]["max_abs_logit_difference_vs_pytorch"] = network.ort_difference
    for row in rows.values():
        parts = row.pop("parts")
        row["decode_s_per_video"] = median([total(["decode"], r) for r in reps]) / n
        if row["pipeline"] == "two-stage":
            row["flow_s_per_video"] = median([total(["tvl1"], r) for r in reps]) / n
        row["compute_s_per_video"] = median([total(parts[1:], r) for r in reps]) / n
        row["latency_s_per_video"] = median([total(parts, r) for r in reps]) / n
        row["videos_per_s"] = n / median([total(parts, r) for r in reps])
        row["clip_latency_s"] = {clip.name: median([total(parts, r, c) for r in reps]) for c, clip in enumerate(clips)}
    for row in rows.values():
        if "baseline" in row:
            row["speedup"] = row["videos_per_s"] / rows[row["baseline"]]["videos_per_s"]
    per_clip = []
    for c, clip in enumerate(clips):
        flows = len(clip.starts) * (clip.frames - 1)
        height, width = (clip.crop, clip.crop) if clip.crop else read_size(clip)
        per_flow = storage[c] / flows
        per_clip.append({"clip": clip.name, "size": f"{width}x{height}", "fps": clip.fps, "frames": clip.num_frames,
                         "starts": clip.starts, "flows_written": flows, "bytes_per_flow": per_flow,
                         "gb_per_hour": per_flow * clip.fps * 3600 / 1e9})
    storage_result = {"format": f"TV-L1 u/v grayscale JPEG pairs, [-{FLOW_BOUND:g}, {FLOW_BOUND:g}] px -> 0..255, "
                                f"cv2.imwrite quality {JPEG_QUALITY}",
                      "clips": per_clip, "mean_gb_per_hour": float(np.mean([c["gb_per_hour"] for c in per_clip])),
                      "hidden_gb_per_hour": 0.0}
    return {"videos": n, "repeats": repeats, "rows": rows, "storage": storage_result}


def read_size(clip: Clip) -> tuple[int, int]:
    info = probe_video(clip.path)
    return info.height, info.width


def run(args: argparse.Namespace) -> dict:
    runtime = RuntimeOptions.from_args(args).resolve()
    note = onnx_rows(args.onnx, runtime.device)
    onnx = note is None
    settings = {"clips": str(args.clips), "sizes": args.sizes, "frames": args.frames, "segments": args.segments,
                "motion": args.motion, "streams": args.streams, "hidden": args.hidden, "classes": args.classes,
                "repeats": args.repeats, "native_repeats": args.native_repeats, "warmup": args.warmup,
                "workers": args.workers, "amp": runtime.amp, "channels_last": runtime.channels_last,
                "compile": runtime.compile, "weights": "random", "onnx": onnx, "onnx_note": note}
    result: dict = {"machine": machine_info(runtime.device), "settings": settings, "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="video_speed_onnx_") as folder:
        networks, cnns = build_networks(args, runtime, onnx, Path(folder))
        if onnx:
            import onnxruntime

            from hidden2stream.export import export_opset
            settings["onnx_opset"] = export_opset()
            settings["onnxruntime"] = onnxruntime.__version__
        with FlowPool("tvl1", args.workers) as pool:
            for size in args.sizes:
                clips = load_clips(args.clips, size, args.frames, args.segments)
                repeats = args.native_repeats if size == "native" else args.repeats
                result["sizes"][size] = time_size(clips, networks, cnns, pool, args, runtime, repeats, size)
    return result


def row_label(row: dict, workers: int) -> str:
    if row["pipeline"] == "two-stage":
        return f"two-stage: TV-L1 ({workers} process{'es' * (workers > 1)}) + {row['streams']} streams"
    engine = " (ONNX Runtime)" if row["engine"] == "onnxruntime" else ""
    return f"hidden {row['hidden']}: MotionNet-{row['motion']} + {row['streams']} streams{engine}"


def markdown(result: dict) -> str:
    """The report: per size, one row per pipeline; then the speed-ups and the flow storage."""
    s, machine = result["settings"], result["machine"]
    precision = "fp32" if s["amp"] == "off" else f"{s['amp']} autocast"
    lines = [f"# Video to label speed ({machine_line(machine)}, device {machine['device']}, {precision}, "
             f"channels_last {'on' if s['channels_last'] else 'off'}, compile {'on' if s['compile'] else 'off'}, "
             f"weights {s['weights']})", "",
             f"Same videos and windows for every pipeline: {s['segments']} windows of {s['frames']} frames per video "
             f"(TSN test sampling), {s['classes']} classes, batch 1 video. Decode (PyAV) is timed once per clip and "
             f"included in every row. Two-stage: OpenCV TV-L1 pair by pair in {s['workers']} single-threaded "
             f"process(es), then the same temporal CNN on the TV-L1 flow stack plus the spatial CNN (flow JPEGs not "
             f"written in the timed path). ONNX Runtime rows: fp32 on the CPU"
             + (f", opset {s['onnx_opset']}, onnxruntime {s['onnxruntime']}." if s["onnx"] else f": {s['onnx_note']}."),
             ""]
    for size, r in result["sizes"].items():
        shape = "native size per clip" if size == "native" else f"{size}x{size}"
        table = []
        for key, row in r["rows"].items():
            label = row_label(row, s["workers"])
            engine_precision = "fp32" if row["engine"] == "onnxruntime" else precision
            table.append([label, engine_precision, row["decode_s_per_video"], row.get("flow_s_per_video", "-"),
                          row["compute_s_per_video"] - row.get("flow_s_per_video", 0.0), row["latency_s_per_video"],
                          row["videos_per_s"], f"{row['speedup']:.1f}x" if "speedup" in row else "1.0x"])
        lines += [f"## {shape}: {r['videos']} videos, median of {r['repeats']} repeat{'s' * (r['repeats'] > 1)}", "",
                  markdown_table(["pipeline", "precision", "decode s/video", "TV-L1 s/video", "network s/video",
                                  "latency s/video", "videos/s", "vs two-stage (same streams)"], table, 4), ""]
        diffs = [f"{k}: {row['max_abs_logit_difference_vs_pytorch']:.1e}" for k, row in r["rows"].items()
                 if row.get("max_abs_logit_difference_vs_pytorch") is not None]
        if diffs:
            lines += ["ONNX Runtime vs PyTorch fp32, max |logit difference| on the first video: " + ", ".join(diffs), ""]
        st = r["storage"]
        rows = [[c["clip"], c["size"], c["fps"], c["bytes_per_flow"] / 1e3, c["gb_per_hour"], 0.0] for c in st["clips"]]
        rows.append(["mean", "", "", "", st["mean_gb_per_hour"], 0.0])
        lines += [f"Flow storage of the two-stage pipeline at {shape} ({st['format']}), per hour of video at each "
                  f"clip's fps:", "",
                  markdown_table(["clip", "size", "fps", "KB per flow (u + v)", "two-stage GB/hour",
                                  "hidden GB/hour"], rows, 2), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    return run_benchmark("video_speed", build_parser(), run, markdown, argv)


if __name__ == "__main__":
    run_cli(main)
