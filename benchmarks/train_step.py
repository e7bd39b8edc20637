"""Training throughput: clips/s and peak memory of hidden two-stream training steps per configuration.

    python benchmarks/train_step.py [--hidden stacked,branched] [--fusion late,conv,sum,bilinear]
                                    [--motion-mode trained,frozen] [--arch tiny,resnet18] [--product]
                                    [--streams both,spatial,temporal] [--temporal-fusion avg,max3d]
                                    [--size 64] [--frames 6] [--segments 3] [--batch 16]
                                    [--pretrain tiny,paper] [--steps 5] [--out benchmarks/results]

A step is what the fine-tuning loop does: forward of ``hidden_two_stream`` on a synthetic action
batch ``(B, K, T+1, 3, H, W)``, the multi-task :class:`ActionObjective` (cross-entropy per head +
the fine-tune motion loss unless MotionNet is frozen), backward, AdamW. MotionNet pretraining alone
(:class:`MotionObjective`, the default ``improved`` loss, Adam) is timed too. Each configuration
runs ``--warmup`` untimed steps then ``--steps`` timed ones; clips/s = batch / median step time.

Configurations: the first value of every list is the baseline and each other value is tried with
the rest at baseline (``--product``: every combination). An ``--arch`` item is one arch for both
streams or ``SPATIAL:TEMPORAL`` (e.g. ``r2plus1d_18:tiny``: a 3D spatial stream with the tiny
hidden stream); ``--streams spatial`` / ``temporal`` time one stream alone (its head only). Peak memory: on CUDA
``torch.cuda.max_memory_allocated``; on CPU each configuration runs in a fresh subprocess and
reports its peak RSS (``--in-process``: one process, peak RSS so far, not per configuration).
Writes ``train_step.json`` and ``train_step.md`` to ``--out``.
"""
from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from benchmarks.common import comma_choices, machine_info, machine_line, median, publish, timed
from hidden2stream.options import frame_count, image_size, non_negative_int, options_check, positive_int
from hidden2stream_experiments.cli import OneLineParser, run_cli
from hidden2stream_experiments.parsing import argparse_type
from hidden2stream.data.synthetic_actions import SyntheticActionConfig, SyntheticActionDataset
from hidden2stream.data.synthetic_flow import SyntheticFlowConfig, SyntheticFlowDataset
from hidden2stream.errors import UserError
from hidden2stream.losses.motion import PRESETS, MotionLossConfig
from hidden2stream.models.fusion import FUSIONS, TEMPORAL_FUSIONS, check_fusion
from hidden2stream.models.hidden import HIDDEN_KINDS
from hidden2stream.models.motionnet import MOTIONNETS, MotionNetConfig, build_motionnet
from hidden2stream.models.streams import STREAM_ARCHS, VIDEO_ARCHS
from hidden2stream.models.two_stream import hidden_two_stream
from hidden2stream.evaluation.report import markdown_table
from hidden2stream.train.objectives import ActionObjective, MotionObjective
from hidden2stream.runtime import Runtime, RuntimeOptions
from hidden2stream_experiments.parsing import add_options

MOTION_MODES = ("trained", "frozen")
STREAM_KINDS_RUN = {"both": ("spatial", "temporal"), "spatial": ("spatial",), "temporal": ("temporal",)}
STREAM_KINDS = tuple(STREAM_KINDS_RUN)
CLIP_FRAMES = 16  # synthetic clip length the K windows are drawn from (at least T+1)


def arch_pairs(text: str) -> list[str]:
    """argparse type: a comma list of ``ARCH`` or ``SPATIAL:TEMPORAL`` items, each arch in STREAM_ARCHS."""
    items = [s.strip() for s in text.split(",") if s.strip()]
    if not items or any(len(i.split(":")) > 2 or any(a not in STREAM_ARCHS for a in i.split(":")) for i in items):
        raise argparse.ArgumentTypeError(f"{text!r}: give ARCH or SPATIAL:TEMPORAL items, archs from "
                                         f"{', '.join(STREAM_ARCHS)}")
    return items


