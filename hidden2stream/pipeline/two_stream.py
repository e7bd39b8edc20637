"""Train the hidden two-stream network end to end: no precomputed flow, MotionNet inside.

The joint-training stage of the pipeline: ``experiments/train_two_stream.py`` parses its command
line into :class:`TwoStreamOptions` and calls :func:`run`; :mod:`hidden2stream.pipeline.job` runs the
same stage with the options built in code. The loss is the paper's multi-task loss: cross-entropy on
every trained head (spatial, temporal, fused) plus the unsupervised motion losses on MotionNet's
pyramid (SSIM weights ten times smaller than in pretraining). CPU defaults: embedded synthetic
action data, tiny streams, 64x64, T+1 = 6 frames (paper: 11), AdamW at 1e-3 (paper: SGD at 1e-3,
MotionNet at 1e-6).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from hidden2stream.data.action_sets import TrainDataOptions, action_datasets, class_factors, protocol_name
from hidden2stream.data.augment import clip_augmentation
from hidden2stream.errors import UserError, VideoError
from hidden2stream.options import existing_path, non_negative_float, option, options_check, override
from hidden2stream.evaluation.actions import ActionReport, evaluate_actions
from hidden2stream.data.flow_cache import FlowCache
from hidden2stream.flow.classic import CLASSIC_METHODS
from hidden2stream.flow.refine import LucasKanadeRefinement
from hidden2stream.losses.motion import PRESETS
from hidden2stream.models.fusion import FUSIONS, TEMPORAL_FUSIONS, check_fusion
from hidden2stream.models.hidden import HIDDEN_KINDS
from hidden2stream.models.motionnet import MOTIONNETS, MotionNetConfig
from hidden2stream.models.streams import STREAM_ARCHS
from hidden2stream.models.two_stream import HiddenTwoStream, HiddenTwoStreamConfig, build_two_stream
from hidden2stream.pretrained import init_from_two_stream, load_motionnet_into, load_two_stream, motionnet_config
from hidden2stream.evaluation.report import (action_table, confusion_image, factor_summary, save_confusion_png,
                                             save_flow_pictures, video_counts)
from hidden2stream.checkpoint import unwrap
from hidden2stream.train.distributed import init_distributed, shutdown_distributed
from hidden2stream.train.loop import TrainConfig, TrainResult, train
from hidden2stream.train.objectives import ActionObjective
from hidden2stream.train.options import TrainOptions
from hidden2stream.runtime import Runtime, RuntimeOptions
from hidden2stream.train.tensorboard import FlowImages, flatten_scalars, log_final

log = logging.getLogger(__name__)

STREAM_CHOICES = {"both": ("spatial", "temporal"), "spatial": ("spatial",), "temporal": ("temporal",)}


MOTION_CHOICES = (*sorted(MOTIONNETS), *CLASSIC_METHODS)


@dataclass(frozen=True)
class TwoStreamOptions(TrainDataOptions, TrainOptions, RuntimeOptions):
    """The options of ``train_two_stream.py`` (data, training, runtime and the network)."""

    out: Path = option(Path("runs/two_stream"), parse=Path)
    streams: str = option("both", choices=tuple(sorted(STREAM_CHOICES)), group="model")
    motion: str = option("tiny", "the MotionNet inside the hidden stream, or a classical flow (tvl1, farneback, dis): "
                         "the two-stage baseline, its temporal stream on flow computed once into --flow-cache",
                         choices=MOTION_CHOICES, group="model")
    flow_cache: Path | None = option(None, "--motion tvl1|farneback|dis: the folder of the computed flows, reused by "
                                     "later runs (default: flow_cache beside --out, e.g. runs/flow_cache)",
                                     parse=Path, group="model")
    motion_checkpoint: str | None = option(None, "start MotionNet from a pretrain_motion.py checkpoint or shipped "
                                           "weights by name ('default': MotionNet-corr trained on the shared images, "
                                           "with --motion corr)", group="model")
    refinement: str = option("auto", "the Lucas-Kanade refinement of MotionNet's full-resolution flow, which the "
                             "hidden stream classifies: auto = as the --motion-checkpoint's config says (none without "
                             "one), none = the network's flow alone, lk = refined (hidden2stream.flow.refine)",
                             choices=("auto", "none", "lk"), group="model")
    freeze_motion: bool = option(False, "keep MotionNet's weights fixed", group="model")
    hidden: str = option("stacked", choices=HIDDEN_KINDS, group="model")
    spatial_arch: str = option("tiny", choices=STREAM_ARCHS, group="model")
    temporal_arch: str = option("tiny", choices=STREAM_ARCHS, group="model")
    spatial_weights: str | None = option(None, "'imagenet' (2D archs, i3d_*), 'kinetics' (torchvision video archs: "
                                         "r3d_18, mc3_18, r2plus1d_18, s3d, mvit_v2_s) or a local torchvision "
                                         "state_dict file", group="model")
    temporal_weights: str | None = option(None, "RGB weights for cross-modality init, as --spatial-weights (a video "
                                          "arch sees the flows as a 2-channel clip)", group="model")
    init: Path | None = option(None, "two-stream checkpoint (e.g. a --dataset playback pretext run): start from all "
                               "its weights that fit, with new classifier heads", parse=existing_path, group="model")
    init_spatial: Path | None = option(None, "two-stream checkpoint: take its spatial stream", parse=existing_path,
                                       group="model")
    init_temporal: Path | None = option(None, "two-stream checkpoint: take its hidden stream", parse=existing_path,
                                        group="model")
    fusion: str = option("late", choices=FUSIONS, group="model")
    temporal_fusion: str = option("avg", choices=TEMPORAL_FUSIONS, group="model")
    dropout: float = option(0.5, parse=non_negative_float, group="model")
    optimizer: str = option("adamw", choices=("adamw", "sgd"))
    motion_lr: float = option(1e-4, "MotionNet lr (paper: 1e-6)", parse=non_negative_float)
    motion_loss: str = option("paper", choices=tuple(sorted(PRESETS)))
    motion_weight: float = option(1.0, parse=non_negative_float)
    no_eval: bool = option(False)
    steps: int = override(TrainOptions, "steps", 300)
    batch_size: int = override(TrainOptions, "batch_size", 16)
    lr: float = override(TrainOptions, "lr", 1e-3)
    weight_decay: float = override(TrainOptions, "weight_decay", 5e-4)
    warmup: int = override(TrainOptions, "warmup", 50)
    checkpoint_every: int = override(TrainOptions, "checkpoint_every", 100)
    log_every: int = override(TrainOptions, "log_every", 20)


def motion_config(options: TwoStreamOptions) -> MotionNetConfig:
    """``--motion`` for windows of ``--frames``; with a ``--motion-checkpoint`` of that variant, its layers
    (the trained weights decide the widths, e.g. the shipped corr's ``refine_half``) and, with
    ``--refinement auto``, its refinement; ``--refinement none`` / ``lk`` set it. The refinement makes
    the final full-resolution flow, which the stacked hidden stream classifies (and trains through)
    as flow commands read it. A classical ``--motion`` has no MotionNet: the config gives the window
    length only."""
    if options.motion in CLASSIC_METHODS:
        return MotionNetConfig(frames=options.frames)
    config = MotionNetConfig(options.motion, options.frames)
    if options.motion_checkpoint:
        trained = motionnet_config(options.motion_checkpoint)
        if trained.variant == config.variant:  # another variant: refused in one line by build_model
            config = dataclasses.replace(config, layers=trained.layers, refinement=trained.refinement)
    if options.refinement != "auto":
        config = dataclasses.replace(config, refinement=LucasKanadeRefinement() if options.refinement == "lk" else None)
    return config


def model_config(options: TwoStreamOptions, classes: list[str]) -> HiddenTwoStreamConfig:
    """The network the options describe, labelled with the data's classes and input size (what a
    checkpoint must match to resume, and all ``load_two_stream`` needs to rebuild it); an invalid
    combination of options is one line naming them."""
    return options_check("model options", lambda: HiddenTwoStreamConfig(
        num_classes=len(classes), motion=motion_config(options), spatial_arch=options.spatial_arch,
        temporal_arch=options.temporal_arch, hidden=options.hidden, fusion=options.fusion,
        temporal_fusion=options.temporal_fusion, segments=options.segments, dropout=options.dropout,
        class_names=tuple(classes), size=options.size,
        flow=options.motion if options.motion in CLASSIC_METHODS else "motionnet"))


def build_model(options: TwoStreamOptions, config: HiddenTwoStreamConfig) -> HiddenTwoStream:
    """The network of ``config``, MotionNet and streams initialised from the checkpoints given."""
    model = build_two_stream(config, options.spatial_weights, options.temporal_weights)
    if model.motionnet is None and (options.motion_checkpoint or options.freeze_motion):
        raise UserError(f"--motion {options.motion} trains on precomputed flow, without MotionNet: "
                        "--motion-checkpoint and --freeze-motion do not apply")
    if options.motion_checkpoint:
        load_motionnet_into(model.motionnet, options.motion_checkpoint, "--motion-checkpoint",
                            f"--motion {options.motion}")
    if options.init:
        log.info("started from %s; new: %s", options.init, ", ".join(init_from_two_stream(model, options.init)))
    for path, part in ((options.init_spatial, "spatial"), (options.init_temporal, "hidden")):
        if path:  # the stream of another run, rebuilt from its checkpoint's config
            getattr(model, part).load_state_dict(getattr(load_two_stream(path), part).state_dict())
    if options.freeze_motion:
        model.motionnet.requires_grad_(False)
    return model


def optimizer_for(model: torch.nn.Module, options: TwoStreamOptions) -> torch.optim.Optimizer:
    """Per-group learning rates: MotionNet (if any) at ``--motion-lr``, everything else at ``--lr``."""
    motionnet = list(model.motionnet.parameters()) if model.motionnet is not None else []
    motion = {id(p) for p in motionnet}
    groups = [{"params": [p for p in motionnet if p.requires_grad], "lr": options.motion_lr},
              {"params": [p for p in model.parameters() if id(p) not in motion and p.requires_grad],
               "lr": options.lr}]
    groups = [g for g in groups if g["params"]]
    if options.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=0.9, weight_decay=options.weight_decay)
    return torch.optim.AdamW(groups, weight_decay=options.weight_decay)


@dataclass
class TwoStreamRun:
    """What the stage ends with: ``summary`` (``eval.json``; ``{"steps": n}`` without evaluation or
    off rank 0), the action ``report`` it was made from (None without evaluation) and its tables as
    ``text`` (printed by the caller: the script, or the main job in its closing report)."""

    summary: dict
    report: ActionReport | None = None
    text: str = ""


def run(options: TwoStreamOptions) -> TwoStreamRun:
    """Train, then evaluate every trained head on the test set; rank 0 writes, draws and prints."""
    options_check("--fusion / --temporal-fusion", check_fusion, options.fusion, options.temporal_fusion)
    rank, world_size, local_rank = init_distributed()
    try:
        runtime = options.resolve(rank, world_size, local_rank)
        flows = flow_cache(options, world_size)
        train_set, test_set, classes = action_datasets(options, options.seed, flows)
        config = model_config(options, list(classes))
        torch.manual_seed(options.seed)  # same initial weights on every rank and every rerun
        model = build_model(options, config)
        streams = STREAM_CHOICES[options.streams]
        result = train(model, train_set, objective(options, streams, runtime), optimizer_for(model, options),
                       loop_config(options, streams), runtime, kind="two_stream", model_config=config.to_dict(),
                       description=f"train {options.streams}",
                       image_callback=FlowImages(runtime, lambda m: m.motionnet)
                       if "temporal" in streams and model.motionnet is not None else None)
        if options.no_eval:
            if flows is not None and runtime.is_main:
                log.info("%s", flows.size_report()["text"])
            return TwoStreamRun({"steps": result.step})
        model = unwrap(model)
        report = evaluate_actions(model, test_set, runtime, len(classes), streams=streams,
                                  num_workers=options.workers)  # on every rank, each video once
        if not runtime.is_main:
            return TwoStreamRun({"steps": result.step})
        summary, text = report_results(options, model, test_set, list(classes), streams, result, report, runtime,
                                       flows)
        return TwoStreamRun(summary, report, text)
    finally:
        shutdown_distributed()


def flow_cache(options: TwoStreamOptions, world_size: int) -> FlowCache | None:
    """The cache of ``--motion``'s classical flow (None for a MotionNet) under ``--flow-cache``,
    extracting with this process's share of the cores (one single-threaded process per core)."""
    if options.motion not in CLASSIC_METHODS:
        return None
    workers = max(1, (os.cpu_count() or 1) // world_size)
    return FlowCache(options.flow_cache or options.out.parent / "flow_cache", options.motion, workers)


def objective(options: TwoStreamOptions, streams: tuple[str, ...], runtime: Runtime) -> ActionObjective:
    """Cross-entropy on the trained heads plus the motion loss (SSIM weights / 10) unless frozen or
    without MotionNet (a classical ``--motion``, whose videos are mirrored with their flows)."""
    motion = PRESETS[options.motion_loss]()
    motion = dataclasses.replace(motion, ssim_weights=tuple(w / 10 for w in motion.ssim_weights))
    classic = options.motion in CLASSIC_METHODS
    augment = None if options.dataset == "synthetic" else clip_augmentation(train=True, flip=not classic)
    return ActionObjective(streams, None if options.freeze_motion or classic else motion, options.motion_weight,
                           augment.to(runtime.device) if augment is not None else None,
                           mirror=classic and options.dataset != "synthetic")


def loop_config(options: TwoStreamOptions, streams: tuple[str, ...]) -> TrainConfig:
    """The loop's settings; the streams and test items are saved for ``evaluate.py``'s defaults."""
    run = {"streams": list(streams), "test_items": options.test_items}
    return options.train_config(options.out, milestones=(0.5, 0.75), gamma=0.1,
                                find_unused_parameters=len(streams) == 1, extra=run)


def first_windows(test_set, count: int) -> list[torch.Tensor]:
    """The first window ``(T+1, 3, H, W)`` of up to ``count`` test videos, each read once; a video
    that fails to decode is left out (the evaluation has logged and counted it)."""
    windows = []
    for i in range(len(test_set)):
        if len(windows) == count:
            break
        try:
            frames = test_set[i]["frames"]
        except VideoError:
            continue
        windows.append(frames.reshape(-1, *frames.shape[-4:])[0])
    return windows


def report_results(options: TwoStreamOptions, model: HiddenTwoStream, test_set, classes: list[str],
                   streams: tuple[str, ...], result: TrainResult, report: ActionReport,
                   runtime: Runtime, flows: FlowCache | None = None) -> tuple[dict, str]:
    """Rank 0 after the evaluation: eval.json, confusion.png, flow pictures (MotionNet's), TensorBoard;
    returns the summary and the tables as text (with the size of the classical ``flows`` cache, if any)."""
    save_confusion_png(report.confusion, options.out / "confusion.png")
    if "temporal" in streams and model.motionnet is not None:
        save_flow_pictures(model.motionnet, first_windows(test_set, 4), options.out / "flow_test_clips.png", runtime)
    summary = {"steps": result.step, "train_seconds": result.seconds, "streams": options.streams,
               "freeze_motion": options.freeze_motion, "classes": list(classes), "protocol": protocol_name(options),
               **report.as_dict()}
    text = (f"{options.streams} ({options.fusion} fusion), {result.step} steps in {result.seconds:.0f} s "
            f"on {runtime.device}; test set: {video_counts(report)}; {len(classes)} classes, "
            f"{protocol_name(options)}\n" + action_table(report))
    factors = class_factors(options)
    if factors is not None:  # two-factor classes: which factor each head gets
        summary["factor_accuracy"], table = factor_summary(report, *factors)
        text += "\n\n" + table
    if flows is not None:
        summary["flow_cache"] = flows.size_report()
        text += "\n\n" + summary["flow_cache"]["text"]
    (options.out / "eval.json").write_text(json.dumps(summary, indent=2))
    accuracies = {k: summary[k] for k in ("clip_top1", "clip_top5", "video_top1", "video_top5")}
    log_final(options.out, result.step, flatten_scalars("eval", accuracies),
              {"eval/confusion": confusion_image(report.confusion)})
    return summary, text
