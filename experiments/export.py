"""Export MotionNet and the hidden two-stream network to ONNX, each checked against PyTorch.

    python experiments/export.py --motion tiny --out runs/export                      # random init (testing)
    python experiments/export.py --checkpoint runs/main/two_stream/checkpoint.pt --out runs/export
    python experiments/export.py --checkpoint runs/main/motion/checkpoint.pt --out runs/export

Writes, with a dynamic batch, height and width (``pip install -e ".[export]"`` first):

* ``motionnet_<name>_w2.onnx`` and ``motionnet_<name>_w11.onnx``: frames ``(B, T+1, 3, H, W)`` in
  [0, 1] -> ``flow (B, T, 2, H, W)`` in pixels (the pair model and the paper's 11-frame window
  model; ``--pair-frames`` / ``--window-frames``);
* ``two_stream_<name>.onnx``: frames ``(B, K, T+1, 3, H, W)`` -> ``spatial``, ``temporal`` and
  ``fused`` logits ``(B, classes)``.

Without ``--checkpoint``, random-init models of ``--motion`` size (tiny, paper, corr) are built
(tiny/resnet18 streams with ``--streams auto``). A MotionNet checkpoint (``pretrain_motion.py``
or shipped weights) gives the MotionNets its weights fit; a two-stream checkpoint
(``train_two_stream.py``) gives the network and its MotionNet. Each graph is run by ONNX Runtime
on the same inputs as the PyTorch model (float32): windows from the shared clips (``--clips``; at
``--size`` and, for the dynamic height and width, the smallest clip at its native size), or clips
of the embedded action generator when the folder is absent (a fresh clone). The max absolute differences are printed and saved to
``export.json``; a difference above the tolerance (flow 1e-3 px, plus the refinement's bound for a
refined MotionNet; logits 1e-4) fails the run.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from hidden2stream.cli import OneLineParser, positive_int, run_cli
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
from hidden2stream.paths import shared_data
from hidden2stream.pretrained import load_motionnet, load_two_stream
from hidden2stream.weights import motion_source
from hidden2stream.checkpoint import Checkpoint

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


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", help="pretrain_motion.py / train_two_stream.py checkpoint or shipped weights name")
    p.add_argument("--motion", default="tiny", choices=list(MOTIONNETS),
                   help="MotionNet size of the random-init models (without --checkpoint)")
    p.add_argument("--streams", default="auto", choices=("auto",) + STREAM_ARCHS,
                   help="spatial/temporal CNNs of the random-init network (auto: tiny, resnet18 for paper)")
    p.add_argument("--hidden", default="stacked", choices=HIDDEN_KINDS, help="random-init hidden stream kind")
    p.add_argument("--classes", type=positive_int, default=101, help="classes of the random-init network")
    p.add_argument("--segments", type=positive_int, default=3, help="K windows per video (random init)")
    p.add_argument("--pair-frames", type=positive_int, default=2, help="frames of the pair MotionNet")
    p.add_argument("--window-frames", type=positive_int, default=11,
                   help="frames of the window MotionNet and of the random-init network")
    p.add_argument("--what", default="motion,two-stream",
                   help="comma list: motion (the MotionNets) and/or two-stream")
    p.add_argument("--size", type=positive_int,
                   help="square side of the check inputs (default: the checkpoint's size, else 224)")
    p.add_argument("--clips", type=Path, default=shared_data("clips"), help="videos for the check inputs")
    p.add_argument("--max-clips", type=positive_int, default=7, help="clips in the check batch")
    p.add_argument("--no-native", action="store_true", help="skip the check at the smallest clip's native size")
    p.add_argument("--opset", type=positive_int, help="ONNX opset (default: the newest both onnx and torch support)")
    p.add_argument("--out", type=Path, default=Path("runs/export"), help="output folder")
    return p


def what_arg(text: str) -> set[str]:
    parts = {s.strip() for s in text.split(",") if s.strip()}
    if not parts or parts - {"motion", "two-stream"}:
        raise UserError(f"--what must be a comma list of motion and two-stream, got {text!r}")
    return parts


def models(args: argparse.Namespace) -> tuple[dict, object, dict]:
    """(name -> MotionNet, two-stream network or None, notes) from the checkpoint or random init."""
    motionnets, notes, network, config = {}, {}, None, {}
    lengths = sorted({args.pair_frames, args.window_frames})
    if args.checkpoint is None:
        torch.manual_seed(0)
        for frames in lengths:
            motionnets[f"motionnet_{args.motion}_w{frames}"] = build_motionnet(MotionNetConfig(args.motion, frames))
        streams = DEFAULT_STREAMS[args.motion] if args.streams == "auto" else args.streams
        network = hidden_two_stream(args.classes, motion=args.motion, frames=args.window_frames,
                                    spatial_arch=streams, temporal_arch=streams, hidden=args.hidden,
                                    segments=args.segments)
        return motionnets, (f"two_stream_{args.motion}_{args.hidden}_{streams}", network, config), notes
    path = motion_source(args.checkpoint)
    checkpoint = Checkpoint.load(path)
    kind = checkpoint.kind
    if kind == "two_stream":
        network = load_two_stream(path)
        motion, config = network.motionnet, network.config
        if motion is None:
            raise CheckpointError(f"{path} is a two-stage network on precomputed {config.flow} flow: "
                                  "export.py exports MotionNets and hidden two-stream networks")
        name = config.motion.variant
        motionnets[f"motionnet_{name}_w{motion.config.frames}"] = motion
        return motionnets, (f"two_stream_{name}", network, config), notes
    if kind != "motionnet":
        raise CheckpointError(f"checkpoint {path} holds a {kind!r} model, expected a MotionNet or a two-stream network")
    name = checkpoint.config.variant
    for frames in lengths:
        try:
            model = load_motionnet(path, frames)
        except CheckpointError as exc:
            notes[f"w{frames}"] = str(exc)
            continue
        motionnets[f"motionnet_{name}_w{frames}"] = model
    if not motionnets:  # weights of one window length: export that one
        model = load_motionnet(path)
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


def check_inputs(args: argparse.Namespace, frames: int, segments: int, size: int) -> list[tuple[torch.Tensor, str]]:
    """The inputs a graph is checked on: clip windows at ``size`` (+ native), else generated clips."""
    inputs = []
    found = clip_windows(args.clips, frames, size, segments, args.max_clips)
    if found is None:
        print(f"no clips in {args.clips}: checking on generated action clips instead "
              "(set H2S_SHARED or --clips for real ones)")
        for height, width, count in [(size, size, 2), (56, 72, 1)]:
            inputs.append((generated_clips(count, segments, frames, height, width),
                           f"generated action clips at {width}x{height}"))
        return inputs
    inputs.append(found)
    native = None if args.no_native else clip_windows(args.clips, frames, None, segments, 1, smallest=True)
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


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    parts = what_arg(args.what)
    if min(args.pair_frames, args.window_frames) < 2:
        raise UserError("MotionNet windows need at least 2 frames (--pair-frames, --window-frames)")
    require_export_packages()
    import onnx
    import onnxruntime

    opset = args.opset or export_opset()
    motionnets, two_stream, notes = models(args)
    for key, note in notes.items():
        print(f"not exported ({key}): {note}")
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"exporter": "torch.onnx.export(dynamo=True)", "opset": opset, "torch": torch.__version__,
              "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
              "checkpoint": args.checkpoint, "weights": "checkpoint" if args.checkpoint else "random",
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
        raise UserError(f"nothing to export: --what {args.what} with this checkpoint")
    trained_size = two_stream[1].config.size if two_stream else None
    size = args.size or (trained_size[0] if trained_size else 224)
    failed = []
    for name, module, reference, outputs, tolerance, frames, segments in jobs:
        flow_model = outputs == FLOW_OUTPUTS
        example = torch.rand(1, frames, 3, 64, 64) if flow_model else torch.rand(1, segments, frames, 3, 64, 64)
        start = time.perf_counter()
        path = export_onnx(module, example, args.out / f"{name}.onnx", outputs, opset)
        seconds = time.perf_counter() - start
        print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, opset {opset}, exported in {seconds:.1f} s")
        session = ort_session(path)
        checks = []
        for batch, label in check_inputs(args, frames, segments, size):
            inputs = batch[:, 0] if flow_model else batch  # a MotionNet takes one window (N, T+1, 3, H, W)
            checks.append(check(session, reference, inputs, outputs, tolerance, label))
        result["models"].append({"name": name, "file": str(path), "mb": path.stat().st_size / 1e6,
                                 "export_s": seconds, "outputs": list(outputs), "checks": checks})
        failed += [f"{name} on {c['input']}" for c in checks if not c["ok"]]
    (args.out / "export.json").write_text(json.dumps(result, indent=2) + "\n")
    if failed:
        print(f"error: ONNX Runtime differs from PyTorch beyond the tolerance: {'; '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    run_cli(main)
