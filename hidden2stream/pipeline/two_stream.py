"""Train the hidden two-stream network end to end: no precomputed flow, MotionNet inside.

The joint-training stage of the pipeline: ``experiments/train_two_stream.py`` parses its command
line with :func:`build_parser` and calls :func:`run`; :mod:`hidden2stream.pipeline.job` runs the
same stage with its options set in code. The loss is the paper's multi-task loss: cross-entropy on
every trained head (spatial, temporal, fused) plus the unsupervised motion losses on MotionNet's
pyramid (SSIM weights ten times smaller than in pretraining). CPU defaults: embedded synthetic
action data, tiny streams, 64x64, T+1 = 6 frames (paper: 11), AdamW at 1e-3 (paper: SGD at 1e-3,
MotionNet at 1e-6).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from hidden2stream.cli import OneLineParser, add_quiet_arg, existing_path, non_negative_float, options_check
from hidden2stream.data.action_sets import action_datasets, add_action_data_args, protocol_name
from hidden2stream.data.augment import clip_augmentation
from hidden2stream.errors import UserError, VideoError
from hidden2stream.evaluate import ActionReport, evaluate_actions
from hidden2stream.flow.cache import FlowCache
from hidden2stream.flow.classic import CLASSIC_METHODS
from hidden2stream.flow.refine import LucasKanadeRefinement
from hidden2stream.losses.motion import PRESETS
from hidden2stream.models.fusion import FUSIONS, TEMPORAL_FUSIONS, check_fusion
from hidden2stream.models.hidden import HIDDEN_KINDS
from hidden2stream.models.motionnet import MOTIONNETS, MotionNetConfig
from hidden2stream.models.streams import STREAM_ARCHS
from hidden2stream.models.two_stream import HiddenTwoStream, HiddenTwoStreamConfig, build_two_stream
from hidden2stream.pretrained import init_from_two_stream, load_motionnet_into, load_two_stream, motionnet_config
from hidden2stream.report import (action_table, confusion_image, markdown_table, save_confusion_png,
                                  save_flow_pictures, video_counts)
from hidden2stream.checkpoint import unwrap
from hidden2stream.train.distributed import init_distributed, shutdown_distributed
from hidden2stream.train.loop import TrainConfig, TrainResult, train
from hidden2stream.train.objectives import ActionObjective
from hidden2stream.train.options import add_train_args, train_config_from_args
from hidden2stream.runtime import Runtime, add_runtime_args, runtime_from_args
from hidden2stream.train.tensorboard import FlowImages, flatten_scalars, log_final

log = logging.getLogger(__name__)

STREAM_CHOICES = {"both": ("spatial", "temporal"), "spatial": ("spatial",), "temporal": ("temporal",)}
#: Datasets whose class is ``major * factor + minor``: the names of the two factors.
FACTORS = {"synthetic": ("appearance", "motion"), "playback": ("speed", "direction")}


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``experiments/train_two_stream.py``."""
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/two_stream"))
    add_action_data_args(p)
    model = p.add_argument_group("model")
    model.add_argument("--streams", choices=sorted(STREAM_CHOICES), default="both")
    model.add_argument("--motion", choices=[*sorted(MOTIONNETS), *CLASSIC_METHODS], default="tiny",
                       help="the MotionNet inside the hidden stream, or a classical flow (tvl1, farneback, dis): "
                            "the two-stage baseline, its temporal stream on flow computed once into --flow-cache")
    model.add_argument("--flow-cache", type=Path,
                       help="--motion tvl1|farneback|dis: the folder of the computed flows, reused by later runs "
                            "(default: flow_cache beside --out, e.g. runs/flow_cache)")
    model.add_argument("--motion-checkpoint",
                       help="start MotionNet from a pretrain_motion.py checkpoint or shipped weights by name "
                            "('default': MotionNet-corr trained on the shared images, with --motion corr)")
    model.add_argument("--refinement", choices=["auto", "none", "lk"], default="auto",
                       help="the Lucas-Kanade refinement of MotionNet's full-resolution flow, which the hidden "
                            "stream classifies: auto = as the --motion-checkpoint's config says (none without "
                            "one), none = the network's flow alone, lk = refined (hidden2stream.flow.refine)")
    model.add_argument("--freeze-motion", action="store_true", help="keep MotionNet's weights fixed")
    model.add_argument("--hidden", choices=HIDDEN_KINDS, default="stacked")
    model.add_argument("--spatial-arch", choices=STREAM_ARCHS, default="tiny")
    model.add_argument("--temporal-arch", choices=STREAM_ARCHS, default="tiny")
    model.add_argument("--spatial-weights",
                       help="'imagenet' (2D archs, i3d_*), 'kinetics' (torchvision video archs: r3d_18, "
                            "mc3_18, r2plus1d_18, s3d, mvit_v2_s) or a local torchvision state_dict file")
    model.add_argument("--temporal-weights",
                       help="RGB weights for cross-modality init, as --spatial-weights (a video arch "
                            "sees the flows as a 2-channel clip)")
    model.add_argument("--init", type=existing_path,
                       help="two-stream checkpoint (e.g. a --dataset playback pretext run): start from all its "
                            "weights that fit, with new classifier heads")
    model.add_argument("--init-spatial", type=existing_path, help="two-stream checkpoint: take its spatial stream")
    model.add_argument("--init-temporal", type=existing_path, help="two-stream checkpoint: take its hidden stream")
    model.add_argument("--fusion", choices=FUSIONS, default="late")
    model.add_argument("--temporal-fusion", choices=TEMPORAL_FUSIONS, default="avg")
    model.add_argument("--dropout", type=non_negative_float, default=0.5)
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    p.add_argument("--motion-lr", type=non_negative_float, default=1e-4, help="MotionNet lr (paper: 1e-6)")
    p.add_argument("--motion-loss", choices=sorted(PRESETS), default="paper")
    p.add_argument("--motion-weight", type=non_negative_float, default=1.0)
    p.add_argument("--no-eval", action="store_true")
    add_train_args(p, steps=300, batch_size=16, lr=1e-3, weight_decay=5e-4, warmup=50,
                   checkpoint_every=100, log_every=20)
    add_runtime_args(p)
    add_quiet_arg(p)
    return p


