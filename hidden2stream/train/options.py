"""The training options every training job shares -> :class:`TrainConfig` of the loop."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hidden2stream.options import Options, non_negative_float, non_negative_int, option, positive_int
from hidden2stream.train.loop import TrainConfig


@dataclass(frozen=True)
class TrainOptions(Options):
    """Optimisation and run options; a job gives its own defaults with ``hidden2stream.options.override``."""

    steps: int = option(1000, "optimizer steps", parse=positive_int, group="optimisation")
    batch_size: int = option(16, "global batch per step (split over processes and accumulation)", parse=positive_int,
                             group="optimisation")
    accumulation: int = option(1, "gradient accumulation steps", parse=positive_int, group="optimisation")
    lr: float = option(1e-3, parse=non_negative_float, group="optimisation")
    weight_decay: float = option(0.0, parse=non_negative_float, group="optimisation")
    warmup: int = option(0, "linear warm-up steps", parse=non_negative_int, group="optimisation")
    grad_clip: float = option(10.0, "max gradient norm, 0 = off", parse=non_negative_float, group="optimisation")
    workers: int = option(1, "DataLoader worker processes", parse=int, group="run")
    checkpoint_every: int = option(200, parse=positive_int, group="run")
    log_every: int = option(10, parse=positive_int, group="run")
    log_images_every: int = option(250, "TensorBoard flow pictures (frame, flow, warping error, ground truth) every "
                                   "N steps, 0 = off", parse=non_negative_int, group="run")
    nan_policy: str = option("stop", "on a NaN/Inf loss: stop (keeping the last checkpoint) or skip the step",
                             choices=("stop", "skip"), group="run")
    seed: int = option(0, parse=int, group="run")
    resume: bool = option(False, "continue from OUT/checkpoint.pt when present (use with torchrun --max-restarts)",
                          group="run")

    def train_config(self, out: Path, **fixed) -> TrainConfig:
        """The loop's settings for a run into ``out``; ``fixed`` sets the job's own (milestones, extra ...)."""
        return TrainConfig(out_dir=out, steps=self.steps, batch_size=self.batch_size, accumulation=self.accumulation,
                           warmup_steps=self.warmup, grad_clip=self.grad_clip or None, seed=self.seed,
                           checkpoint_every=self.checkpoint_every, log_every=self.log_every,
                           log_images_every=self.log_images_every, num_workers=self.workers,
                           nan_policy=self.nan_policy, resume=self.resume, **fixed)
