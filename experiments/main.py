"""The whole pipeline on the embedded data: train the hidden two-stream network end to end, evaluate.

    python experiments/main.py                   # CPU: 14-27 minutes (2 cores), no files needed
    python experiments/main.py --quick           # a few minutes, smaller everything (smoke run)
    python experiments/main.py --pretrain-motion # pretrain a tiny MotionNet first instead of the shipped one

By default the hidden stream starts from the shipped MotionNet weights (``default``: MotionNet-corr,
see ``hidden2stream/weights/MANIFEST.json``). ``--pretrain-motion`` runs the stage of ``pretrain_motion.py``
first (the paper's unsupervised pretraining, tiny model) and starts from that checkpoint. Then
the stage of ``train_two_stream.py`` trains the fused network end to end on the embedded action data, and the
flow of the MotionNet it started from is scored on the real ground-truth pairs of the shared data
beside TV-L1 and zero flow. Each stage resumes from its own checkpoint when rerun with ``--resume``.
The pipeline itself lives in :mod:`hidden2stream.pipeline.job`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from hidden2stream.cli import OneLineParser, add_quiet_arg, run_cli
from hidden2stream.pipeline.job import run_pipeline
from hidden2stream.progress import set_quiet


def main(argv: list[str] | None = None) -> dict:
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/main"))
    p.add_argument("--quick", action="store_true", help="tiny budgets: checks the pipeline, not accuracy")
    p.add_argument("--resume", action="store_true", help="continue each stage from its checkpoint")
    p.add_argument("--pretrain-motion", action="store_true",
                   help="pretrain a tiny MotionNet without labels first, instead of the shipped weights")
    p.add_argument("--device", default="auto")
    add_quiet_arg(p)
    args: argparse.Namespace = p.parse_args(argv)
    set_quiet(args.quiet)
    return run_pipeline(args.out, args.quick, args.resume, args.pretrain_motion, args.device)


if __name__ == "__main__":
    run_cli(main)
