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

from hidden2stream.pipeline.job import MainOptions, run_pipeline
from hidden2stream_experiments.cli import run_cli
from hidden2stream_experiments.parsing import parse_options


def main(argv: list[str] | None = None) -> dict:
    return run_pipeline(parse_options(MainOptions, argv, __doc__))


if __name__ == "__main__":
    run_cli(main)
