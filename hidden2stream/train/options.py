"""The training options both scripts share: command-line arguments -> :class:`TrainConfig`."""
from __future__ import annotations

import argparse

from hidden2stream.cli import non_negative_float, non_negative_int, positive_int
from hidden2stream.train.loop import TrainConfig


def add_train_args(parser: argparse.ArgumentParser, *, steps: int, batch_size: int, lr: float,
                   weight_decay: float, warmup: int, checkpoint_every: int, log_every: int) -> None:
    """Optimisation and run options, with the script's own defaults."""
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--steps", type=positive_int, default=steps, help="optimizer steps")
    opt.add_argument("--batch-size", type=positive_int, default=batch_size,
                     help="global batch per step (split over processes and accumulation)")
    opt.add_argument("--accumulation", type=positive_int, default=1, help="gradient accumulation steps")
    opt.add_argument("--lr", type=non_negative_float, default=lr)
    opt.add_argument("--weight-decay", type=non_negative_float, default=weight_decay)
    opt.add_argument("--warmup", type=non_negative_int, default=warmup, help="linear warm-up steps")
    opt.add_argument("--grad-clip", type=non_negative_float, default=10.0, help="max gradient norm, 0 = off")
    run = parser.add_argument_group("run")
    run.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    run.add_argument("--checkpoint-every", type=positive_int, default=checkpoint_every)
    run.add_argument("--log-every", type=positive_int, default=log_every)
    run.add_argument("--log-images-every", type=non_negative_int, default=250,
                     help="TensorBoard flow pictures (frame, flow, warping error, ground truth) every N steps, "
                          "0 = off")
    run.add_argument("--nan-policy", choices=["stop", "skip"], default="stop",
                     help="on a NaN/Inf loss: stop (keeping the last checkpoint) or skip the step")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--resume", action="store_true",
                     help="continue from OUT/checkpoint.pt when present (use with torchrun --max-restarts)")


def train_config_from_args(args: argparse.Namespace, **fixed) -> TrainConfig:
    """A :class:`TrainConfig` from :func:`add_train_args` options; ``fixed`` sets the rest."""
    return TrainConfig(out_dir=args.out, steps=args.steps, batch_size=args.batch_size,
                       accumulation=args.accumulation, warmup_steps=args.warmup,
                       grad_clip=args.grad_clip or None, seed=args.seed,
                       checkpoint_every=args.checkpoint_every, log_every=args.log_every,
                       log_images_every=args.log_images_every,
                       num_workers=args.workers, nan_policy=args.nan_policy, resume=args.resume, **fixed)
