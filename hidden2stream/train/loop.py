"""The one training loop: MotionNet pretraining and hidden two-stream fine-tuning both run here.

What it does for every run: DDP (``torchrun``) with a world-size-independent data order, AMP with a
grad scaler where needed, gradient accumulation and clipping, a warm-up + step-decay learning rate
(:mod:`hidden2stream.train.schedule`), a guard against non-finite losses, atomic checkpoints every
N steps, exact ``--resume`` and elastic restarts, progress (a bar on a terminal, else lines on stderr)
and TensorBoard scalars on rank 0.

The pieces, in the order :func:`train` runs them (as torchvision's references split theirs):
:func:`resume` (checkpoint -> model, optimizer, schedule, scaler), :func:`build_loader`, then per
step :func:`train_step` (forward/backward/clip), :class:`NanGuard` (stop or skip a non-finite
step), :func:`finish_step` (optimizer, scaler, schedule), the averaged metrics of
:class:`_Logger` and :func:`save_checkpoint`.

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
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import ChainedScheduler
from torch.utils.data import DataLoader, Dataset

from hidden2stream.errors import UserError
from hidden2stream.progress import Progress
from hidden2stream.checkpoint import Checkpoint, unwrap
from hidden2stream.train.distributed import all_reduce_mean, any_rank, barrier
from hidden2stream.runtime import Runtime
from hidden2stream.train.sampler import DistributedStepSampler, EpochIndexed
from hidden2stream.train.schedule import build_scheduler, load_schedule

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


@dataclass
class StepOutput:
    """One step's forward/backward: metrics averaged over its micro-batches (with ``grad_norm``),
    whether loss and gradient norm were finite on this rank, and the last micro-batch (on the device)."""

    metrics: dict[str, float]
    finite: bool
    batch: dict[str, Any]


@dataclass
class _Run:
    """What the pieces of one run share: the unwrapped model (what checkpoints hold), its
    optimisation state, and the training time of the checkpoint it resumed from."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: ChainedScheduler
    scaler: torch.amp.GradScaler
    config: TrainConfig
    runtime: Runtime
    kind: str
    model_config: dict[str, Any]
    previous_seconds: float = 0.0
    began: float = field(default_factory=time.perf_counter)

    @property
    def checkpoint_path(self) -> Path:
        return Path(self.config.out_dir) / CHECKPOINT_NAME

    def seconds(self) -> float:
        """Training time so far, the resumed checkpoint's included."""
        return self.previous_seconds + time.perf_counter() - self.began


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


def _step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2 ** 63)


