"""Train the hidden two-stream network end to end: no precomputed flow, MotionNet inside.

    python experiments/train_two_stream.py --motion-checkpoint runs/motion/checkpoint.pt
    python experiments/train_two_stream.py --streams spatial --out runs/spatial      # one stream alone
    python experiments/train_two_stream.py --spatial-arch r2plus1d_18 --spatial-weights r2plus1d_18.pth \
        --temporal-arch i3d_resnet18 --temporal-weights resnet18.pth     # 3D streams on clips / flow clips
    python experiments/train_two_stream.py --dataset ucf101 --video-root UCF-101 \
        --split-dir ucfTrainTestlist --split 1 --spatial-arch resnet50 --temporal-arch resnet50 \
        --spatial-weights imagenet --size 224 --frames 11 --optimizer sgd --lr 1e-3 --motion-lr 1e-6

The loss is the paper's multi-task loss: cross-entropy on every trained head (spatial, temporal,
fused) plus the unsupervised motion losses on MotionNet's pyramid (SSIM weights ten times smaller
than in pretraining). CPU defaults: embedded synthetic action data, tiny streams, 64x64,
T+1 = 6 frames (paper: 11), AdamW at 1e-3 (paper: SGD at 1e-3, MotionNet at 1e-6).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from hidden2stream.cli import OneLineParser, existing_path, non_negative_float, run_cli
from hidden2stream.data.action_sets import action_datasets, add_action_data_args, protocol_name
from hidden2stream.data.augment import clip_augmentation
from hidden2stream.errors import CheckpointError
from hidden2stream.evaluate import (action_table, confusion_image, evaluate_actions, markdown_table,
                                    save_confusion_png, save_flow_pictures)
from hidden2stream.losses.motion import PRESETS
from hidden2stream.models.fusion import FUSIONS, TEMPORAL_FUSIONS
from hidden2stream.models.hidden import HIDDEN_KINDS
from hidden2stream.models.motionnet import MOTIONNETS
from hidden2stream.models.streams import STREAM_ARCHS
from hidden2stream.models.two_stream import hidden_two_stream
from hidden2stream.pretrained import load_motionnet
from hidden2stream.train.checkpoint import load_checkpoint, unwrap
from hidden2stream.train.distributed import init_distributed, shutdown_distributed
from hidden2stream.train.loop import train
from hidden2stream.train.objectives import ActionObjective
from hidden2stream.train.options import add_train_args, train_config_from_args
from hidden2stream.train.runtime import add_runtime_args, runtime_from_args
from hidden2stream.train.tensorboard import FlowImages, flatten_scalars, log_final

STREAM_CHOICES = {"both": ("spatial", "temporal"), "spatial": ("spatial",), "temporal": ("temporal",)}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/two_stream"))
    add_action_data_args(p)
    model = p.add_argument_group("model")
    model.add_argument("--streams", choices=sorted(STREAM_CHOICES), default="both")
    model.add_argument("--motion", choices=sorted(MOTIONNETS), default="tiny")
    model.add_argument("--motion-checkpoint",
                       help="start MotionNet from a pretrain_motion.py checkpoint or shipped weights by name "
                            "('default': MotionNet-corr trained on the shared images, with --motion corr)")
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
    return p


def model_config(args: argparse.Namespace, classes: list[str]) -> dict:
    """The architecture and labels a checkpoint must match (training options are free to change).

    It is also all ``predict.py`` needs to rebuild the network: the factory's arguments, the
    input size and the class names.
    """
    return {"num_classes": len(classes), "class_names": list(classes), "size": list(args.size),
            "motion": args.motion, "frames": args.frames,
            "spatial_arch": args.spatial_arch, "temporal_arch": args.temporal_arch,
            "hidden": args.hidden, "fusion": args.fusion, "temporal_fusion": args.temporal_fusion,
            "segments": args.segments}


def build_model(args: argparse.Namespace, num_classes: int) -> torch.nn.Module:
    """The network with MotionNet and streams initialised from the checkpoints given."""
    model = hidden_two_stream(num_classes, motion=args.motion, frames=args.frames,
                              spatial_arch=args.spatial_arch, temporal_arch=args.temporal_arch,
                              hidden=args.hidden, fusion=args.fusion, temporal_fusion=args.temporal_fusion,
                              segments=args.segments, spatial_weights=args.spatial_weights,
                              temporal_weights=args.temporal_weights, dropout=args.dropout)
    if args.motion_checkpoint:
        source = load_motionnet(args.motion_checkpoint, frames=args.frames)
        if type(source) is not type(model.motionnet) or source.config != model.motionnet.config:
            raise CheckpointError(f"--motion-checkpoint {args.motion_checkpoint} holds {source.config}, "
                                  f"--motion {args.motion} builds {model.motionnet.config}")
        model.motionnet.load_state_dict(source.state_dict())
    for path, prefix in ((args.init_spatial, "spatial."), (args.init_temporal, "hidden.")):
        if path:
            checkpoint = load_checkpoint(path, kind="two_stream")
            part = {k[len(prefix):]: v for k, v in checkpoint["model"].items() if k.startswith(prefix)}
            getattr(model, prefix[:-1]).load_state_dict(part)
    if args.freeze_motion:
        model.motionnet.requires_grad_(False)
    return model


def optimizer_for(model: torch.nn.Module, args: argparse.Namespace) -> torch.optim.Optimizer:
    """Per-group learning rates: MotionNet at ``--motion-lr``, everything else at ``--lr``."""
    motion = {id(p) for p in model.motionnet.parameters()}
    groups = [{"params": [p for p in model.motionnet.parameters() if p.requires_grad], "lr": args.motion_lr},
              {"params": [p for p in model.parameters() if id(p) not in motion and p.requires_grad],
               "lr": args.lr}]
    groups = [g for g in groups if g["params"]]
    if args.optimizer == "sgd":
        return torch.optim.SGD(groups, momentum=0.9, weight_decay=args.weight_decay)
    return torch.optim.AdamW(groups, weight_decay=args.weight_decay)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    rank, world_size, local_rank = init_distributed()
    try:
        runtime = runtime_from_args(args, rank, world_size, local_rank)
        train_set, test_set, classes = action_datasets(args)
        torch.manual_seed(args.seed)  # same initial weights on every rank and every rerun
        model = build_model(args, len(classes))
        streams = STREAM_CHOICES[args.streams]
        motion = PRESETS[args.motion_loss]()
        motion = dataclasses.replace(motion, ssim_weights=tuple(w / 10 for w in motion.ssim_weights))
        augment = None if args.dataset == "synthetic" else clip_augmentation(train=True, flip=True)
        objective = ActionObjective(streams, None if args.freeze_motion else motion, args.motion_weight,
                                    augment.to(runtime.device) if augment is not None else None)
        run = {"streams": list(streams), "test_items": args.test_items}  # evaluate.py's defaults
        config = train_config_from_args(args, milestones=(0.5, 0.75), gamma=0.1,
                                        find_unused_parameters=len(streams) == 1, extra=run)
        images = FlowImages(runtime, lambda m: m.motionnet) if "temporal" in streams else None
        result = train(model, train_set, objective, optimizer_for(model, args), config, runtime,
                       kind="two_stream", model_config=model_config(args, list(classes)),
                       description=f"train {args.streams}", image_callback=images)
        if args.no_eval:
            return {"steps": result.step}
        model = unwrap(model)
        report = evaluate_actions(model, test_set, runtime, len(classes), streams=streams,
                                  num_workers=args.workers)  # on every rank, each video once
        if not runtime.is_main:
            return {"steps": result.step}
        return report_results(args, model, test_set, list(classes), streams, result, report, runtime)
    finally:
        shutdown_distributed()


def report_results(args: argparse.Namespace, model: torch.nn.Module, test_set, classes: list[str],
                   streams: tuple[str, ...], result, report, runtime) -> dict:
    """Rank 0 after the evaluation: eval.json, confusion.png, flow pictures, TensorBoard, the tables."""
    save_confusion_png(report.confusion, args.out / "confusion.png")
    if "temporal" in streams:
        clips = [test_set[i]["frames"].reshape(-1, *test_set[i]["frames"].shape[-4:])[0]
                 for i in range(min(4, len(test_set)))]
        save_flow_pictures(model.motionnet, clips, args.out / "flow_test_clips.png", runtime)
    summary = {"steps": result.step, "train_seconds": result.seconds, "streams": args.streams,
               "freeze_motion": args.freeze_motion, "classes": list(classes), "protocol": protocol_name(args),
               **report.as_dict()}
    text = (f"{args.streams} ({args.fusion} fusion), {result.step} steps in {result.seconds:.0f} s "
            f"on {runtime.device}; {len(test_set)} test videos, {len(classes)} classes, "
            f"{protocol_name(args)}\n" + action_table(report))
    if args.dataset == "synthetic":  # classes are (appearance, motion): which factor each head gets
        factors = {head: report.factor_accuracy(head, args.motions) for head in report.confusions}
        summary["factor_accuracy"] = {h: {"appearance": a, "motion": m} for h, (a, m) in factors.items()}
        text += "\n\n" + markdown_table(["head", "appearance accuracy", "motion accuracy"],
                                        [[h, a, m] for h, (a, m) in factors.items()])
    (args.out / "eval.json").write_text(json.dumps(summary, indent=2))
    accuracies = {k: summary[k] for k in ("clip_top1", "clip_top5", "video_top1", "video_top5")}
    log_final(args.out, result.step, flatten_scalars("eval", accuracies),
              {"eval/confusion": confusion_image(report.confusion)})
    print(text)
    return summary


if __name__ == "__main__":
    run_cli(main)