def motion_config(args: argparse.Namespace) -> MotionNetConfig:
    """``--motion`` for windows of ``--frames``; with a ``--motion-checkpoint`` of that variant, its layers
    (the trained weights decide the widths, e.g. the shipped corr's ``refine_half``) and, with
    ``--refinement auto``, its refinement; ``--refinement none`` / ``lk`` set it. The refinement makes
    the final full-resolution flow, which the stacked hidden stream classifies (and trains through)
    as flow commands read it. A classical ``--motion`` has no MotionNet: the config gives the window
    length only."""
    if args.motion in CLASSIC_METHODS:
        return MotionNetConfig(frames=args.frames)
    config = MotionNetConfig(args.motion, args.frames)
    if args.motion_checkpoint:
        trained = motionnet_config(args.motion_checkpoint)
        if trained.variant == config.variant:  # another variant: refused in one line by build_model
            config = dataclasses.replace(config, layers=trained.layers, refinement=trained.refinement)
    if args.refinement != "auto":
        config = dataclasses.replace(config, refinement=LucasKanadeRefinement() if args.refinement == "lk" else None)
    return config


def model_config(args: argparse.Namespace, classes: list[str]) -> HiddenTwoStreamConfig:
    """The network the options describe, labelled with the data's classes and input size (what a
    checkpoint must match to resume, and all ``load_two_stream`` needs to rebuild it); an invalid
    combination of options is one line naming them."""
    return options_check("model options", lambda: HiddenTwoStreamConfig(
        num_classes=len(classes), motion=motion_config(args), spatial_arch=args.spatial_arch,
        temporal_arch=args.temporal_arch, hidden=args.hidden, fusion=args.fusion,
        temporal_fusion=args.temporal_fusion, segments=args.segments, dropout=args.dropout,
        class_names=tuple(classes), size=args.size,
        flow=args.motion if args.motion in CLASSIC_METHODS else "motionnet"))


