"""Flow speed: pairs/s of MotionNet (tiny, paper size) vs OpenCV TV-L1, Farneback, DIS on real clip frames.

    python benchmarks/flow_speed.py [--clips DIR] [--sizes 224,native] [--pairs 10] [--native-pairs 1]
                                    [--batch 8] [--repeats 5] [--native-repeats 3] [--models tiny,paper]
                                    [--native-models tiny] [--onnx auto] [--device auto] [--amp auto]
                                    [--channels-last auto] [--compile] [--peak-tflops T] [--out benchmarks/results]

Every method gets the same frame pairs: ``--pairs`` consecutive pairs from the middle of each clip,
at 224x224 (shorter side resized, centre crop) and at each clip's native size (there
``--native-pairs`` per clip, ``--native-repeats``, and on CPU only MotionNet-tiny by default, because
paper-size MotionNet takes seconds per pair at 1280x720 on a CPU). OpenCV runs pair by pair.
MotionNet (random weights unless ``--checkpoint`` fits) runs two ways: a frames=2 model on the
pairs in batches of ``--batch`` (``motionnet-tiny``), and, when the pairs of a clip split into
10-flow stacks, the paper's 11-frame model, one forward per stack
(``motionnet-tiny-w11``): what the user pays for a 10-flow stack, against TV-L1 computing the same
10 flows. With ONNX Runtime installed (``pip install -e ".[export]"``) and on the CPU, every MotionNet
row also runs exported to ONNX (``hidden2stream.export``) in ONNX Runtime, fp32, same batches
(``-ort`` rows; ``--onnx off`` leaves them out, and a note says why when they are skipped). Each
repeat times every method on every clip in turn, after ``--warmup`` untimed passes; pairs/s is
the pair count over the median repeat time. On CUDA (bf16 autocast, channels_last by default) the
achieved fraction of the GPU's dense bf16 peak is reported; on a CPU with native
bf16 (AVX512-BF16/AMX), ``--amp bf16 --channels-last on`` is the fast setting. Writes
``flow_speed.json`` and ``flow_speed.md`` to ``--out``.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from benchmarks.common import (add_onnx_option, comma_choices, machine_info, machine_line, median, onnx_rows,
                               run_benchmark, timed)
from hidden2stream.options import existing_dir, existing_path, non_negative_float, non_negative_int, positive_int
from hidden2stream_experiments.cli import OneLineParser, run_cli
from hidden2stream_experiments.parsing import argparse_type
from hidden2stream.data.clips import centre_crop
from hidden2stream.data.video import probe_video, read_frames, scaled_size
from hidden2stream.errors import UserError, VideoError
from hidden2stream.flow.classic import CLASSIC_METHODS, classic_flow
from hidden2stream.models.flops import forward_flops
from hidden2stream.models.motionnet import MOTIONNETS, MotionNet, MotionNetConfig, build_motionnet
from hidden2stream.paths import shared_data
from hidden2stream.pretrained import load_motionnet
from hidden2stream.evaluation.report import markdown_table
from hidden2stream.runtime import Runtime, RuntimeOptions, evaluation
from hidden2stream_experiments.parsing import add_options

# Dense bf16 tensor-core peaks (TFLOPS, no sparsity), matched against the CUDA device name in order.
BF16_PEAK_TFLOPS = (("H100 PCIe", 756.0), ("H100 NVL", 835.0), ("H100", 989.0), ("H200", 989.0),
                    ("GH200", 989.0), ("A100", 312.0))
SQUARE = 224
STACK_FLOWS = 10  # the paper's temporal input: 11 frames -> 10 flows -> 20 channels
WINDOW_SUFFIX = f"-w{STACK_FLOWS + 1}"


def sizes_arg(text: str) -> list[str]:
    """argparse type: comma list of ``native`` and square sides (``224``)."""
    sizes = [s.strip().lower() for s in text.split(",") if s.strip()]
    for s in sizes:
        if s != "native" and not (s.isdigit() and int(s) >= 32):
            raise argparse.ArgumentTypeError(f"size {s!r} is neither 'native' nor a side >= 32")
    if not sizes:
        raise argparse.ArgumentTypeError("--sizes is empty")
    return sizes


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--clips", type=argparse_type(existing_dir), default=shared_data("clips"), help="folder of videos")
    p.add_argument("--sizes", type=sizes_arg, default=["224", "native"],
                   help="comma list: N (shorter side resized, NxN centre crop) and/or native")
    p.add_argument("--pairs", type=argparse_type(positive_int), default=STACK_FLOWS,
                   help=f"consecutive pairs per clip at square sizes (a multiple of {STACK_FLOWS} adds the "
                        f"{STACK_FLOWS + 1}-frame MotionNet rows)")
    p.add_argument("--native-pairs", type=argparse_type(positive_int), default=1, help="pairs per clip at native size")
    p.add_argument("--batch", type=argparse_type(positive_int), default=8, help="MotionNet pairs per forward")
    p.add_argument("--repeats", type=argparse_type(positive_int), default=5, help="timed repeats at square sizes (median)")
    p.add_argument("--native-repeats", type=argparse_type(positive_int), default=3, help="timed repeats at native size")
    p.add_argument("--warmup", type=argparse_type(non_negative_int), default=1, help="untimed passes before the timed repeats")
    p.add_argument("--models", type=comma_choices(sorted(MOTIONNETS), "--models"), default=["tiny", "paper"],
                   help="MotionNet sizes")
    p.add_argument("--native-models", type=comma_choices(sorted(MOTIONNETS), "--native-models"),
                   help="MotionNet sizes timed at native size (default: tiny on CPU, --models on CUDA)")
    p.add_argument("--methods", type=comma_choices(CLASSIC_METHODS, "--methods", empty_ok=True),
                   default=list(CLASSIC_METHODS), help="OpenCV methods")
    p.add_argument("--checkpoint", type=argparse_type(existing_path),
                   help="MotionNet weights, used for the models of the same architecture and frames")
    p.add_argument("--peak-tflops", type=argparse_type(non_negative_float),
                   help="GPU dense bf16 peak (default: looked up from the device name)")
    add_onnx_option(p)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output folder")
    add_options(p, RuntimeOptions)
    return p


def load_clip_frames(folder: Path, size: str, count: int) -> list[tuple[str, torch.Tensor]]:
    """``count`` consecutive frames ``(count, 3, H, W)`` from the middle of every readable clip."""
    clips = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")):
        try:
            info = probe_video(path)
            if info.num_frames < count:
                raise VideoError(f"{path.name} holds {info.num_frames} frames, need {count}")
            start = (info.num_frames - count) // 2
            if size == "native":
                frames = read_frames(path, start, count)
            else:
                side = int(size)
                frames = read_frames(path, start, count, scaled_size(info.width, info.height, side))
                frames = centre_crop(frames, (side, side)).contiguous()
        except VideoError as exc:
            print(f"skipping {path.name}: {exc}", file=sys.stderr)
            continue
        clips.append((path.name, frames))
    if not clips:
        raise UserError(f"no readable video with >= {count} frames in {folder}")
    return clips


def motion_flow(model: torch.nn.Module, windows: torch.Tensor, batch: int, runtime: Runtime) -> None:
    """Full-resolution flow of ``windows (N, T+1, 3, H, W)`` in batches, as a user runs MotionNet."""
    with evaluation(model), runtime.autocast():
        for chunk in windows.split(batch):
            model(chunk, all_scales=False)


def ort_flow(session, windows: torch.Tensor, batch: int) -> None:
    """The same flows as :func:`motion_flow`, by an ONNX Runtime session of the exported MotionNet."""
    name = session.get_inputs()[0].name
    for chunk in windows.split(batch):
        session.run(None, {name: chunk.numpy()})


def onnx_sessions(option: str, models: dict, runtime: Runtime, folder: Path, cache: dict) -> tuple[dict, str | None]:
    """Row name (``motionnet-tiny-ort``) -> (PyTorch row, ONNX Runtime session) for each MotionNet row,
    and the note when there are none. ``cache`` keeps the sessions exported before (dynamic H, W)."""
    note = onnx_rows(option, runtime.device)
    if note:
        return {}, note
    from hidden2stream.export import FLOW_OUTPUTS, ExportableFlow, export_onnx, ort_session

    sessions = {}
    for name, model in models.items():
        row = f"{name}-ort"
        if row not in cache:
            model = getattr(model, "_orig_mod", model)
            example = torch.rand(1, model.config.frames, 3, 64, 64)
            cache[row] = ort_session(export_onnx(ExportableFlow(model), example, folder / f"{name}.onnx",
                                                 FLOW_OUTPUTS))
        sessions[row] = (name, cache[row])
    return sessions, None


def classic_pairs(method: str, frames: torch.Tensor) -> None:
    """OpenCV flow of every consecutive pair of ``frames (P+1, 3, H, W)``."""
    for i in range(frames.shape[0] - 1):
        classic_flow(method, frames[i], frames[i + 1])


def windows_of(frames: torch.Tensor, flows: int, device: torch.device) -> torch.Tensor:
    """Frames ``(P+1, 3, H, W)`` -> windows ``(P / flows, flows+1, 3, H, W)`` sharing their end frames."""
    return frames.unfold(0, flows + 1, flows).permute(0, 4, 1, 2, 3).contiguous().to(device)


def time_size(clips: list[tuple[str, torch.Tensor]], models: dict, methods: list[str], args: argparse.Namespace,
              runtime: Runtime, repeats: int, label: str, sessions: dict | None = None) -> dict:
    """Time every method on every clip, ``args.warmup`` untimed passes then ``repeats`` timed ones.

    ``models`` maps row names (``motionnet-tiny``, ``motionnet-tiny-w11``) to MotionNets; each runs
    on the windows of its own length, so every row computes the same flows. ``sessions`` maps
    ONNX Runtime rows to (the PyTorch row whose windows they take, the session).
    """
    sessions = sessions or {}
    names = list(models) + list(sessions) + list(methods)
    windows = {name: [windows_of(f, model.num_flows, runtime.device) for _, f in clips]
               for name, model in models.items()}
    seconds = {n: [[0.0] * len(clips) for _ in range(repeats)] for n in names}
    passes = args.warmup + repeats
    with tqdm(total=passes * len(clips) * len(names), desc=f"flow speed {label}", unit="run", disable=None) as bar:
        for rep in range(passes):
            for c, (_, frames) in enumerate(clips):
                for name in names:
                    if name in models:
                        elapsed = timed(lambda: motion_flow(models[name], windows[name][c], args.batch, runtime),
                                        runtime.device)
                    elif name in sessions:
                        base, session = sessions[name]
                        elapsed = timed(lambda: ort_flow(session, windows[base][c], args.batch), runtime.device)
                    else:
                        elapsed = timed(lambda: classic_pairs(name, frames), runtime.device)
                    if rep >= args.warmup:
                        seconds[name][rep - args.warmup][c] = elapsed
                    bar.update()
    pairs = [f.shape[0] - 1 for _, f in clips]
    per_clip = [{"clip": clip, "size": f"{f.shape[-1]}x{f.shape[-2]}", "pairs": n,
                 **{name: n / median([rep[c] for rep in seconds[name]]) for name in names}}
                for c, ((clip, f), n) in enumerate(zip(clips, pairs))]
    total = {name: sum(pairs) / median([sum(rep) for rep in seconds[name]]) for name in names}
    return {"pairs": sum(pairs), "repeats": repeats, "pairs_per_s": total, "ratios": ratios(total),
            "clips": per_clip}


def ratios(rate: dict[str, float]) -> dict[str, float]:
    """Speed ratios (pairs/s over pairs/s) of each MotionNet row to TV-L1, DIS and Farneback."""
    return {f"{name.removeprefix('motionnet-')}/{method}": value / rate[method]
            for name, value in rate.items() if name.startswith("motionnet-")
            for method in ("tvl1", "dis", "farneback") if method in rate}


def peak_tflops(runtime: Runtime, option: float | None) -> float | None:
    """The dense bf16 peak: ``--peak-tflops`` or looked up from the CUDA device name (None if unknown)."""
    if option:
        return option
    if runtime.device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(runtime.device)
    return next((tflops for key, tflops in BF16_PEAK_TFLOPS if key in name), None)


def compute_use(models: dict, rate: dict[str, float], side: int, runtime: Runtime, peak: float | None) -> dict:
    """FLOPs per pair at ``side`` x ``side``, achieved TFLOPS and fraction of the bf16 peak (CUDA only)."""
    out = {}
    for name, model in models.items():
        model = getattr(model, "_orig_mod", model)
        example = torch.rand(1, model.num_flows + 1, 3, side, side, device=runtime.device)
        flops = forward_flops(model, example) / model.num_flows
        achieved = flops * rate[name] / 1e12
        fraction = achieved / peak if peak and runtime.device.type == "cuda" and runtime.amp == "bf16" else None
        out[name.removeprefix("motionnet-")] = {"gflops_per_pair": flops / 1e9, "achieved_tflops": achieved, "peak_fraction": fraction}
    return out


def build_models(names: list[str], runtime: Runtime, checkpoint: MotionNet | None, windows: bool) -> dict:
    """Row name -> MotionNet on the runtime's device (compiled if asked): a frames=2 model per name,
    and with ``windows`` the 11-frame model too. ``checkpoint`` weights go where the config matches."""
    models = {}
    for name in names:
        for frames, row in [(2, f"motionnet-{name}")] + windows * [(STACK_FLOWS + 1, f"motionnet-{name}{WINDOW_SUFFIX}")]:
            model = build_motionnet(MotionNetConfig(name, frames))
            if checkpoint is not None and checkpoint.config == model.config:
                model.load_state_dict(checkpoint.state_dict())
            model = runtime.prepare(model).eval()
            # One static graph per clip size (torch 2.14's dynamic-shape path fails on this model).
            models[row] = torch.compile(model, dynamic=False) if runtime.compile else model
    return models


def run(args: argparse.Namespace) -> dict:
    runtime = RuntimeOptions.from_args(args).resolve()
    checkpoint = load_motionnet(args.checkpoint) if args.checkpoint else None
    native_models = args.native_models or (args.models if runtime.device.type == "cuda" else ["tiny"])
    result: dict = {"machine": machine_info(runtime.device),
                    "settings": {"clips": str(args.clips), "sizes": args.sizes, "pairs": args.pairs,
                                 "native_pairs": args.native_pairs, "batch": args.batch,
                                 "repeats": args.repeats, "native_repeats": args.native_repeats,
                                 "warmup": args.warmup, "models": args.models,
                                 "native_models": native_models, "methods": args.methods,
                                 "amp": runtime.amp, "channels_last": runtime.channels_last,
                                 "compile": runtime.compile,
                                 "weights": str(args.checkpoint) if args.checkpoint else "random"},
                    "sizes": {}}
    cache: dict = {}
    with tempfile.TemporaryDirectory(prefix="flow_speed_onnx_") as folder:
        for size in args.sizes:
            native = size == "native"
            pairs = args.native_pairs if native else args.pairs
            models = build_models(native_models if native else args.models, runtime, checkpoint,
                                  windows=pairs % STACK_FLOWS == 0)
            sessions, note = onnx_sessions(args.onnx, models, runtime, Path(folder), cache)
            result["settings"]["onnx_note"] = note
            clips = load_clip_frames(args.clips, size, pairs + 1)
            result["sizes"][size] = time_size(clips, models, args.methods, args, runtime,
                                              args.native_repeats if native else args.repeats, size, sessions)
            if not native and "compute" not in result:
                peak = peak_tflops(runtime, args.peak_tflops)
                result["compute"] = {"size": int(size), "peak_tflops": peak,
                                     "models": compute_use(models, result["sizes"][size]["pairs_per_s"],
                                                           int(size), runtime, peak)}
    if cache:
        import onnxruntime

        from hidden2stream.export import export_opset
        result["settings"]["onnx"] = {"opset": export_opset(), "onnxruntime": onnxruntime.__version__}
    return result


def markdown(result: dict) -> str:
    """The report: pairs/s per method and size, speed ratios, compute use."""
    s = result["settings"]
    lines = [f"# Flow speed ({machine_line(result['machine'])}, device {result['machine']['device']}, "
             f"amp {s['amp']}, channels_last {'on' if s['channels_last'] else 'off'}, "
             f"compile {'on' if s['compile'] else 'off'}, MotionNet pair batch {s['batch']}, weights {s['weights']})",
             "", f"`-w{STACK_FLOWS + 1}`: the {STACK_FLOWS + 1}-frame MotionNet, one forward per {STACK_FLOWS}-flow "
             f"stack of the same pairs; seconds per stack = what one temporal-stream input costs.", ""]
    if s.get("onnx"):
        lines += [f"`-ort`: the same MotionNet exported to ONNX (opset {s['onnx']['opset']}) and run by ONNX Runtime "
                  f"{s['onnx']['onnxruntime']} on the CPU, fp32, same batches.", ""]
    elif s.get("onnx_note"):
        lines += [s["onnx_note"] + ".", ""]
    for size, r in result["sizes"].items():
        shape = "native size per clip" if size == "native" else f"{size}x{size}"
        tvl1 = r["pairs_per_s"].get("tvl1")
        rows = [[name, rate, 1000.0 / rate, STACK_FLOWS / rate, f"{rate / tvl1:.2f}x" if tvl1 else "n/a"]
                for name, rate in r["pairs_per_s"].items()]
        lines += [f"## {shape}: {r['pairs']} pairs from {len(r['clips'])} clips, median of {r['repeats']}", "",
                  markdown_table(["method", "pairs/s", "ms/pair", f"s per {STACK_FLOWS}-flow stack",
                                  "speed vs TV-L1"], rows), "",
                  "ratios (pairs/s / pairs/s): " + ", ".join(f"{k} {v:.2f}x" for k, v in r["ratios"].items()), ""]
    if "compute" in result:
        c = result["compute"]
        rows = [[name, m["gflops_per_pair"], m["achieved_tflops"],
                 f"{100 * m['peak_fraction']:.1f}%" if m["peak_fraction"] is not None else "n/a"]
                for name, m in c["models"].items()]
        if not result["machine"].get("gpu"):
            peak = "n/a on CPU"
        elif c["peak_tflops"]:
            peak = f"{c['peak_tflops']:.0f} TFLOPS bf16 dense"
        else:
            peak = "unknown for this GPU: pass --peak-tflops"
        lines += [f"## Compute at {c['size']}x{c['size']} (peak {peak})", "",
                  markdown_table(["MotionNet", "GFLOPs/pair", "achieved TFLOPS", "of peak"], rows), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    return run_benchmark("flow_speed", build_parser(), run, markdown, argv)


if __name__ == "__main__":
    run_cli(main)
