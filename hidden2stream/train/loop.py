"""The one training loop: MotionNet pretraining and hidden two-stream fine-tuning both run here.

What it does for every run: DDP (``torchrun``) with a world-size-independent data order, AMP with a
grad scaler where needed, gradient accumulation and clipping, a warm-up + step-decay learning rate,
a guard against non-finite losses, atomic checkpoints every N steps, exact ``--resume`` and
elastic restarts, a progress bar and TensorBoard scalars on rank 0.

Exact resume: the data order comes from :class:`DistributedStepSampler` (a function of seed and
step), every dataset item is seeded by its index and epoch, and the global RNG (dropout, on-device
augmentation) is re-seeded from (seed, step, rank) before each step. So a run stopped after step
s and resumed from its checkpoint takes exactly the steps the uninterrupted run would have taken.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from hidden2stream.errors import UserError
from hidden2stream.train.checkpoint import load_checkpoint, load_weights, save_atomic, unwrap
from hidden2stream.train.distributed import all_reduce_mean, any_rank, barrier
from hidden2stream.train.runtime import Runtime
from hidden2stream.train.sampler import DistributedStepSampler, EpochIndexed

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"

# objective(model, batch) -> (loss, {name: scalar tensor}); batch tensors are already on the device.
Objective = Callable[[nn.Module, dict[str, torch.Tensor]], tuple[torch.Tensor, dict[str, torch.Tensor]]]
# image_callback(model, batch, step, writer): draws pictures into the TensorBoard SummaryWriter (rank 0,
# every ``log_images_every`` steps; the unwrapped model, the step's last micro-batch on the device).
ImageCallback = Callable[[nn.Module, dict[str, Any], int, Any], None]


class TrainingDiverged(UserError):
    """The loss (or the gradient) became NaN/Inf and the policy says stop."""


@dataclass
class TrainConfig:
    """Optimisation and bookkeeping settings of one run.

    ``batch_size`` is the *global* batch per optimizer step: it is split over
    ``world_size x accumulation`` micro-batches, so results do not depend on the process count.
    ``milestones`` are fractions of ``steps`` at which the learning rate is multiplied by ``gamma``.
    """

    out_dir: Path
    steps: int = 1000
    batch_size: int = 16
    accumulation: int = 1
    warmup_steps: int = 0
    milestones: tuple[float, ...] = ()
    gamma: float = 0.5
    grad_clip: float | None = None
    seed: int = 0
    checkpoint_every: int = 200
    log_every: int = 10
    num_workers: int = 0
    nan_policy: str = "stop"  # "stop" or "skip"
    max_skipped: int = 20
    resume: bool = False
    find_unused_parameters: bool = False
    sync_batchnorm: bool = True  # under DDP on CUDA (SyncBatchNorm has no CPU implementation)
    log_images_every: int = 0  # steps between image callbacks, 0 = never
    extra: dict[str, Any] = field(default_factory=dict)

    def micro_batch(self, world_size: int) -> int:
        split = world_size * self.accumulation
        if self.batch_size % split:
            raise UserError(f"--batch-size {self.batch_size} is not divisible by "
                            f"{world_size} processes x {self.accumulation} accumulation steps")
        return self.batch_size // split


@dataclass
class TrainResult:
    """Where a run ended; ``seconds`` is the training time of the checkpoint, resumed runs included."""

    step: int
    seconds: float
    last_metrics: dict[str, float]
    skipped_steps: int
    checkpoint: Path


def lr_factor(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then ``gamma`` at each milestone (the paper halves the lr 5 times)."""
    warm = min(1.0, (step + 1) / config.warmup_steps) if config.warmup_steps else 1.0
    passed = sum(step >= m * config.steps for m in config.milestones)
    return warm * config.gamma ** passed


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2 ** 63)