def split_arch(item: str) -> tuple[str, str]:
    """``"r2plus1d_18:tiny"`` -> ``("r2plus1d_18", "tiny")``; ``"tiny"`` -> ``("tiny", "tiny")``."""
    spatial, _, temporal = item.partition(":")
    return spatial, temporal or spatial


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--hidden", type=comma_choices(HIDDEN_KINDS, "--hidden"), default=["stacked", "branched"])
    p.add_argument("--fusion", type=comma_choices(FUSIONS, "--fusion"),
                   default=["late", "conv", "sum", "bilinear"])
    p.add_argument("--motion-mode", type=comma_choices(MOTION_MODES, "--motion-mode"), default=list(MOTION_MODES),
                   help="MotionNet trained end to end or frozen")
    p.add_argument("--arch", type=arch_pairs, default=["tiny", "resnet18"],
                   help="stream architecture: ARCH for both streams or SPATIAL:TEMPORAL")
    p.add_argument("--streams", type=comma_choices(STREAM_KINDS, "--streams"), default=["both"],
                   help="streams trained: both (fused) or one alone")
    p.add_argument("--temporal-fusion", type=comma_choices(TEMPORAL_FUSIONS, "--temporal-fusion"), default=["avg"],
                   help="temporal fusion of conv fusions (with a 3D stream: avg pools time, max3d/conv3d keep it)")
    p.add_argument("--motion", choices=sorted(MOTIONNETS), default="tiny", help="MotionNet inside the network")
    p.add_argument("--product", action="store_true", help="every combination instead of one change at a time")
    p.add_argument("--pretrain", type=comma_choices(sorted(MOTIONNETS), "--pretrain"), default=["tiny", "paper"],
                   help="MotionNet sizes timed for pretraining alone")
    p.add_argument("--no-pretrain", action="store_true", help="skip MotionNet pretraining")
    p.add_argument("--size", type=argparse_type(image_size), default=(64, 64), help="N or HxW")
    p.add_argument("--frames", type=argparse_type(frame_count), default=6, help="T+1 frames per window (paper: 11)")
    p.add_argument("--segments", type=argparse_type(positive_int), default=3, help="TSN segments K")
    p.add_argument("--batch", type=argparse_type(positive_int), default=16, help="clips per step")
    p.add_argument("--steps", type=argparse_type(positive_int), default=5, help="timed steps (median)")
    p.add_argument("--warmup", type=argparse_type(non_negative_int), default=2, help="untimed steps first")
    p.add_argument("--in-process", action="store_true", help="CPU: no subprocess per configuration")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output folder")
    p.add_argument("--child", help=argparse.SUPPRESS)  # one configuration as JSON, run in a subprocess
    add_options(p, RuntimeOptions)
    return p


def configurations(args: argparse.Namespace) -> list[dict]:
    """Two-stream configurations (baseline + one change at a time, or the product) and pretraining runs."""
    axes = {"hidden": args.hidden, "fusion": args.fusion, "motion_mode": args.motion_mode, "arch": args.arch,
            "streams": args.streams, "temporal_fusion": args.temporal_fusion}
    if args.product:
        combos = [dict(zip(axes, values)) for values in itertools.product(*axes.values())]
    else:
        base = {k: v[0] for k, v in axes.items()}
        combos = [base] + [{**base, k: value} for k, values in axes.items() for value in values[1:]]
    for c in combos:
        options_check("--fusion / --temporal-fusion", check_fusion, c["fusion"], c["temporal_fusion"])
    configs = [{"kind": "two_stream", "motion": args.motion, **c} for c in combos]
    if not args.no_pretrain:
        configs += [{"kind": "pretrain", "motion": name} for name in args.pretrain]
    return configs


def label(config: dict) -> str:
    if config["kind"] == "pretrain":
        return f"pretrain MotionNet-{config['motion']}"
    text = f"{config['hidden']}/{config['fusion']}/motion {config['motion_mode']}/{config['arch']}"
    if config.get("temporal_fusion", "avg") != "avg":
        text += f"/{config['temporal_fusion']}"
    if config.get("streams", "both") != "both":
        text += f"/{config['streams']} alone"
    return text


def action_batch(args: argparse.Namespace, device: torch.device) -> tuple[dict[str, torch.Tensor], int]:
    """One synthetic action batch and the class count; object speed lowered so small frames hold the path."""
    height, width = args.size
    clip_frames = max(CLIP_FRAMES, args.frames)
    room = min(height, width) * 0.8 - 1
    top = min(3.0, room / (clip_frames - 1))
    config = SyntheticActionConfig(segments=args.segments, frames=args.frames, height=height, width=width,
                                   speed=(top / 2, top), clip_frames=clip_frames)
    data = SyntheticActionDataset(args.batch, config, seed=0)
    items = [data[i] for i in range(args.batch)]
    return {"frames": torch.stack([i["frames"] for i in items]).to(device),
            "label": torch.stack([i["label"] for i in items]).to(device)}, data.num_classes


def flow_batch(args: argparse.Namespace, device: torch.device) -> dict[str, torch.Tensor]:
    """One batch of synthetic windows ``(B, T+1, 3, H, W)`` for MotionNet pretraining."""
    height, width = args.size
    data = SyntheticFlowDataset(args.batch, SyntheticFlowConfig(frames=args.frames, height=height, width=width))
    return {"frames": torch.stack([data[i]["frames"] for i in range(args.batch)]).to(device)}


