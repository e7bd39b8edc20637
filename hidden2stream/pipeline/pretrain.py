"""Pretrain MotionNet without flow labels (the unsupervised multi-scale loss of Hidden Two-Stream).

The optional first stage of the pipeline: ``experiments/pretrain_motion.py`` parses its command
line into :class:`PretrainOptions` (``--recipe``'s defaults under the options typed) and calls :func:`run`;
:mod:`hidden2stream.pipeline.job` runs the same stage with the options built in code.

CPU defaults (tiny model, T+1 = 6 frames, 64x64, 1500 steps, lr 1e-3) deviate from the paper (paper
size, 11 frames, 224x224, 400k iterations at lr 3.2e-5): a short run needs a larger learning rate;
the warm-up and the non-finite-loss guard handle the early divergence the paper's recipe is known for.
At the end it scores EPE on held-out synthetic pairs beside zero flow and OpenCV TV-L1 (with
``--videos``: photometric error on held-out clip windows beside zero flow) and saves pictures.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from hidden2stream.data.clips import VideoWindowDataset
from hidden2stream.data.synthetic_flow import SyntheticFlowConfig, SyntheticFlowDataset
from hidden2stream.data.augment import clip_augmentation
from hidden2stream.errors import UserError
from hidden2stream.options import (existing_dir, existing_path, frame_count, image_size, option, override,
                                   positive_int, probability)
from hidden2stream.flow.refine import LucasKanadeRefinement
from hidden2stream.evaluation.flow import (evaluate_classic_flow, evaluate_classic_photometric, evaluate_flow,
                                           evaluate_photometric)
from hidden2stream.losses.motion import PRESETS
from hidden2stream.paths import shared_data
from hidden2stream.models.motionnet import MOTIONNETS, MotionNetConfig, build_motionnet
from hidden2stream.pretrained import load_motionnet_into
from hidden2stream.evaluation.report import markdown_table, save_flow_pictures
from hidden2stream.train.distributed import init_distributed, shutdown_distributed
from hidden2stream.train.loop import TrainResult, train
from hidden2stream.train.objectives import MotionObjective, SupervisedFlowObjective
from hidden2stream.train.options import TrainOptions
from hidden2stream.runtime import Runtime, RuntimeOptions
from hidden2stream.train.tensorboard import FlowImages, flatten_scalars, log_final

PAPER_MILESTONES = (0.25, 0.5, 0.625, 0.75, 0.875)  # 100k/200k/250k/300k/350k of 400k

# Named sets of defaults (``--recipe``); options given on the command line override them.
RECIPES: dict[str, dict] = {
    # The CPU default: tiny model, paper losses + occlusion masking + edge-aware smoothness.
    "cpu": {},
    # The closest this project got to TV-L1's EPE in ~10 CPU minutes (README loss ablation):
    # the paper's three losses with more, cheaper steps.
    "cpu-best": {"loss": "paper", "steps": 2500},
    # The paper's pretraining (authors' released files): for GPUs and real video.
    "paper": {"model": "paper", "frames": 11, "size": (224, 224), "loss": "paper", "lr": 3.2e-5,
              "batch_size": 16, "steps": 400_000, "weight_decay": 4e-4},
    # Beyond the paper: the correlation MotionNet warm-started on exact flow of realistic motions
    # (photo layers at 320x320, zoomed by 0.6-1.0): the first stage of the shipped pair weights.
    "corr-supervised": {"model": "corr", "frames": 2, "size": (320, 320), "motions": "realistic",
                        "supervised": True, "scale_range": (0.6, 1.0), "lr": 4e-4, "steps": 3000,
                        "warmup": 200, "weight_decay": 0.0, "eval_items": 24,
                        "images": shared_data("images")},
    # Its second stage (with --init: a corr-supervised checkpoint): the decoder also refines the 1/2
    # level, and half of the synthetic clips have a still camera, as 4 of the 7 shared clips do; the
    # full-resolution output gets the Lucas-Kanade refinement (parameter-free: training is unchanged).
    "corr-refine": {"model": "corr", "frames": 2, "size": (320, 320), "motions": "realistic",
                    "supervised": True, "scale_range": (0.6, 1.0), "lr": 1e-4, "steps": 300,
                    "warmup": 20, "weight_decay": 0.0, "eval_items": 24, "refine_half": True,
                    "static_background": 0.5, "refinement": "lk", "images": shared_data("images")},
}


def parse_scale_range(text: str) -> tuple[float, float]:
    """``LOW,HIGH`` zoom factors with 0 < LOW <= HIGH."""
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"expected LOW,HIGH, got {text!r}") from None
    if not 0 < low <= high:
        raise ValueError(f"need 0 < LOW <= HIGH, got {text!r}")
    return low, high


@dataclass(frozen=True)
class PretrainOptions(TrainOptions, RuntimeOptions):
    """The options of ``pretrain_motion.py``; :meth:`from_recipe` starts from a named recipe's defaults."""

    recipe: str = option("cpu", "named defaults: cpu (tiny, improved losses, 1500 steps), cpu-best (paper losses, "
                         "2500 steps), paper (the paper's model, 11 frames, 224x224, lr 3.2e-5, batch 16, 400k steps); "
                         "explicit options override the recipe", choices=tuple(sorted(RECIPES)))
    out: Path = option(Path("runs/motion"), "run folder (checkpoint, logs)", parse=Path)
    model: str = option("tiny", "MotionNet size", choices=tuple(sorted(MOTIONNETS)))
    frames: int = option(6, "T+1 frames per window (paper: 11; 6 on CPU, as train_two_stream.py)", parse=frame_count)
    size: tuple[int, int] = option((64, 64), "training crop, N or HxW", parse=image_size)
    loss: str = option("improved", "loss preset: paper = the paper's three losses; occlusion/edge/improved add "
                       "forward-backward occlusion masking and/or edge-aware smoothness; census = improved with a "
                       "census (brightness-robust) photometric term", choices=tuple(sorted(PRESETS)))
    videos: Path | None = option(None, "train on T+1 windows of the videos in DIR", parse=existing_dir)
    short_side: int | None = option(None, "with --videos: resize frames to this shorter side, then crop --size "
                                    "(random crops for training, centre crops held out); default: the crop's larger "
                                    "side", parse=positive_int)
    max_stride: int = option(1, "with --videos: each training window takes every s-th frame, s drawn from 1..N "
                             "(larger motions from the same videos)", parse=positive_int)
    frame_cache: Path | None = option(None, "with --videos: decode each video once into uint8 frames under DIR, then "
                                      "read those", parse=Path)
    refine_half: bool = option(False, "--model corr: refine the flow at 1/2 resolution too (finer flow, slower); "
                               "--init may name a corr checkpoint without it (the new level starts from scratch)")
    refinement: str = option("none", "refine the full-resolution flow with parameter-free Lucas-Kanade steps (lk; "
                             "hidden2stream.flow.refine), stored in the model config: flow commands get it",
                             choices=("none", "lk"))
    init: Path | None = option(None, "start from the weights of this MotionNet checkpoint (e.g. synthetic "
                               "pretraining before --videos); --resume takes precedence", parse=existing_path)
    images: Path | None = option(None, "synthetic layers textured with the photos in DIR instead of procedural ones",
                                 parse=existing_dir)
    motions: str = option("small", "synthetic motion ranges: small (up to 4 px, the 64x64 default) or realistic "
                          "(in proportion to the frame: up to 12%% of its side, most motions small)",
                          choices=("small", "realistic"))
    static_background: float = option(0.0, "synthetic data: probability that the background (camera) stays still, "
                                      "as in much real footage (default 0: it always moves a little)",
                                      parse=probability)
    supervised: bool = option(False, "beyond the paper: train on the synthetic data's exact flow (multi-scale EPE), "
                              "a warm start before unsupervised training on real video")
    scale_range: tuple[float, float] = option((1.0, 1.0), "with --supervised: zoom each batch by a random factor in "
                                              "LOW,HIGH", parse=parse_scale_range)
    train_items: int = option(20000, "synthetic items per epoch", parse=positive_int)
    eval_items: int = option(32, "held-out windows for evaluation", parse=positive_int)
    no_tvl1: bool = option(False, "skip the OpenCV TV-L1 comparison")
    steps: int = override(TrainOptions, "steps", 1500)
    batch_size: int = override(TrainOptions, "batch_size", 8)
    weight_decay: float = override(TrainOptions, "weight_decay", 4e-4)
    warmup: int = override(TrainOptions, "warmup", 100)
    checkpoint_every: int = override(TrainOptions, "checkpoint_every", 250)
    log_every: int = override(TrainOptions, "log_every", 25)

    @classmethod
    def from_recipe(cls, recipe: str, **values: Any) -> "PretrainOptions":
        """The recipe's defaults under ``values`` (as ``--recipe NAME`` and explicit options do)."""
        return cls(recipe=recipe, **{**RECIPES[recipe], **values})