def build_model(args: argparse.Namespace, config: HiddenTwoStreamConfig) -> HiddenTwoStream:
    """The network of ``config``, MotionNet and streams initialised from the checkpoints given."""
    model = build_two_stream(config, args.spatial_weights, args.temporal_weights)
    if model.motionnet is None and (args.motion_checkpoint or args.freeze_motion):
        raise UserError(f"--motion {args.motion} trains on precomputed flow, without MotionNet: "
                        "--motion-checkpoint and --freeze-motion do not apply")
    if args.motion_checkpoint:
        load_motionnet_into(model.motionnet, args.motion_checkpoint, "--motion-checkpoint", f"--motion {args.motion}")
    if args.init:
        log.info("started from %s; new: %s", args.init, ", ".join(init_from_two_stream(model, args.init)))
    for path, part in ((args.init_spatial, "spatial"), (args.init_temporal, "hidden")):
        if path:  # the stream of another run, rebuilt from its checkpoint's config
            getattr(model, part).load_state_dict(getattr(load_two_stream(path), part).state_dict())
    if args.freeze_motion:
        model.motionnet.requires_grad_(False)
    return model


def optimizer_for(model: torch.nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    """Per-group learning rates: MotionNet (if any) at ``--motion-lr``, everything else at ``--lr``."""
    motionnet = list(model.motionnet.parameters()) if model.motionnet is not None else []
    motion = {id(p) for p in motionnet}
    groups = [{"params": [p for p in motionnet if p.requires_grad], "lr": args.motion_lr},
              {"params": [p for p in model.parameters() if id(p) not in motion and p.requires_grad],
               "lr": args.lr}]
    groups = [g for g in groups if g["params"]]
    if args.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=0.9, weight_decay=args.weight_decay)
    return torch.optim.AdamW(groups, weight_decay=args.weight_decay)


@dataclass
class TwoStreamRun:
    """What the stage ends with: ``summary`` (``eval.json``; ``{"steps": n}`` without evaluation or
    off rank 0), the action ``report`` it was made from (None without evaluation) and its tables as
    ``text`` (printed by the caller: the script, or the main job in its closing report)."""

    summary: dict
    report: ActionReport | None = None
    text: str = ""


def run(args: argparse.Namespace) -> TwoStreamRun:
    """Train, then evaluate every trained head on the test set; rank 0 writes, draws and prints."""
    options_check("--fusion / --temporal-fusion", check_fusion, args.fusion, args.temporal_fusion)
    rank, world_size, local_rank = init_distributed()
    try:
        runtime = runtime_from_args(args, rank, world_size, local_rank)
        flows = flow_cache(args, world_size)
        train_set, test_set, classes = action_datasets(args, flows)
        config = model_config(args, list(classes))
        torch.manual_seed(args.seed)  # same initial weights on every rank and every rerun
        model = build_model(args, config)
        streams = STREAM_CHOICES[args.streams]
        result = train(model, train_set, objective(args, streams, runtime), optimizer_for(model, args),
                       train_config(args, streams), runtime, kind="two_stream", model_config=config.to_dict(),
                       description=f"train {args.streams}",
                       image_callback=FlowImages(runtime, lambda m: m.motionnet)
                       if "temporal" in streams and model.motionnet is not None else None)
        if args.no_eval:
            if flows is not None and runtime.is_main:
                log.info("%s", flows.size_report()["text"])
            return TwoStreamRun({"steps": result.step})
        model = unwrap(model)
        report = evaluate_actions(model, test_set, runtime, len(classes), streams=streams,
                                  num_workers=args.workers)  # on every rank, each video once
        if not runtime.is_main:
            return TwoStreamRun({"steps": result.step})
        summary, text = report_results(args, model, test_set, list(classes), streams, result, report, runtime,
                                       flows)
        return TwoStreamRun(summary, report, text)
    finally:
        shutdown_distributed()