def setup(config: dict, args: argparse.Namespace, runtime: Runtime):
    """(model, objective, optimizer, batch) for one configuration."""
    if config["kind"] == "pretrain":
        model = runtime.prepare(build_motionnet(MotionNetConfig(config["motion"], args.frames)))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
        return model, MotionObjective(PRESETS["improved"]()), optimizer, flow_batch(args, runtime.device)
    batch, num_classes = action_batch(args, runtime.device)
    spatial_arch, temporal_arch = split_arch(config["arch"])
    if config["hidden"] == "branched" and temporal_arch in VIDEO_ARCHS:
        temporal_arch = "tiny"  # unused by the branched stream, which has its own head
    model = hidden_two_stream(num_classes, motion=config["motion"], frames=args.frames,
                              spatial_arch=spatial_arch, temporal_arch=temporal_arch, hidden=config["hidden"],
                              fusion=config["fusion"], temporal_fusion=config.get("temporal_fusion", "avg"),
                              segments=args.segments)
    frozen = config["motion_mode"] == "frozen"
    if frozen:
        model.motionnet.requires_grad_(False)
    model = runtime.prepare(model)
    streams = STREAM_KINDS_RUN[config.get("streams", "both")]
    objective = ActionObjective(streams, None if frozen else MotionLossConfig.fine_tune())
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    return model, objective, optimizer, batch


def measure(config: dict, args: argparse.Namespace, runtime: Runtime) -> dict:
    """Median step time, clips/s and parameter counts of one configuration (in this process)."""
    torch.manual_seed(0)
    model, objective, optimizer, batch = setup(config, args, runtime)
    train_model = torch.compile(model) if runtime.compile else model
    train_model.train()
    scaler = runtime.grad_scaler()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with runtime.autocast():
            loss, _ = objective(train_model, batch)
        if not torch.isfinite(loss):
            raise UserError(f"{label(config)}: non-finite loss {float(loss)}")
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    if runtime.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(runtime.device)
    seconds = [timed(step, runtime.device) for _ in range(args.warmup + args.steps)][args.warmup:]
    step_s = median(seconds)
    row = {"config": label(config), **config, "step_ms": 1000 * step_s, "clips_per_s": args.batch / step_s,
           "params_m": sum(p.numel() for p in model.parameters()) / 1e6,
           "trainable_m": sum(p.numel() for p in model.parameters() if p.requires_grad) / 1e6}
    if runtime.device.type == "cuda":
        row.update(peak_memory_mib=torch.cuda.max_memory_allocated(runtime.device) / 2**20,
                   memory="cuda max_memory_allocated")
    else:
        row.update(peak_memory_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   memory="peak RSS of a fresh process" if args.child else "peak RSS of the whole process so far")
    return row


def measure_in_child(config: dict, argv: list[str]) -> dict:
    """Run :func:`measure` in a fresh interpreter so that its peak RSS is this configuration's alone."""
    command = [sys.executable, str(Path(__file__).resolve()), *argv, "--child", json.dumps(config)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = (done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}").splitlines()
        raise UserError(f"{label(config)} failed: {lines[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def markdown(result: dict) -> str:
    s = result["settings"]
    rows = [[r["config"], r["clips_per_s"], r["step_ms"], r["peak_memory_mib"], r["trainable_m"], r["params_m"]]
            for r in result["rows"]]
    memory = {r["memory"] for r in result["rows"]}
    return (f"# Training step ({machine_line(result['machine'])}, device {result['machine']['device']}, "
            f"amp {s['amp']})\n\nbatch {s['batch']} clips x {s['segments']} segments x {s['frames']} frames at "
            f"{s['size'][0]}x{s['size'][1]} (pretraining: {s['batch']} windows); median of {s['steps']} steps after "
            f"{s['warmup']} warm-up steps; memory: {', '.join(sorted(memory))}\n\n"
            + markdown_table(["configuration", "clips/s", "ms/step", "peak MiB", "trainable M", "params M"], rows)
            + "\n")


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    runtime = RuntimeOptions.from_args(args).resolve()
    if args.child:
        row = measure(json.loads(args.child), args, runtime)
        print(json.dumps(row))
        return row
    subprocesses = runtime.device.type == "cpu" and not args.in_process
    rows = []
    for config in tqdm(configurations(args), desc="train step", unit="config", disable=None):
        rows.append(measure_in_child(config, argv) if subprocesses else measure(config, args, runtime))
    result = {"machine": machine_info(runtime.device),
              "settings": {"size": list(args.size), "frames": args.frames, "segments": args.segments,
                           "batch": args.batch, "steps": args.steps, "warmup": args.warmup, "amp": runtime.amp,
                           "channels_last": runtime.channels_last, "compile": runtime.compile,
                           "product": args.product, "subprocess_per_config": subprocesses},
              "rows": rows}
    return publish(args.out, "train_step", result, markdown(result))


if __name__ == "__main__":
    run_cli(main)
