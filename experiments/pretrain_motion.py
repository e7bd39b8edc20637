"""Pretrain MotionNet without flow labels (the unsupervised multi-scale loss of Hidden Two-Stream).

    python experiments/pretrain_motion.py                                  # embedded synthetic data
    python experiments/pretrain_motion.py --videos ../shared/data/clips    # real clips, no labels
    python experiments/pretrain_motion.py --recipe cpu-best                # lowest EPE in ~10 CPU minutes
    torchrun --nproc-per-node 8 experiments/pretrain_motion.py --recipe paper --videos /data/ucf101 --resume

CPU defaults (tiny model, T+1 = 6 frames, 64x64, 1500 steps, lr 1e-3) deviate from the paper (paper
size, 11 frames, 224x224, 400k iterations at lr 3.2e-5): a short run needs a larger learning rate;
the warm-up and the non-finite-loss guard handle the early divergence the paper's recipe is known for.

At the end it prints EPE on held-out synthetic pairs beside zero flow and OpenCV TV-L1 (with
``--videos``: photometric error on held-out clip windows beside zero flow) and saves pictures.
The stage itself lives in :mod:`hidden2stream.pipeline.pretrain`.
"""
from __future__ import annotations

from hidden2stream.pipeline.pretrain import RECIPES, PretrainOptions, run
from hidden2stream_experiments.cli import run_cli
from hidden2stream_experiments.parsing import parse_options


def main(argv: list[str] | None = None) -> dict:
    return run(parse_options(PretrainOptions, argv, __doc__, presets=("recipe", RECIPES.__getitem__)))


if __name__ == "__main__":
    run_cli(main)
