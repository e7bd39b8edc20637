"""The whole pipeline on the embedded data: pretrain MotionNet, train end to end, evaluate.

    python experiments/main.py                 # CPU: well under 30 minutes, no files needed
    python experiments/main.py --quick         # a few minutes, smaller everything (smoke run)

Runs ``pretrain_motion.py`` then ``train_two_stream.py`` (fused, MotionNet from the pretraining
checkpoint) with the same frames and size, and prints the flow and accuracy tables. Each stage
resumes from its own checkpoint when rerun with ``--resume``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pretrain_motion
import train_two_stream

from hidden2stream.cli import OneLineParser, run_cli
from hidden2stream.evaluate import action_table, ActionReport


def main(argv: list[str] | None = None) -> dict:
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/main"))
    p.add_argument("--quick", action="store_true", help="tiny budgets: checks the pipeline, not accuracy")
    p.add_argument("--resume", action="store_true", help="continue each stage from its checkpoint")
    p.add_argument("--device", default="auto")
    args: argparse.Namespace = p.parse_args(argv)
    common = ["--frames", "6", "--size", "64", "--device", args.device] + (["--resume"] if args.resume else [])
    pretrain_steps, joint_steps = ("60", "40") if args.quick else ("1500", "300")
    motion = pretrain_motion.main(["--out", str(args.out / "motion"), "--steps", pretrain_steps,
                                   "--eval-items", "8" if args.quick else "32", *common])
    joint = train_two_stream.main(["--out", str(args.out / "two_stream"), "--steps", joint_steps,
                                   "--motion-checkpoint", str(args.out / "motion" / "checkpoint.pt"),
                                   *(["--train-items", "400", "--test-items", "48"] if args.quick else []),
                                   *common])
    report = ActionReport(num_classes=joint["num_classes"], clip_top1=joint["clip_top1"],
                          video_top1=joint["video_top1"], video_top5=joint["video_top5"])
    summary = {"motion": motion, "two_stream": joint}
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print("\n== hidden two-stream on the embedded action data ==\n"
          f"MotionNet held-out EPE {motion['synthetic']['epe']:.3f} px "
          f"(zero flow {motion['synthetic']['zero_epe']:.3f}"
          + (f", TV-L1 {motion['tvl1']['epe']:.3f})" if "tvl1" in motion else ")") + "\n"
          + action_table(report) + f"\nresults in {args.out}/")
    return summary


if __name__ == "__main__":
    run_cli(main)
