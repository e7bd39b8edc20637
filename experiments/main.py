"""The whole pipeline on the embedded data: train the hidden two-stream network end to end, evaluate.

    python experiments/main.py                   # CPU: about 10 minutes, no files needed
    python experiments/main.py --quick           # a few minutes, smaller everything (smoke run)
    python experiments/main.py --pretrain-motion # pretrain a tiny MotionNet first instead of the shipped one

By default the hidden stream starts from the shipped MotionNet weights (``default``: MotionNet-corr,
see ``hidden2stream/weights/MANIFEST.json``). ``--pretrain-motion`` runs ``pretrain_motion.py``
first (the paper's unsupervised pretraining, tiny model) and starts from that checkpoint. Then
``train_two_stream.py`` trains the fused network end to end on the embedded action data, and the
flow of the MotionNet it started from is scored on the real ground-truth pairs of the shared data
beside TV-L1 and zero flow. Each stage resumes from its own checkpoint when rerun with ``--resume``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pretrain_motion
import train_two_stream

from hidden2stream.cli import OneLineParser, run_cli
from hidden2stream.data.flow_pairs import iter_flow_pairs
from hidden2stream.evaluate import ActionReport, action_table, markdown_table
from hidden2stream.evaluate_flow import classic_method, motionnet_method, score_pairs, zero_method
from hidden2stream.paths import shared_data
from hidden2stream.pretrained import load_flow_model


def real_flow_scores(motion_source: str | Path) -> dict | None:
    """EPE of the MotionNet that the hidden stream starts from, TV-L1 and zero flow on the shared
    real ground-truth pairs (as :func:`load_flow_model` shapes it for a pair); None when the shared
    data is absent."""
    root = shared_data("flow_gt")
    if not root.is_dir():
        return None
    model = load_flow_model(motion_source, pair=True)
    methods = [motionnet_method(model, "cpu", "MotionNet (hidden stream start)"),
               classic_method("tvl1"), zero_method()]
    return score_pairs(methods, iter_flow_pairs(root), desc="real flow pairs")


def real_flow_table(scores: dict) -> str:
    """Markdown: one row per method, EPE per real pair and the mean."""
    pairs = list(next(iter(scores.values()))["pairs"])
    rows = [[name] + [row["pairs"][p]["epe"] for p in pairs] + [row["mean_epe"]]
            for name, row in scores.items()]
    return markdown_table(["method (EPE px)"] + pairs + ["mean"], rows)


def main(argv: list[str] | None = None) -> dict:
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/main"))
    p.add_argument("--quick", action="store_true", help="tiny budgets: checks the pipeline, not accuracy")
    p.add_argument("--resume", action="store_true", help="continue each stage from its checkpoint")
    p.add_argument("--pretrain-motion", action="store_true",
                   help="pretrain a tiny MotionNet without labels first, instead of the shipped weights")
    p.add_argument("--device", default="auto")
    args: argparse.Namespace = p.parse_args(argv)
    common = ["--frames", "6", "--size", "64", "--device", args.device] + (["--resume"] if args.resume else [])
    pretrain_steps, joint_steps = ("60", "40") if args.quick else ("1500", "300")
    summary: dict = {}
    if args.pretrain_motion:
        summary["motion"] = pretrain_motion.main(["--out", str(args.out / "motion"), "--steps", pretrain_steps,
                                                  "--eval-items", "8" if args.quick else "32", *common])
        motion_args = ["--motion", "tiny", "--motion-checkpoint", str(args.out / "motion" / "checkpoint.pt")]
    else:
        motion_args = ["--motion", "corr", "--motion-checkpoint", "default"]
    joint = train_two_stream.main(["--out", str(args.out / "two_stream"), "--steps", joint_steps, *motion_args,
                                   *(["--train-items", "400", "--test-items", "48"] if args.quick else []),
                                   *common])
    summary["two_stream"] = joint
    scores = real_flow_scores(motion_args[-1])
    text = "\n== hidden two-stream on the embedded action data ==\n"
    if scores is not None:
        summary["real_flow"] = scores
        text += "MotionNet the hidden stream starts from, on real ground-truth flow:\n" + real_flow_table(scores) + "\n"
    if "motion" in summary:
        motion = summary["motion"]
        text += (f"pretrained MotionNet held-out synthetic EPE {motion['synthetic']['epe']:.3f} px "
                 f"(zero flow {motion['synthetic']['zero_epe']:.3f}"
                 + (f", TV-L1 {motion['tvl1']['epe']:.3f})" if "tvl1" in motion else ")") + "\n")
    report = ActionReport(num_classes=joint["num_classes"], clip_top1=joint["clip_top1"],
                          video_top1=joint["video_top1"], video_top5=joint["video_top5"])
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(text + action_table(report) + f"\nresults in {args.out}/")
    return summary


if __name__ == "__main__":
    run_cli(main)