class _Logger:
    """Rank-0 progress bar, TensorBoard scalars and a ``metrics.jsonl`` history."""

    def __init__(self, config: TrainConfig, runtime: Runtime, start: int, description: str) -> None:
        self.enabled = runtime.is_main
        self.bar = tqdm(total=config.steps, initial=start, desc=description, dynamic_ncols=True,
                        disable=not self.enabled or None, mininterval=1.0)
        self.writer = None
        self.history = None
        if self.enabled:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(log_dir=str(config.out_dir / "tensorboard"), purge_step=start)
            path = config.out_dir / METRICS_NAME
            kept = [line for line in path.read_text().splitlines()
                    if json.loads(line)["step"] <= start] if path.exists() else []
            self.history = open(path, "w", encoding="utf-8")  # drop steps a crash made us redo
            self.history.writelines(line + "\n" for line in kept)

    def update(self, steps: int) -> None:
        self.bar.update(steps)

    def scalars(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.history.write(json.dumps({"step": step, **metrics}) + "\n")
        self.history.flush()
        shown = {k: f"{v:.4g}" for k, v in metrics.items() if k in ("loss", "lr") or k.startswith("acc")}
        self.bar.set_postfix(shown, refresh=False)

    def images(self, step: int, every: int, callback: ImageCallback | None, model: nn.Module,
               batch: dict[str, Any]) -> None:
        """Run the image callback at every ``every``-th step (rank 0, never when ``every`` is 0)."""
        if self.enabled and callback is not None and every and step % every == 0:
            callback(model, batch, step, self.writer)

    def close(self) -> None:
        self.bar.close()
        if self.writer is not None:
            self.writer.close()
            self.history.close()


def train(model: nn.Module, dataset: Dataset, objective: Objective, optimizer: torch.optim.Optimizer,
          config: TrainConfig, runtime: Runtime, kind: str, model_config: dict[str, Any],
          description: str = "train", image_callback: ImageCallback | None = None) -> TrainResult:
    """Train ``model`` for ``config.steps`` optimizer steps; returns where it ended.

    ``optimizer`` is built by the caller over the (unwrapped) model's parameters, with its own
    parameter groups and base learning rates; the loop scales every group by :func:`lr_factor`.
    Checkpoints (``out_dir/checkpoint.pt``) hold ``kind`` and ``model_config`` so a checkpoint of
    another model or configuration is refused on resume. ``image_callback`` (see
    :data:`ImageCallback`) draws TensorBoard pictures every ``config.log_images_every`` steps.
    """
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = out_dir / CHECKPOINT_NAME
    micro = config.micro_batch(runtime.world_size)

    model = runtime.prepare(model)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, config))
    scaler = runtime.grad_scaler()

    start, previous_seconds = 0, 0.0
    resume = config.resume or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    if ckpt_path.exists():
        if not resume:
            raise UserError(f"{ckpt_path} exists: pass --resume to continue it, or choose another --out")
        checkpoint = load_checkpoint(ckpt_path, kind=kind, model_config=model_config)
        load_weights(model, checkpoint, ckpt_path)
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        scaler.load_state_dict(checkpoint["scaler"])
        start = int(checkpoint["step"])
        previous_seconds = float(checkpoint.get("seconds", 0.0))
        if runtime.is_main:
            log.info("resumed %s from step %d of %d", ckpt_path, start, config.steps)
    elif resume and runtime.is_main:
        log.info("no checkpoint in %s yet: starting from step 0", out_dir)

    net = wrap_model(model, config, runtime)

    def save(step: int) -> None:
        if runtime.is_main:
            save_atomic({"kind": kind, "model_config": model_config, "model": unwrap(model).state_dict(),
                         "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "scaler": scaler.state_dict(), "step": step,
                         "seconds": previous_seconds + time.perf_counter() - began,
                         "extra": {"train_config": _plain_config(config)}}, ckpt_path)
        barrier()

    sampler = DistributedStepSampler(len(dataset), micro, runtime.rank, runtime.world_size,
                                     config.accumulation, config.seed, start_step=start)
    loader = DataLoader(EpochIndexed(dataset), batch_size=micro, sampler=sampler,
                        num_workers=config.num_workers, pin_memory=runtime.device.type == "cuda",
                        persistent_workers=config.num_workers > 0, drop_last=False,
                        prefetch_factor=4 if config.num_workers > 0 else None)
    batches = iter(loader)
    logger = _Logger(config, runtime, start, description)
    sums: dict[str, float] = {}
    count, skipped, consecutive = 0, 0, 0
    last: dict[str, float] = {}
    began = time.perf_counter()
    net.train()
    try:
        for step in range(start, config.steps):
            torch.manual_seed(_step_seed(config.seed, step, runtime.rank))
            optimizer.zero_grad(set_to_none=True)
            step_metrics: dict[str, float] = {}
            finite = True
            for m in range(config.accumulation):
                batch = _to_device(next(batches), runtime.device)
                sync = m == config.accumulation - 1 or not runtime.distributed
                context = contextlib.nullcontext() if sync else net.no_sync()
                with context:
                    with runtime.autocast():
                        loss, metrics = objective(net, batch)
                    finite = finite and bool(torch.isfinite(loss.detach()).item())
                    scaler.scale(loss / config.accumulation).backward()
                for name, value in {"loss": loss.detach(), **metrics}.items():
                    step_metrics[name] = step_metrics.get(name, 0.0) + float(value) / config.accumulation
            scaler.unscale_(optimizer)
            params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            if config.grad_clip:
                norm = torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
            else:
                norm = torch.norm(torch.stack([p.grad.detach().float().norm() for p in params])) \
                    if params else torch.zeros(())
            finite = finite and bool(torch.isfinite(norm).item())
            if any_rank(not finite, runtime.device):
                shown = ", ".join(f"{k}={v:.4g}" for k, v in step_metrics.items())
                kept = f"last good checkpoint {ckpt_path} kept" if ckpt_path.exists() else "no checkpoint yet"
                if config.nan_policy == "stop" or consecutive + 1 > config.max_skipped:
                    raise TrainingDiverged(f"non-finite loss or gradient at step {step} ({shown}); "
                                           f"stopped, {kept}. Try a lower --lr, more --warmup, "
                                           f"--grad-clip, or --nan-policy skip")
                skipped, consecutive = skipped + 1, consecutive + 1
                log.warning("skipping step %d: non-finite loss or gradient (%s)", step, shown)
                optimizer.zero_grad(set_to_none=True)
                scaler.update()
                scheduler.step()
                logger.update(1)
                continue
            consecutive = 0
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            step_metrics["grad_norm"] = float(norm)
            for name, value in step_metrics.items():
                sums[name] = sums.get(name, 0.0) + value
            count += 1
            logger.update(1)
            done = step + 1
            if done % config.log_every == 0 or done == config.steps:
                last = all_reduce_mean({k: v / count for k, v in sums.items()}, runtime.device)
                last["lr"] = base_lrs[-1] * lr_factor(step, config)
                logger.scalars(done, last)
                sums, count = {}, 0
            logger.images(done, config.log_images_every, image_callback, unwrap(model), batch)
            if done % config.checkpoint_every == 0 or done == config.steps:
                save(done)
    finally:
        logger.close()
        del batches
    return TrainResult(step=config.steps, seconds=previous_seconds + time.perf_counter() - began, last_metrics=last,
                       skipped_steps=skipped, checkpoint=ckpt_path)


def wrap_model(model: nn.Module, config: TrainConfig, runtime: Runtime) -> nn.Module:
    """The module the loop trains: DDP under ``torchrun`` (SyncBatchNorm first, on CUDA only: it
    has no CPU implementation, so a CPU/gloo run keeps per-process BatchNorm), then ``torch.compile``."""
    net: nn.Module = model
    if runtime.distributed:
        if config.sync_batchnorm and runtime.device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        net = DistributedDataParallel(
            net, device_ids=[runtime.device.index] if runtime.device.type == "cuda" else None,
            find_unused_parameters=config.find_unused_parameters)
    if runtime.compile:
        net = torch.compile(net)
    return net


def _plain_config(config: TrainConfig) -> dict[str, Any]:
    """The train config as checkpoint-safe primitives (``weights_only`` loads no Path objects)."""
    plain = asdict(config)
    plain["out_dir"] = str(plain["out_dir"])
    return json.loads(json.dumps(plain, default=str))
