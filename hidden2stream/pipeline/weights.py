"""Make the MotionNet weights this package ships, with one reproducible command (``experiments/make_weights.py``).

Two pretraining stages of MotionNet-corr on exact flow of photo layers (recipes ``corr-supervised``, then
``corr-refine`` from its checkpoint), then the weights copied to ``hidden2stream/weights/`` with their
manifest entry: sha256, the command, data, steps, CPU time and measured quality (:func:`quality`).
"""
from __future__ import annotations

import hashlib
import json
import platform
from dataclasses import dataclass
from pathlib import Path

import torch

from hidden2stream.checkpoint import Checkpoint
from hidden2stream.data.flow_pairs import iter_flow_pairs
from hidden2stream.data.synthetic_flow import SyntheticFlowDataset
from hidden2stream.evaluation.flow import (BENCHMARK_SEED, benchmark_synthetic_config, motionnet_method,
                                           score_pairs, synthetic_pairs, zero_method)
from hidden2stream.options import Options, option, positive_int
from hidden2stream.paths import shared_data
from hidden2stream.pipeline import pretrain
from hidden2stream.pretrained import load_motionnet
from hidden2stream.weights import MANIFEST, WEIGHTS_DIR

RECIPES = ("corr-supervised", "corr-refine")  # stage 1, stage 2 (pipeline.pretrain.RECIPES)
MAX_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class WeightsOptions(Options):
    """The options of ``make_weights.py``."""

    name: str = option("default", "name the weights are loaded by")
    out: Path = option(Path("runs/weights"), "training run folder", parse=Path)
    steps: int = option(2000, "stage 1 steps", parse=positive_int)
    refine_steps: int = option(300, "stage 2 steps", parse=positive_int)
    workers: int = option(1, "DataLoader workers rendering the synthetic data", parse=int)
    resume: bool = option(False, "continue OUT/checkpoint.pt")
    eval_items: int = option(24, "synthetic 224x224 pairs scored", parse=positive_int)


def stages(options: WeightsOptions) -> list[pretrain.PretrainOptions]:
    """The two pretraining runs: recipe ``corr-supervised`` in ``OUT/supervised``, then ``corr-refine`` in
    ``OUT/refine`` from the first one's checkpoint (each resumable, without the TV-L1 comparison)."""
    runs = [options.out / "supervised", options.out / "refine"]
    common = dict(workers=options.workers, no_tvl1=True, resume=options.resume)
    return [pretrain.PretrainOptions.from_recipe(RECIPES[0], steps=options.steps, out=runs[0], **common),
            pretrain.PretrainOptions.from_recipe(RECIPES[1], steps=options.refine_steps, out=runs[1],
                                                 init=runs[0] / "checkpoint.pt", **common)]


def command(options: WeightsOptions) -> str:
    """The command line the manifest records (the step counts when not the defaults)."""
    defaults = WeightsOptions()
    return "python experiments/make_weights.py" \
        + (f" --steps {options.steps}" if options.steps != defaults.steps else "") \
        + (f" --refine-steps {options.refine_steps}" if options.refine_steps != defaults.refine_steps else "")


def run(options: WeightsOptions) -> dict:
    """Both training stages (resumable), then the weights and their manifest entry (returned)."""
    runs = stages(options)
    for stage in runs:
        pretrain.run(stage)
    return package([stage.out for stage in runs], options.name, command(options), options.eval_items)


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