def flow_cache(args: argparse.Namespace, world_size: int) -> FlowCache | None:
    """The cache of ``--motion``'s classical flow (None for a MotionNet) under ``--flow-cache``,
    extracting with this process's share of the cores (one single-threaded process per core)."""
    if args.motion not in CLASSIC_METHODS:
        return None
    workers = max(1, (os.cpu_count() or 1) // world_size)
    return FlowCache(args.flow_cache or args.out.parent / "flow_cache", args.motion, workers)


def objective(args: argparse.Namespace, streams: tuple[str, ...], runtime: Runtime) -> ActionObjective:
    """Cross-entropy on the trained heads plus the motion loss (SSIM weights / 10) unless frozen or
    without MotionNet (a classical ``--motion``, whose videos are mirrored with their flows)."""
    motion = PRESETS[args.motion_loss]()
    motion = dataclasses.replace(motion, ssim_weights=tuple(w / 10 for w in motion.ssim_weights))
    classic = args.motion in CLASSIC_METHODS
    augment = None if args.dataset == "synthetic" else clip_augmentation(train=True, flip=not classic)
    return ActionObjective(streams, None if args.freeze_motion or classic else motion, args.motion_weight,
                           augment.to(runtime.device) if augment is not None else None,
                           mirror=classic and args.dataset != "synthetic")


def train_config(args: argparse.Namespace, streams: tuple[str, ...]) -> TrainConfig:
    """The loop's settings; the streams and test items are saved for ``evaluate.py``'s defaults."""
    run = {"streams": list(streams), "test_items": args.test_items}
    return train_config_from_args(args, milestones=(0.5, 0.75), gamma=0.1,
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


def report_results(args: argparse.Namespace, model: HiddenTwoStream, test_set, classes: list[str],
                   streams: tuple[str, ...], result: TrainResult, report: ActionReport,
                   runtime: Runtime, flows: FlowCache | None = None) -> tuple[dict, str]:
    """Rank 0 after the evaluation: eval.json, confusion.png, flow pictures (MotionNet's), TensorBoard;
    returns the summary and the tables as text (with the size of the classical ``flows`` cache, if any)."""
    save_confusion_png(report.confusion, args.out / "confusion.png")
    if "temporal" in streams and model.motionnet is not None:
        save_flow_pictures(model.motionnet, first_windows(test_set, 4), args.out / "flow_test_clips.png", runtime)
    summary = {"steps": result.step, "train_seconds": result.seconds, "streams": args.streams,
               "freeze_motion": args.freeze_motion, "classes": list(classes), "protocol": protocol_name(args),
               **report.as_dict()}
    text = (f"{args.streams} ({args.fusion} fusion), {result.step} steps in {result.seconds:.0f} s "
            f"on {runtime.device}; test set: {video_counts(report)}; {len(classes)} classes, "
            f"{protocol_name(args)}\n" + action_table(report))
    if args.dataset in FACTORS:  # two-factor classes: which factor each head gets
        (major, minor), factor = FACTORS[args.dataset], args.motions if args.dataset == "synthetic" else 2
        factors = {head: report.factor_accuracy(head, factor) for head in report.confusions}
        summary["factor_accuracy"] = {h: {major: a, minor: m} for h, (a, m) in factors.items()}
        text += "\n\n" + markdown_table(["head", f"{major} accuracy", f"{minor} accuracy"],
                                        [[h, a, m] for h, (a, m) in factors.items()])
    if flows is not None:
        summary["flow_cache"] = flows.size_report()
        text += "\n\n" + summary["flow_cache"]["text"]
    (args.out / "eval.json").write_text(json.dumps(summary, indent=2))
    accuracies = {k: summary[k] for k in ("clip_top1", "clip_top5", "video_top1", "video_top5")}
    log_final(args.out, result.step, flatten_scalars("eval", accuracies),
              {"eval/confusion": confusion_image(report.confusion)})
    return summary, text
