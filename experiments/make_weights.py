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

import argparse
import hashlib
import json
import platform
from pathlib import Path

import torch

from hidden2stream.cli import OneLineParser, positive_int, run_cli
from hidden2stream.data.flow_pairs import iter_flow_pairs
from hidden2stream.data.synthetic_flow import SyntheticFlowDataset
from hidden2stream.evaluate_flow import (BENCHMARK_SEED, benchmark_synthetic_config, motionnet_method,
                                         score_pairs, synthetic_pairs, zero_method)
from hidden2stream.paths import shared_data
from hidden2stream.pipeline import pretrain, stage_options
from hidden2stream.pretrained import load_motionnet
from hidden2stream.weights import MANIFEST, WEIGHTS_DIR
from hidden2stream.checkpoint import Checkpoint

RECIPES = ("corr-supervised", "corr-refine")  # stage 1, stage 2 (pipeline.pretrain.RECIPES)
MAX_BYTES = 10 * 1024 * 1024


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--name", default="default", help="name the weights are loaded by")
    p.add_argument("--out", type=Path, default=Path("runs/weights"), help="training run folder")
    p.add_argument("--steps", type=positive_int, default=2000, help="stage 1 steps")
    p.add_argument("--refine-steps", type=positive_int, default=300, help="stage 2 steps")
    p.add_argument("--workers", type=int, default=1, help="DataLoader workers rendering the synthetic data")
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")
    p.add_argument("--eval-items", type=positive_int, default=24, help="synthetic 224x224 pairs scored")
    return p


def quality(weights: Path, eval_items: int) -> dict:
    """EPE of the weights (as a 2-frame model) and of zero flow on the real and synthetic sets."""
    model = load_motionnet(weights, frames=2)
    methods = [motionnet_method(model, "cpu", "MotionNet"), zero_method()]
    real = score_pairs(methods, iter_flow_pairs(shared_data("flow_gt")), desc="real pairs")
    synthetic = SyntheticFlowDataset(eval_items, benchmark_synthetic_config(224, shared_data("images")),
                                     seed=BENCHMARK_SEED)
    synth = score_pairs(methods, synthetic_pairs(synthetic), desc="synthetic 224")
    return {
        "real_dev_set": {name: {"epe": {p: round(s["epe"], 4) for p, s in row["pairs"].items()},
                                "mean_epe": round(row["mean_epe"], 4)} for name, row in real.items()},
        "synthetic_224": {name: {"mean_epe": round(row["mean_epe"], 4), "fl_all": round(row["mean_fl_all"], 4),
                                 "pairs": row["count"]} for name, row in synth.items()},
    }


def shipped_file(checkpoint: Checkpoint) -> Checkpoint:
    """What a shipped weights file holds: the MotionNet's tagged config and its weights, nothing
    of the training run (optimizer, schedule); ``load_motionnet`` reads it as a checkpoint."""
    return Checkpoint("motionnet", checkpoint.model_config, checkpoint.model)


def package(runs: list[Path], name: str, command: str, eval_items: int) -> dict:
    """Copy the last run's weights into ``hidden2stream/weights`` and write their manifest entry
    (steps and CPU time summed over the runs, the stages of one training)."""
    checkpoints = [Checkpoint.load(run / "checkpoint.pt", kind="motionnet") for run in runs]
    checkpoint = checkpoints[-1]
    config = checkpoint.config
    path = WEIGHTS_DIR / f"motionnet_{config.variant}.pt"
    shipped_file(checkpoint).save(path)
    if path.stat().st_size > MAX_BYTES:
        raise RuntimeError(f"{path} is {path.stat().st_size} bytes, over the 10 MB limit for shipped weights")
    entry = {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
             "model": config.variant, "trained_frames": config.frames, "command": command,
             "data": f"exact flow of synthetic photo layers ({' then '.join(RECIPES)}: the 20 photos of "
                     "shared/data/images, realistic motions, 320x320 zoomed 0.6-1.0; stage 2: half the clips "
                     "with a still camera; the full-resolution output refined by parameter-free Lucas-Kanade steps); no real "
                     "flow labels, flow_gt never trained on",
             "steps": sum(c.step for c in checkpoints),
             "stage_steps": [c.step for c in checkpoints],
             "train_cpu_minutes": round(sum(c.seconds for c in checkpoints) / 60, 1),
             "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
             "quality": quality(path, eval_items)}
    manifest = json.loads(MANIFEST.read_text()) if MANIFEST.is_file() else {"weights": {}}
    manifest["weights"][name] = entry
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    return entry


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    runs = [args.out / "supervised", args.out / "refine"]
    common = dict(workers=args.workers, no_tvl1=True, resume=args.resume)
    pretrain.run(stage_options(pretrain.recipe_parser(RECIPES[0]), steps=args.steps, out=runs[0], **common))
    pretrain.run(stage_options(pretrain.recipe_parser(RECIPES[1]), steps=args.refine_steps, out=runs[1],
                               init=runs[0] / "checkpoint.pt", **common))
    command = "python experiments/make_weights.py" + (f" --steps {args.steps}" if args.steps != 2000 else "") \
        + (f" --refine-steps {args.refine_steps}" if args.refine_steps != 300 else "")
    entry = package(runs, args.name, command, args.eval_items)
    print(json.dumps({k: entry[k] for k in ("file", "sha256", "steps", "train_cpu_minutes", "quality")}, indent=2))
    return entry


if __name__ == "__main__":
    run_cli(main)
