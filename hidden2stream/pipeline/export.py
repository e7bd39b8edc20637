"""Export MotionNet and the hidden two-stream network to ONNX, each checked against PyTorch by ONNX Runtime.

The job behind ``experiments/export.py`` (:class:`ExportOptions` -> :func:`run`): random-init models of
``motion`` size, the MotionNets a MotionNet checkpoint's weights fit, or a two-stream checkpoint's network
and MotionNet; each graph is run on the same inputs as the PyTorch model (shared clips, else clips of the
embedded action generator) and its largest difference is checked against the tolerance below.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from hidden2stream.checkpoint import Checkpoint
from hidden2stream.data.clips import centre_crop
from hidden2stream.data.sampling import segment_starts
from hidden2stream.data.synthetic_actions import SyntheticActionConfig, SyntheticActionDataset
from hidden2stream.data.video import probe_video, read_frames, scaled_size
from hidden2stream.errors import CheckpointError, UserError, VideoError
from hidden2stream.export import (FLOW_OUTPUTS, TWO_STREAM_OUTPUTS, ExportableFlow, ExportableTwoStream,
                                  export_onnx, export_opset, max_abs_difference, ort_session, refinement_tolerance,
                                  require_export_packages)
from hidden2stream.models.hidden import HIDDEN_KINDS
from hidden2stream.models.motionnet import MOTIONNETS, MotionNetConfig, build_motionnet
from hidden2stream.models.streams import STREAM_ARCHS
from hidden2stream.models.two_stream import hidden_two_stream
from hidden2stream.options import Options, option, positive_int
from hidden2stream.paths import shared_data
from hidden2stream.pretrained import motionnet_from, two_stream_from
from hidden2stream.weights import motion_source

log = logging.getLogger("export")

# Tolerances of the ONNX Runtime graph against PyTorch, both float32 on the same inputs. The two
# run the same arithmetic in a different order (other convolution kernels and summation orders,
# fused ops), so each layer differs by a few float32 roundings (eps = 1.2e-7 relative) and the
# differences grow with depth: ~20 layers in MotionNet, ~40 in the two streams. Flows of real
# motion reach tens of pixels (|flow| <= ~50 px), and 1e-3 px is ~2e-5 of that: ~170 float32 ulps,
# room for the accumulated reorderings yet 1000x below a visible flow error (0.5 px bins of JPEG
# flow storage are 0.16 px). Logits are O(1-10) after the classifier, and 1e-4 is ~1e-5 relative, ~100
# ulps at that scale; no class ranking changes at that level unless two scores tie to 1e-4.
# A MotionNet with the Lucas-Kanade refinement gets refinement_tolerance() more (hidden2stream.export:
# its damped 2x2 solves multiply rounding differences by their condition number where the motion is
# not observable; 2e-5 px on the shared clips, 1.3e-3 px on noise frames, 0.038 px the bound), and
# the check inputs hold real motion: clips, or generated scenes on a fresh clone, never noise.
FLOW_TOLERANCE_PX = 1e-3
LOGIT_TOLERANCE = 1e-4
DEFAULT_STREAMS = {"tiny": "tiny", "corr": "tiny", "recurrent": "tiny", "paper": "resnet18"}


def what_parts(text: str) -> tuple[str, ...]:
    """``--what``: the parts (``motion``, ``two-stream``) a comma list names."""
    parts = tuple(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
    if not parts or set(parts) - {"motion", "two-stream"}:
        raise ValueError(f"must be a comma list of motion and two-stream, got {text!r}")
    return parts


@dataclass(frozen=True)
class ExportOptions(Options):
    """The options of ``export.py``."""

    checkpoint: str | None = option(None, "pretrain_motion.py / train_two_stream.py checkpoint or shipped weights name")
    motion: str = option("tiny", "MotionNet size of the random-init models (without --checkpoint)", choices=MOTIONNETS)
    streams: str = option("auto", "spatial/temporal CNNs of the random-init network (auto: tiny, resnet18 for paper)",
                          choices=("auto",) + STREAM_ARCHS)
    hidden: str = option("stacked", "random-init hidden stream kind", choices=HIDDEN_KINDS)
    classes: int = option(101, "classes of the random-init network", parse=positive_int)
    segments: int = option(3, "K windows per video (random init)", parse=positive_int)
    pair_frames: int = option(2, "frames of the pair MotionNet", parse=positive_int)
    window_frames: int = option(11, "frames of the window MotionNet and of the random-init network", parse=positive_int)
    what: tuple[str, ...] = option(("motion", "two-stream"), "comma list: motion (the MotionNets) and/or two-stream",
                                   parse=what_parts)
    size: int | None = option(None, "square side of the check inputs (default: the checkpoint's size, else 224)",
                              parse=positive_int)
    clips: Path = option(shared_data("clips"), "videos for the check inputs", parse=Path)
    max_clips: int = option(7, "clips in the check batch", parse=positive_int)
    no_native: bool = option(False, "skip the check at the smallest clip's native size")
    opset: int | None = option(None, "ONNX opset (default: the newest both onnx and torch support)", parse=positive_int)
    out: Path = option(Path("runs/export"), "output folder", parse=Path)


def run(options: ExportOptions) -> dict:
    """Export every model the options name, check each graph against PyTorch; the report (``export.json``),
    whose ``failed`` lists the checks beyond their tolerance (the script then exits 1)."""
    parts = set(options.what)
    if min(options.pair_frames, options.window_frames) < 2:
        raise UserError("MotionNet windows need at least 2 frames (--pair-frames, --window-frames)")
    require_export_packages()
    import onnx
    import onnxruntime

    opset = options.opset or export_opset()
    motionnets, two_stream, notes = models(options)
    for key, note in notes.items():
        print(f"not exported ({key}): {note}")
    options.out.mkdir(parents=True, exist_ok=True)
    result = {"exporter": "torch.onnx.export(dynamo=True)", "opset": opset, "torch": torch.__version__,
              "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
              "checkpoint": options.checkpoint, "weights": "checkpoint" if options.checkpoint else "random",
              "notes": notes, "models": []}
    jobs = []
    if "motion" in parts:
        for name, model in motionnets.items():
            frames = model.config.frames
            tolerance = FLOW_TOLERANCE_PX + refinement_tolerance(model.config.refinement)
            jobs.append((name, ExportableFlow(model.eval()), lambda x, m=model: m(x, all_scales=False),
                         FLOW_OUTPUTS, tolerance, frames, 1))
    if "two-stream" in parts and two_stream is not None:
        name, network, config = two_stream
        network.eval()
        jobs.append((name, ExportableTwoStream(network), network, TWO_STREAM_OUTPUTS, LOGIT_TOLERANCE,
                     network.motionnet.config.frames, network.config.segments))
    if not jobs:
        raise UserError(f"nothing to export: --what {','.join(options.what)} with this checkpoint")
    trained_size = two_stream[1].config.size if two_stream else None
    size = options.size or (trained_size[0] if trained_size else 224)
    failed = []
    for name, module, reference, outputs, tolerance, frames, segments in jobs:
        flow_model = outputs == FLOW_OUTPUTS
        example = torch.rand(1, frames, 3, 64, 64) if flow_model else torch.rand(1, segments, frames, 3, 64, 64)
        start = time.perf_counter()
        path = export_onnx(module, example, options.out / f"{name}.onnx", outputs, opset)
        seconds = time.perf_counter() - start
        print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, opset {opset}, exported in {seconds:.1f} s")
        session = ort_session(path)
        checks = []
        for batch, label in check_inputs(options, frames, segments, size):
            inputs = batch[:, 0] if flow_model else batch  # a MotionNet takes one window (N, T+1, 3, H, W)
            checks.append(check(session, reference, inputs, outputs, tolerance, label))
        result["models"].append({"name": name, "file": str(path), "mb": path.stat().st_size / 1e6,
                                 "export_s": seconds, "outputs": list(outputs), "checks": checks})
        failed += [f"{name} on {c['input']}" for c in checks if not c["ok"]]
    result["failed"] = failed
    (options.out / "export.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def models(options: ExportOptions) -> tuple[dict, object, dict]:
    """(name -> MotionNet, two-stream network or None, notes) from the checkpoint (read once) or random init."""
    motionnets, notes, network, config = {}, {}, None, {}
    lengths = sorted({options.pair_frames, options.window_frames})
    if options.checkpoint is None:
        torch.manual_seed(0)
        for frames in lengths:
            motionnets[f"motionnet_{options.motion}_w{frames}"] = build_motionnet(MotionNetConfig(options.motion, frames))
        streams = DEFAULT_STREAMS[options.motion] if options.streams == "auto" else options.streams
        network = hidden_two_stream(options.classes, motion=options.motion, frames=options.window_frames,
                                    spatial_arch=streams, temporal_arch=streams, hidden=options.hidden,
                                    segments=options.segments)
        return motionnets, (f"two_stream_{options.motion}_{options.hidden}_{streams}", network, config), notes
    checkpoint = Checkpoint.load(motion_source(options.checkpoint))
    path = checkpoint.path
    if checkpoint.kind == "two_stream":
        network = two_stream_from(checkpoint)
        motion, config = network.motionnet, network.config
        if motion is None:
            raise CheckpointError(f"{path} is a two-stage network on precomputed {config.flow} flow: "
                                  "export.py exports MotionNets and hidden two-stream networks")
        name = config.motion.variant
        motionnets[f"motionnet_{name}_w{motion.config.frames}"] = motion
        return motionnets, (f"two_stream_{name}", network, config), notes
    if checkpoint.kind != "motionnet":
        raise CheckpointError(f"checkpoint {path} holds a {checkpoint.kind!r} model, "
                              "expected a MotionNet or a two-stream network")
    name = checkpoint.config.variant
    for frames in lengths:
        try:
            model = motionnet_from(checkpoint, frames)
        except CheckpointError as exc:
            notes[f"w{frames}"] = str(exc)
            continue
        motionnets[f"motionnet_{name}_w{frames}"] = model
    if not motionnets:  # weights of one window length: export that one
        model = motionnet_from(checkpoint)
        motionnets[f"motionnet_{name}_w{model.config.frames}"] = model
    return motionnets, None, notes


def clip_windows(folder: Path, frames: int, size: int | None, count: int, max_clips: int,
                 smallest: bool = False) -> tuple[torch.Tensor, str] | None:
    """``(N, count, frames, 3, H, W)`` windows (``count`` segments) of up to ``max_clips`` clips at
    ``size`` (shorter side + centre crop), or of the smallest clip at native size; None without clips."""
    if not folder.is_dir():
        return None
    readable = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            info = probe_video(path)
            segment_starts(info.num_frames, count, frames)
        except VideoError as exc:
            log.warning("skipping %s: %s", path.name, exc)
            continue
        readable.append((path, info))
    if smallest:
        readable = sorted(readable, key=lambda p: p[1].width * p[1].height)[:1]
    batch, names = [], []
    for path, info in readable[:max_clips]:
        try:
            starts = segment_starts(info.num_frames, count, frames)
            decode = None if size is None else scaled_size(info.width, info.height, size)
            windows = torch.stack([read_frames(path, s, frames, decode) for s in starts])
        except VideoError as exc:
            log.warning("skipping %s: %s", path.name, exc)
            continue
        batch.append(windows if size is None else centre_crop(windows, (size, size)).contiguous())
        names.append(path.name)
    if not batch:
        return None
    shape = f"{batch[0].shape[-1]}x{batch[0].shape[-2]}"
    return torch.stack(batch), f"{len(batch)} clip{'s' * (len(batch) > 1)} ({', '.join(names)}) at {shape}"


def generated_clips(count: int, segments: int, frames: int, height: int, width: int) -> torch.Tensor:
    """``(count, segments, frames, 3, H, W)`` clips of the embedded action generator: textured
    objects moving over a drifting background, so the flow has a real motion to converge to (on
    noise frames the Lucas-Kanade refinement has no fixed point and amplifies rounding differences)."""
    clip_frames = max(16, frames)
    scale = min(height, width) / 64 * 16 / clip_frames  # the default speeds fit 16 frames of a 64 px side
    config = SyntheticActionConfig(segments=segments, frames=frames, height=height, width=width,
                                   clip_frames=clip_frames, speed=(1.5 * scale, 3.0 * scale))
    data = SyntheticActionDataset(count, config, seed=0)
    return torch.stack([data[i]["frames"] for i in range(count)])


def check_inputs(options: ExportOptions, frames: int, segments: int, size: int) -> list[tuple[torch.Tensor, str]]:
    """The inputs a graph is checked on: clip windows at ``size`` (+ native), else generated clips."""
    inputs = []
    found = clip_windows(options.clips, frames, size, segments, options.max_clips)
    if found is None:
        print(f"no clips in {options.clips}: checking on generated action clips instead "
              "(set H2S_SHARED or --clips for real ones)")
        for height, width, count in [(size, size, 2), (56, 72, 1)]:
            inputs.append((generated_clips(count, segments, frames, height, width),
                           f"generated action clips at {width}x{height}"))
        return inputs
    inputs.append(found)
    native = None if options.no_native else clip_windows(options.clips, frames, None, segments, 1, smallest=True)
    if native is not None:
        inputs.append((native[0], native[1] + " (native)"))
    return inputs


def check(session, reference, frames: torch.Tensor, outputs: tuple[str, ...], tolerance: float, label: str) -> dict:
    """Run the ONNX graph and PyTorch on ``frames``; the max |difference| per output against ``tolerance``."""
    with torch.inference_mode():
        expected = reference(frames)
    expected = [expected] if isinstance(expected, torch.Tensor) else [expected[k] for k in outputs]
    diffs = dict(zip(outputs, max_abs_difference(session, expected, frames)))
    scale = {k: float(e.abs().max()) for k, e in zip(outputs, expected)}
    ok = all(d <= tolerance for d in diffs.values())
    print(f"  {label}: input {tuple(frames.shape)}, max |ONNX - PyTorch| "
          + ", ".join(f"{k} {d:.2e} (max |{k}| {scale[k]:.3g})" for k, d in diffs.items())
          + f" -> {'ok' if ok else 'ABOVE'} tolerance {tolerance:g}")
    return {"input": label, "shape": list(frames.shape), "max_abs_difference": diffs, "max_abs_value": scale,
            "tolerance": tolerance, "ok": ok}