class _Logger:
    """Rank-0 progress (:class:`~hidden2stream.progress.Progress`), TensorBoard scalars and a
    ``metrics.jsonl`` history of the step metrics averaged between two log lines (over all ranks)."""

    def __init__(self, config: TrainConfig, runtime: Runtime, start: int, description: str) -> None:
        self.enabled = runtime.is_main
        self.device = runtime.device
        self.sums: dict[str, float] = {}
        self.count = 0
        self.bar = Progress(config.steps, description, initial=start, enabled=self.enabled)
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

    def add(self, metrics: dict[str, float]) -> None:
        """Count one applied step's metrics towards the next log line."""
        for name, value in metrics.items():
            self.sums[name] = self.sums.get(name, 0.0) + value
        self.count += 1

    def write_mean(self, step: int, lr: float) -> dict[str, float]:
        """The mean metrics since the last line (every rank takes part) plus ``lr``; logged on rank 0."""
        mean = all_reduce_mean({k: v / self.count for k, v in self.sums.items()}, self.device)
        mean["lr"] = lr
        self.sums, self.count = {}, 0
        self.scalars(step, mean)
        return mean

    def scalars(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.history.write(json.dumps({"step": step, **metrics}) + "\n")
        self.history.flush()
        self.bar.set_postfix({k: v for k, v in metrics.items() if k in ("loss", "lr") or k.startswith("acc")})

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


class NanGuard:
    """What to do with a step whose loss or gradient is NaN/Inf on any rank: ``stop`` raises
    :class:`TrainingDiverged` (the last checkpoint is kept); ``skip`` drops the step, at most
    ``max_skipped`` in a row."""

    def __init__(self, config: TrainConfig, checkpoint_path: Path) -> None:
        self.policy, self.max_skipped = config.nan_policy, config.max_skipped
        self.checkpoint_path = checkpoint_path
        self.skipped, self.consecutive = 0, 0

    def should_skip(self, step: int, output: StepOutput, device: torch.device) -> bool:
        """False for a finite step; True for one to skip; raises when the run must stop."""
        if not any_rank(not output.finite, device):
            self.consecutive = 0
            return False
        shown = ", ".join(f"{k}={v:.4g}" for k, v in output.metrics.items())
        if self.policy == "stop" or self.consecutive >= self.max_skipped:
            kept = (f"last good checkpoint {self.checkpoint_path} kept" if self.checkpoint_path.exists()
                    else "no checkpoint yet")
            raise TrainingDiverged(f"non-finite loss or gradient at step {step} ({shown}); stopped, {kept}. "
                                   f"Try a lower --lr, more --warmup, --grad-clip, or --nan-policy skip")
        self.skipped, self.consecutive = self.skipped + 1, self.consecutive + 1
        log.warning("skipping step %d: non-finite loss or gradient (%s)", step, shown)
        return True


def train(model: nn.Module, dataset: Dataset, objective: Objective, optimizer: torch.optim.Optimizer,
          config: TrainConfig, runtime: Runtime, kind: str, model_config: dict[str, Any],
          description: str = "train", image_callback: ImageCallback | None = None) -> TrainResult:
    """Train ``model`` for ``config.steps`` optimizer steps; returns where it ended.

    ``optimizer`` is built by the caller over the (unwrapped) model's parameters, with its own
    parameter groups and base learning rates; the schedule (:func:`build_scheduler`) scales every
    group alike. Checkpoints (``out_dir/checkpoint.pt``) hold ``kind`` and ``model_config`` so a
    checkpoint of another model or configuration is refused on resume. ``image_callback`` (see
    :data:`ImageCallback`) draws TensorBoard pictures every ``config.log_images_every`` steps.
    """
    Path(config.out_dir).mkdir(parents=True, exist_ok=True)
    micro = config.micro_batch(runtime.world_size)
    model = runtime.prepare(model)
    scheduler = build_scheduler(optimizer, config.steps, config.warmup_steps, config.milestones, config.gamma)
    run = _Run(model, optimizer, scheduler, runtime.grad_scaler(), config, runtime, kind, model_config)
    start = resume(run)
    net = wrap_model(model, config, runtime)
    loader = build_loader(dataset, micro, start, config, runtime)
    logger = _Logger(config, runtime, start, description)
    try:
        return _run_steps(run, net, loader, objective, logger, start, image_callback)
    finally:
        logger.close()


def _run_steps(run: _Run, net: nn.Module, loader: DataLoader, objective: Objective, logger: _Logger,
               start: int, image_callback: ImageCallback | None) -> TrainResult:
    """Steps ``start .. steps - 1``: seed, step, guard, log, draw, checkpoint."""
    config, runtime = run.config, run.runtime
    guard = NanGuard(config, run.checkpoint_path)
    last: dict[str, float] = {}
    batches = iter(loader)
    run.began = time.perf_counter()
    net.train()
    try:
        for step in range(start, config.steps):
            torch.manual_seed(_step_seed(config.seed, step, runtime.rank))
            output = train_step(net, batches, objective, run.optimizer, run.scaler, config, runtime)
            skip = guard.should_skip(step, output, runtime.device)
            lr = finish_step(run, apply=not skip)
            if skip:
                logger.update(1)
                continue
            logger.add(output.metrics)
            done = step + 1
            if done % config.log_every == 0 or done == config.steps:
                last = logger.write_mean(done, lr)
            logger.update(1)  # after the metrics, so the progress line shows this step's means
            logger.images(done, config.log_images_every, image_callback, unwrap(run.model), output.batch)
            if done % config.checkpoint_every == 0 or done == config.steps:
                save_checkpoint(run, done)
    finally:
        del batches  # stops DataLoader workers now, not when the traceback goes
    return TrainResult(step=config.steps, seconds=run.seconds(), last_metrics=last,
                       skipped_steps=guard.skipped, checkpoint=run.checkpoint_path)


def resume(run: _Run) -> int:
    """Load ``out_dir/checkpoint.pt`` into the run when resuming; returns the step to start from.

    An existing checkpoint without ``--resume`` is refused (the run would overwrite it); an
    elastic restart (``TORCHELASTIC_RESTART_COUNT`` > 0) always resumes.
    """
    path, is_main = run.checkpoint_path, run.runtime.is_main
    wanted = run.config.resume or int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")) > 0
    if not path.exists():
        if wanted and is_main:
            log.info("no checkpoint in %s yet: starting from step 0", path.parent)
        return 0
    if not wanted:
        raise UserError(f"{path} exists: pass --resume to continue it, or choose another --out")
    checkpoint = Checkpoint.load(path)
    checkpoint.check_resumable(run.kind, run.model_config)
    checkpoint.load_into(run.model)
    run.optimizer.load_state_dict(checkpoint.optimizer)
    load_schedule(run.scheduler, checkpoint.scheduler, path)
    run.scaler.load_state_dict(checkpoint.scaler)
    run.previous_seconds = checkpoint.seconds
    start = checkpoint.step
    if is_main:
        log.info("resumed %s from step %d of %d", path, start, run.config.steps)
    return start


def save_checkpoint(run: _Run, step: int) -> None:
    """Rank 0 writes ``out_dir/checkpoint.pt`` atomically (the keys :func:`resume` reads); all ranks wait."""
    if run.runtime.is_main:
        Checkpoint(run.kind, run.model_config, unwrap(run.model).state_dict(), step=step, seconds=run.seconds(),
                   optimizer=run.optimizer.state_dict(), scheduler=run.scheduler.state_dict(),
                   scaler=run.scaler.state_dict(),
                   extra={"train_config": _plain_config(run.config)}).save(run.checkpoint_path)
    barrier()


def build_loader(dataset: Dataset, micro: int, start: int, config: TrainConfig, runtime: Runtime) -> DataLoader:
    """Micro-batches of this rank in the world-size-independent order of step ``start`` onwards."""
    sampler = DistributedStepSampler(len(dataset), micro, runtime.rank, runtime.world_size,
                                     config.accumulation, config.seed, start_step=start)
    return DataLoader(EpochIndexed(dataset), batch_size=micro, sampler=sampler,
                      num_workers=config.num_workers, pin_memory=runtime.device.type == "cuda",
                      persistent_workers=config.num_workers > 0, drop_last=False,
                      prefetch_factor=4 if config.num_workers > 0 else None)


def train_step(net: nn.Module, batches: Iterator[dict[str, Any]], objective: Objective,
               optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler, config: TrainConfig,
               runtime: Runtime) -> StepOutput:
    """Forward and backward of one optimizer step, without stepping: ``accumulation`` micro-batches
    under autocast (DDP syncs gradients on the last only), each loss scaled by the grad scaler and
    divided by ``accumulation``; then the gradients are unscaled and clipped."""
    optimizer.zero_grad(set_to_none=True)
    metrics: dict[str, float] = {}
    finite = True
    for m in range(config.accumulation):
        batch = _to_device(next(batches), runtime.device)
        sync = m == config.accumulation - 1 or not runtime.distributed
        with contextlib.nullcontext() if sync else net.no_sync():
            with runtime.autocast():
                loss, extra = objective(net, batch)
            finite = finite and bool(torch.isfinite(loss.detach()).item())
            scaler.scale(loss / config.accumulation).backward()
        for name, value in {"loss": loss.detach(), **extra}.items():
            metrics[name] = metrics.get(name, 0.0) + float(value) / config.accumulation
    norm = clip_gradients(optimizer, scaler, config.grad_clip)
    metrics["grad_norm"] = float(norm)
    return StepOutput(metrics, finite and bool(torch.isfinite(norm).item()), batch)


def clip_gradients(optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                   max_norm: float | None) -> torch.Tensor:
    """Unscale the optimizer's gradients; returns their global L2 norm (before clipping to ``max_norm``)."""
    scaler.unscale_(optimizer)
    params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    if max_norm:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
    return norm


def finish_step(run: _Run, apply: bool) -> float:
    """Step the optimizer (or drop a skipped step's gradients), the scaler and the schedule;
    returns the learning rate of the last parameter group for this step (read from the scheduler)."""
    lr = float(run.scheduler.get_last_lr()[-1])
    if apply:
        run.scaler.step(run.optimizer)
    else:
        run.optimizer.zero_grad(set_to_none=True)
    run.scaler.update()
    run.scheduler.step()
    return lr


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
