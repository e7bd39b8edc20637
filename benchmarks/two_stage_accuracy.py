"""The paper's comparison row on the embedded action set: hidden stream vs two-stage TV-L1 / DIS streams.

    python benchmarks/two_stage_accuracy.py [--flows motionnet,tvl1,dis] [--refinements lk,none] [--steps 150]

One ``--streams both`` run of the two-stream training per flow source, same data, seed, steps and
test videos: ``motionnet`` is the hidden stream (the shipped MotionNet stacked onto the tiny temporal
CNN, trained end to end), once per ``--refinements`` entry: ``lk`` classifies the network's flow
refined by its Lucas-Kanade step (the shipped default), ``none`` the network's flow alone (the
ablation: accuracy and training time with and without the step); ``tvl1`` / ``dis`` / ``farneback`` the two-stage baseline, the same
temporal CNN on OpenCV flow extracted once into a disk cache (``--flow-cache``, kept across runs).
Reports the temporal stream's and the fused network's video top-1, the temporal stream's motion
accuracy (the class's motion direction, chance 1/4), training seconds and the cache's size.
Writes ``two_stage_accuracy.json`` / ``.md`` to ``--out``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from benchmarks.common import (add_training_run_args, comma_choices, machine_info, run_benchmark, table_report,
                               two_stream_run)
from hidden2stream.options import positive_int
from hidden2stream_experiments.cli import OneLineParser, run_cli
from hidden2stream_experiments.parsing import argparse_type
from hidden2stream.models.two_stream import FLOW_SOURCES
from hidden2stream.progress import stage


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--flows", type=comma_choices(FLOW_SOURCES, "--flows"), default=["motionnet", "tvl1", "dis"],
                   help="flow sources: motionnet (the hidden stream) and classical methods")
    p.add_argument("--refinements", type=comma_choices(("lk", "none"), "--refinements"), default=["lk", "none"],
                   help="the hidden stream's runs: with the Lucas-Kanade step (lk), the network alone (none)")
    p.add_argument("--train-items", type=argparse_type(positive_int), default=1200)
    add_training_run_args(p, 150, "training steps per run", "benchmarks/results/two_stage_accuracy")
    return p


def flow_run(args: argparse.Namespace, flow: str, refinement: str = "none") -> dict:
    """One run and its row: the hidden stream (``flow="motionnet"``, with ``refinement``) or a
    two-stage one on ``flow``."""
    name = f"motionnet-{refinement}" if flow == "motionnet" else flow
    motion = (dict(motion="corr", motion_checkpoint="default", refinement=refinement) if flow == "motionnet"
              else dict(motion=flow))
    summary = two_stream_run(args.out / "runs" / name, streams="both", steps=args.steps, batch_size=args.batch_size,
                             train_items=args.train_items, test_items=args.test_items, log_images_every=0,
                             flow_cache=args.out / "flow_cache", workers=args.workers, **motion)
    return {"flow": name, "temporal": summary["video_top1"]["temporal"], "fused": summary["video_top1"]["fused"],
            "temporal_motion": summary["factor_accuracy"]["temporal"]["motion"], "chance": summary["chance"],
            "train_seconds": summary["train_seconds"], "flow_cache": (summary.get("flow_cache") or {}).get("text")}


def run(args: argparse.Namespace) -> dict:
    runs = [(flow, refinement) for flow in args.flows
            for refinement in (args.refinements if flow == "motionnet" else ["none"])]
    rows = []
    for flow, refinement in runs:
        stage(f"{flow}{' (' + refinement + ')' if flow == 'motionnet' else ''}: both streams, {args.steps} steps")
        rows.append(flow_run(args, flow, refinement))
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    return {"machine": machine_info(), "settings": settings, "rows": rows}


def markdown(result: dict) -> str:
    s = result["settings"]
    names = {"motionnet-lk": "hidden: shipped MotionNet + Lucas-Kanade, end to end",
             "motionnet-none": "hidden: shipped MotionNet alone, end to end"}
    table = [[names.get(r["flow"], f"two-stage {r['flow']} (cached)"), r["temporal"], r["temporal_motion"], r["fused"],
              r["train_seconds"], r["flow_cache"] or "nothing stored"] for r in result["rows"]]
    settings = (f"12 classes (chance {result['rows'][0]['chance']:.3f}; motion 1/4), {s['steps']} steps x batch "
                f"{s['batch_size']}, {s['train_items']} training clips, {s['test_items']} test videos, both streams "
                "trained, late fusion")
    return table_report("Hidden stream vs two-stage temporal streams, embedded actions", result["machine"], settings,
                        ["temporal stream on", "temporal top-1", "temporal motion acc.", "fused top-1", "train s",
                         "flow stored"], table)


def main(argv: list[str] | None = None) -> dict:
    return run_benchmark("two_stage_accuracy", build_parser(), run, markdown, argv)


if __name__ == "__main__":
    run_cli(main)
