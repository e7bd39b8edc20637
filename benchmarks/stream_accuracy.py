"""Accuracy and training cost of each RGB backbone alone and fused with the hidden stream.

    python benchmarks/stream_accuracy.py [--archs tiny,r2plus1d_18,s3d] [--steps 60] [--size 64]
                                         [--frames 6] [--motion corr] [--motion-checkpoint default]
                                         [--out benchmarks/results/stream_accuracy]

For every spatial arch, two runs of ``experiments/train_two_stream.py`` on the embedded synthetic
action data (12 classes: 3 appearances x 4 motion directions, chance 1/12), each in its own process
and run folder under ``--out``: the spatial stream alone (``--streams spatial``) and fused with the
hidden stream (``--streams both``; MotionNet ``--motion`` from ``--motion-checkpoint`` stacked onto
the tiny temporal CNN, ``--fusion``). Same data, seed, steps and test videos for every run; video
top-1 of the run's own head (spatial, or fused) and how much of the class each head gets right:
appearance (colour/texture) and motion (direction). A 2D spatial stream sees one frame, so its
motion accuracy is chance (1/4); a 3D one sees the clip and can learn the direction itself.

Training cost beside it: clips/s and peak memory of the same configurations from
``benchmarks/train_step.py`` (one fresh process per configuration). Writes ``stream_accuracy.json``
and ``stream_accuracy.md`` to ``--out``.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from benchmarks.common import comma_choices, machine_info, machine_line, publish
from hidden2stream.options import frame_count, positive_int
from hidden2stream_experiments.cli import OneLineParser, run_cli
from hidden2stream_experiments.parsing import argparse_type
from hidden2stream.errors import UserError
from hidden2stream.models.motionnet import MOTIONNETS
from hidden2stream.models.streams import STREAM_ARCHS
from hidden2stream.evaluation.report import markdown_table

REPO = Path(__file__).resolve().parent.parent
HEADS = {"spatial": "spatial", "both": "fused"}  # --streams -> the head that run is scored on


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--archs", type=comma_choices(STREAM_ARCHS, "--archs"), default=["tiny", "r2plus1d_18", "s3d"],
                   help="spatial stream archs (2D or 3D); the temporal stream stays tiny")
    p.add_argument("--steps", type=argparse_type(positive_int), default=60, help="training steps per run")
    p.add_argument("--batch-size", type=argparse_type(positive_int), default=8)
    p.add_argument("--size", type=argparse_type(positive_int), default=64, help="square frame size")
    p.add_argument("--frames", type=argparse_type(frame_count), default=6, help="T+1 frames per window")
    p.add_argument("--segments", type=argparse_type(positive_int), default=3)
    p.add_argument("--train-items", type=argparse_type(positive_int), default=2000)
    p.add_argument("--test-items", type=argparse_type(positive_int), default=96)
    p.add_argument("--motion", choices=sorted(MOTIONNETS), default="corr")
    p.add_argument("--motion-checkpoint", default="default",
                   help="MotionNet weights: shipped name or checkpoint ('none': random init)")
    p.add_argument("--fusion", default="late")
    p.add_argument("--no-speed", action="store_true", help="skip the train_step.py clips/s and memory columns")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/stream_accuracy"))
    return p


def run_script(script: str, argv: list[str]) -> None:
    """``python REPO/<script> argv`` in a fresh process; its one-line error becomes ours."""
    done = subprocess.run([sys.executable, str(REPO / script), *argv], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"{script} {' '.join(argv)} failed (exit {done.returncode}): {last}")


def train_run(args: argparse.Namespace, arch: str, streams: str) -> dict:
    """Train one configuration (resumed if its folder has a finished run) and read its eval.json."""
    out = args.out / f"{arch}-{streams}"
    if not (out / "eval.json").exists():
        motion = [] if args.motion_checkpoint == "none" else ["--motion-checkpoint", args.motion_checkpoint]
        run_script("experiments/train_two_stream.py", [
            "--out", str(out), "--resume", "--device", "cpu", "--spatial-arch", arch, "--streams", streams,
            "--motion", args.motion, *motion, "--fusion", args.fusion, "--steps", str(args.steps),
            "--batch-size", str(args.batch_size), "--size", str(args.size), "--frames", str(args.frames),
            "--segments", str(args.segments), "--train-items", str(args.train_items),
            "--test-items", str(args.test_items)])
    summary = json.loads((out / "eval.json").read_text())
    head = HEADS[streams]
    factors = summary.get("factor_accuracy", {}).get(head, {})
    return {"arch": arch, "streams": streams, "head": head, "video_top1": summary["video_top1"][head],
            "appearance": factors.get("appearance"), "motion": factors.get("motion"),
            "chance": summary["chance"], "train_seconds": summary["train_seconds"]}


def speed_rows(args: argparse.Namespace) -> dict[tuple[str, str], dict]:
    """train_step.py's clips/s and peak MiB for ``(arch, streams)``, one fresh process each."""
    out = args.out / "train_step"
    run_script("benchmarks/train_step.py", [
        "--arch", ",".join(f"{a}:tiny" for a in args.archs), "--streams", "both,spatial", "--product",
        "--hidden", "stacked", "--fusion", args.fusion, "--motion-mode", "trained", "--motion", args.motion,
        "--no-pretrain", "--size", str(args.size), "--frames", str(args.frames), "--segments", str(args.segments),
        "--batch", str(args.batch_size), "--device", "cpu", "--out", str(out)])
    rows = json.loads((out / "train_step.json").read_text())["rows"]
    return {(row["arch"].split(":")[0], row["streams"]): row for row in rows}


def run(args: argparse.Namespace) -> dict:
    rows = [train_run(args, arch, streams) for arch in args.archs for streams in ("spatial", "both")]
    if not args.no_speed:
        speeds = speed_rows(args)
        for row in rows:
            speed = speeds[(row["arch"], row["streams"])]
            row.update(clips_per_s=speed["clips_per_s"], peak_memory_mib=speed["peak_memory_mib"])
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    return {"machine": machine_info(), "settings": settings, "rows": rows}


def markdown(result: dict) -> str:
    s = result["settings"]
    columns = ["spatial arch", "streams", "video top-1", "appearance", "motion", "train s"]
    speed = "clips_per_s" in result["rows"][0]
    columns += ["clips/s", "peak MiB"] if speed else []
    table = [[r["arch"], "alone" if r["streams"] == "spatial" else f"+ hidden ({s['motion']})", r["video_top1"],
              r["appearance"], r["motion"], r["train_seconds"]]
             + ([r["clips_per_s"], r["peak_memory_mib"]] if speed else []) for r in result["rows"]]
    chance = result["rows"][0]["chance"]
    return (f"# Spatial backbones alone and fused with the hidden stream ({machine_line(result['machine'])})\n\n"
            f"embedded synthetic actions, {s['steps']} steps x batch {s['batch_size']}, {s['size']}x{s['size']}, "
            f"{s['frames']} frames x {s['segments']} segments, {s['test_items']} test videos; chance top-1 "
            f"{chance:.3f}, appearance 1/3, motion 1/4\n\n" + markdown_table(columns, table))


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    result = run(args)
    return publish(args.out, "stream_accuracy", result, markdown(result))


if __name__ == "__main__":
    run_cli(main)
