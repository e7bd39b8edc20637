"""Make the MotionNet weights this package ships, with one reproducible command.

    python experiments/make_weights.py            # about 55 minutes on a 2-core CPU
    python experiments/make_weights.py --resume   # continue an interrupted run (each stage)

Trains MotionNet-corr in two stages (beyond the paper, see the README), both on the exact flow of
photo layers from ``<shared>/data/images`` with realistic motions, 320x320 renders zoomed by 0.6-1.0:

1. ``pretrain_motion.py --recipe corr-supervised`` (``OUT/supervised``, ``--steps``);
2. ``pretrain_motion.py --recipe corr-refine --init OUT/supervised/checkpoint.pt``
   (``OUT/refine``, ``--refine-steps``): the decoder grows a 1/2-level refinement and half of the
   clips have a still camera; the model config adds the Lucas-Kanade refinement of the
   full-resolution flow (``hidden2stream/flow/refine.py``, no weights).

It copies the second stage's weights to ``hidden2stream/weights/`` and records them in
``MANIFEST.json`` with their sha256, this command, the data, the steps and CPU time of both stages
and their measured quality: EPE on the real ground-truth pairs of ``<shared>/data/flow_gt`` (the
development set; never trained on) and on the synthetic benchmark set at 224x224 (seeds apart
from training's), beside zero flow. The weights serve any window length (``frames``).
"""
from __future__ import annotations

import json

from hidden2stream.pipeline.weights import WeightsOptions, run
from hidden2stream_experiments.cli import run_cli
from hidden2stream_experiments.parsing import parse_options


def main(argv: list[str] | None = None) -> dict:
    entry = run(parse_options(WeightsOptions, argv, __doc__))
    print(json.dumps({k: entry[k] for k in ("file", "sha256", "steps", "train_cpu_minutes", "quality")}, indent=2))
    return entry


if __name__ == "__main__":
    run_cli(main)