def motion_config(options: PretrainOptions) -> MotionNetConfig:
    """The MotionNet this run trains (``--model``, ``--frames``, ``--refine-half``, ``--refinement``):
    stored with its checkpoints."""
    if options.refine_half and options.model != "corr":
        raise UserError(f"--refine-half is an option of --model corr, not --model {options.model}")
    return MotionNetConfig(options.model, options.frames, {"refine_half": True} if options.refine_half else None,
                           LucasKanadeRefinement() if options.refinement == "lk" else None)


def datasets(options: PretrainOptions):
    """(train set, held-out synthetic set with exact flow, held-out clip windows or None)."""
    height, width = options.size
    if options.images and not Path(options.images).is_dir():
        raise UserError(f"image folder {options.images} does not exist (set H2S_SHARED or pass --images)")
    images = str(options.images) if options.images else None
    if options.motions == "realistic":
        synthetic = SyntheticFlowConfig.realistic(options.frames, height, width, images)
    else:
        synthetic = SyntheticFlowConfig(frames=options.frames, height=height, width=width, image_dir=images)
    synthetic = dataclasses.replace(synthetic, static_background=options.static_background)
    held_out = SyntheticFlowDataset(options.eval_items, synthetic, seed=10_000 + options.seed)
    if options.videos:
        train_set = VideoWindowDataset(options.videos, frames=options.frames, size=options.size, part="train",
                                       seed=options.seed, cache_dir=options.frame_cache, short_side=options.short_side,
                                       max_stride=options.max_stride)
        clips = VideoWindowDataset(options.videos, frames=options.frames, size=options.size, part="val",
                                   windows_per_video=max(1, options.eval_items // 4), seed=options.seed,
                                   cache_dir=options.frame_cache, short_side=options.short_side)
        return train_set, held_out, clips
    return SyntheticFlowDataset(options.train_items, synthetic, seed=options.seed), held_out, None


def objective(options: PretrainOptions):
    """The unsupervised loss preset, or (``--supervised``) multi-scale EPE on exact flow."""
    if not options.supervised:
        return MotionObjective(PRESETS[options.loss]())
    if options.videos:
        raise UserError("--supervised needs exact flow: it trains on synthetic data, not --videos")
    return SupervisedFlowObjective(options.scale_range, clip_augmentation(color_jitter=0.2))


def run(options: PretrainOptions) -> dict:
    """Train, then (rank 0) score, draw and print; returns the report (``eval.json``)."""
    rank, world_size, local_rank = init_distributed()
    try:
        runtime = options.resolve(rank, world_size, local_rank)
        train_set, held_out, clips = datasets(options)
        torch.manual_seed(options.seed)  # same initial weights on every rank and every rerun
        config = motion_config(options)
        model = build_motionnet(config)
        if options.init:
            load_motionnet_into(model, options.init, "--init", "this run")
        optimizer = torch.optim.Adam(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
        train_config = options.train_config(options.out, milestones=PAPER_MILESTONES)
        result = train(model, train_set, objective(options), optimizer, train_config,
                       runtime, kind="motionnet", model_config=config.to_dict(),
                       description=f"pretrain {options.model}", image_callback=FlowImages(runtime))
        if not runtime.is_main:
            return {}
        report = evaluation_report(options, model, result, held_out, clips, runtime)
        (options.out / "eval.json").write_text(json.dumps(report, indent=2))
        log_final(options.out, result.step, flatten_scalars("eval", {k: v for k, v in report.items() if isinstance(v, dict)}))
        print(format_report(report))
        return report
    finally:
        shutdown_distributed()


def evaluation_report(options: PretrainOptions, model: nn.Module, result: TrainResult, held_out: Dataset,
                      clips: Dataset | None, runtime: Runtime) -> dict:
    """Scores on the held-out synthetic pairs (and clip windows), TV-L1 beside; saves flow pictures."""
    report = {"recipe": options.recipe, "steps": result.step, "train_seconds": result.seconds,
              "loss": "supervised EPE" if options.supervised else options.loss, "model": options.model,
              "device": str(runtime.device), "synthetic": evaluate_flow(model, held_out, runtime)}
    if not options.no_tvl1:
        report["tvl1"] = evaluate_classic_flow("tvl1", held_out)
    if clips is not None:
        report["clips"] = evaluate_photometric(model, clips, runtime)
        if not options.no_tvl1:
            report["clips_tvl1"] = evaluate_classic_photometric("tvl1", clips)
    save_flow_pictures(model, [held_out[i]["frames"] for i in range(min(4, len(held_out)))],
                       options.out / "flow_synthetic.png", runtime)
    if clips is not None:
        save_flow_pictures(model, [clips[i]["frames"] for i in range(min(4, len(clips)))],
                           options.out / "flow_clips.png", runtime)
    return report


def format_report(report: dict) -> str:
    """The end-of-run tables: EPE/Fl-all against zero flow and TV-L1; clip photometric error."""
    s = report["synthetic"]
    rows = [[f"MotionNet-{report['model']} ({report['loss']})", s["epe"], s["fl_all"]],
            ["zero flow", s["zero_epe"], s["zero_fl_all"]]]
    if "tvl1" in report:
        rows.append(["OpenCV TV-L1", report["tvl1"]["epe"], report["tvl1"]["fl_all"]])
    text = (f"held-out synthetic pairs: {int(s['pairs'])}, {report['steps']} steps in "
            f"{report['train_seconds']:.0f} s on {report['device']}\n"
            + markdown_table(["method", "EPE (px)", "Fl-all"], rows))
    if "clips" in report:
        c, tvl1 = report["clips"], report.get("clips_tvl1")
        text += "\n\nheld-out clip windows: " + f"{int(c['pairs'])} pairs\n" + markdown_table(
            ["flow", "photometric L1", "SSIM"],
            [["MotionNet", c["photometric_l1"], c["ssim"]], ["zero flow", c["zero_photometric_l1"], c["zero_ssim"]]]
            + ([["OpenCV TV-L1", tvl1["photometric_l1"], tvl1["ssim"]]] if tvl1 else []), decimals=4)
        per_video = [[name, v["photometric_l1"], v["zero_photometric_l1"]]
                     + ([tvl1["videos"][name]["photometric_l1"]] if tvl1 else [])
                     for name, v in c.get("videos", {}).items()]
        if per_video:
            text += "\n\nphotometric L1 per video\n" + markdown_table(
                ["video", "MotionNet", "zero flow"] + (["OpenCV TV-L1"] if tvl1 else []), per_video, decimals=4)
    return text
