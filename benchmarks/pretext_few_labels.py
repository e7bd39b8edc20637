"""Few labels: fused accuracy on the embedded action set with and without playback pretext pretraining.

    python benchmarks/pretext_few_labels.py [--videos DIR] [--per-class 5,20] [--steps 100]

First the two-stream network (shipped MotionNet, both streams) is trained on playback labels
(:mod:`hidden2stream.data.playback`: speed x direction, no human label) from the unlabelled videos
of ``--videos`` (default: the shared clips). Then, for each label budget of ``--per-class`` videos
per class (12 classes), the same fine-tuning runs twice with the same data, seed and steps: from
scratch streams (MotionNet from the shipped weights, as usual) and from the pretext checkpoint
(``--init``: every weight but the classifier heads). Scored on the same 240 test videos.
Writes ``pretext_few_labels.json`` / ``.md`` to ``--out``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from benchmarks.common import add_training_run_args, machine_info, run_benchmark, table_report, two_stream_run
from hidden2stream.options import positive_int
from hidden2stream_experiments.cli import OneLineParser, run_cli
from hidden2stream_experiments.parsing import argparse_type
from hidden2stream.errors import UserError
from hidden2stream.paths import shared_data
from hidden2stream.progress import stage

CLASSES = 12  # the embedded action set: 3 appearances x 4 motions
MOTION = dict(motion="corr", motion_checkpoint="default", log_images_every=0)


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--videos", type=Path, help="unlabelled videos for the pretext (default: the shared clips)")
    p.add_argument("--per-class", default="5,20", help="comma list: labelled training videos per class")
    p.add_argument("--pretext-steps", type=argparse_type(positive_int), default=200)
    add_training_run_args(p, 100, "fine-tuning steps per run", "benchmarks/results/pretext_few_labels")
    return p


def budgets(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"--per-class {text!r} is not a comma list of integers") from None
    if not values or min(values) < 1:
        raise UserError(f"--per-class {text!r}: each budget must be >= 1")
    return values


def run(args: argparse.Namespace) -> dict:
    videos = args.videos or shared_data("clips")
    if not videos.is_dir():
        raise UserError(f"no videos in {videos}: pass --videos DIR (or set H2S_SHARED)")
    stage(f"playback pretext on {videos}, {args.pretext_steps} steps")
    pretext = two_stream_run(args.out / "runs" / "pretext", dataset="playback", video_root=videos, streams="both",
                             segments=1, steps=args.pretext_steps, batch_size=args.batch_size,
                             frame_cache=args.out / "frame_cache", workers=args.workers, **MOTION)
    rows = []
    for per_class in budgets(args.per_class):
        for init in (False, True):
            name = f"{per_class}-per-class-{'pretext' if init else 'scratch'}"
            stage(f"{name}: {args.steps} steps on {per_class * CLASSES} labelled clips")
            extra = dict(init=args.out / "runs" / "pretext" / "checkpoint.pt") if init else {}
            summary = two_stream_run(args.out / "runs" / name, streams="both", train_items=per_class * CLASSES,
                                     test_items=args.test_items, steps=args.steps, batch_size=args.batch_size,
                                     workers=args.workers, **MOTION, **extra)
            rows.append({"per_class": per_class, "pretext": init, "fused": summary["video_top1"]["fused"],
                         "spatial": summary["video_top1"]["spatial"], "temporal": summary["video_top1"]["temporal"],
                         "train_seconds": summary["train_seconds"]})
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    return {"machine": machine_info(), "settings": settings, "rows": rows,
            "pretext": {"factor_accuracy": pretext["factor_accuracy"], "videos": str(videos),
                        "train_seconds": pretext["train_seconds"]}}


def markdown(result: dict) -> str:
    s = result["settings"]
    table = [[r["per_class"], "playback pretext" if r["pretext"] else "none", r["fused"], r["spatial"], r["temporal"],
              r["train_seconds"]] for r in result["rows"]]
    settings = (f"pretext: {s['pretext_steps']} steps on playback labels of {result['pretext']['videos']}; "
                f"fine-tuning: {s['steps']} steps x batch {s['batch_size']} on the embedded action set, "
                f"{s['test_items']} test videos, chance {1 / CLASSES:.3f}")
    return table_report("Few labels, with and without playback pretraining", result["machine"], settings,
                        ["labelled videos per class", "pretraining", "fused top-1", "spatial top-1",
                         "temporal top-1", "fine-tune s"], table)


def main(argv: list[str] | None = None) -> dict:
    return run_benchmark("pretext_few_labels", build_parser(), run, markdown, argv)


if __name__ == "__main__":
    run_cli(main)
