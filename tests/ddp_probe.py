"""Test-only launcher for tests/train/test_distributed.py: experiments/pretrain_motion.py with probes.

    [torchrun --nproc-per-node N] python tests/ddp_probe.py ROOT MODE[,MODE...] [pretrain_motion.py options]

Runs ``pretrain_motion.py`` once per MODE, in this process (one process group for all of them),
with ``--out ROOT/MODE``. Besides the run's own files, rank 0 saves ``ROOT/MODE/probe.pt``:
``{"initial": weights before the first step, "first_grad": the first step's gradients}``, each a list
over the optimizer's parameters; the gradients are taken as the optimizer sees them (after DDP's
all-reduce and any clipping, before the update).

MODE ``ok`` runs the loop as shipped. The others break the averaging of a multi-process run on
purpose, so that the test can show its equivalence check catches each bug:

  ``sum``        DDP sums the ranks' gradients instead of averaging them;
  ``drop``       the other ranks' shares of the gradient are dropped (zeros), rank 0's is averaged in;
  ``duplicate``  every rank reads rank 0's share of each batch (the other shares are never seen);
  ``order``      the data order depends on the number of processes.

Nothing in the package imports this; the patches live only in this process.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.optim.optimizer import register_optimizer_step_pre_hook

import hidden2stream.pipeline.pretrain as stage
import hidden2stream.train.loop as loop
from hidden2stream_experiments.cli import run_cli
from hidden2stream_experiments.parsing import parse_options

MODES = ("ok", "sum", "drop", "duplicate", "order")
SHIPPED = {"DistributedDataParallel": loop.DistributedDataParallel,
           "DistributedStepSampler": loop.DistributedStepSampler}


def _sum_hook(state, bucket):
    """All-reduce without DDP's division by the world size: the gradient of the summed loss."""
    future = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
    return future.then(lambda f: f.value()[0])


def _drop_hook(state, bucket):
    """Ranks other than 0 contribute zeros; the result is still divided by the world size."""
    buffer = bucket.buffer()
    if dist.get_rank() != 0:
        buffer.zero_()
    buffer.div_(dist.get_world_size())
    future = dist.all_reduce(buffer, async_op=True).get_future()
    return future.then(lambda f: f.value()[0])


class _HookedDDP(SHIPPED["DistributedDataParallel"]):
    hook = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_comm_hook(None, self.hook)


class _BrokenSampler(SHIPPED["DistributedStepSampler"]):
    mode = ""

    def __init__(self, num_items, batch_size, rank=0, world_size=1, accumulation=1, seed=0, **kwargs):
        if self.mode == "duplicate":
            rank = 0
        else:  # "order"
            seed += world_size
        super().__init__(num_items, batch_size, rank, world_size, accumulation, seed, **kwargs)


def _patch(mode: str) -> None:
    """Put the shipped classes back, then break what ``mode`` breaks."""
    for name, cls in SHIPPED.items():
        setattr(loop, name, cls)
    if mode in ("sum", "drop"):
        _HookedDDP.hook = staticmethod(_sum_hook if mode == "sum" else _drop_hook)
        loop.DistributedDataParallel = _HookedDDP
    elif mode in ("duplicate", "order"):
        _BrokenSampler.mode = mode
        loop.DistributedStepSampler = _BrokenSampler


def main() -> None:
    root, modes, *argv = sys.argv[1:]
    modes = modes.split(",")
    if any(m not in MODES for m in modes):
        raise SystemExit(f"MODE must be among {MODES}, got {modes}")
    shutdown = stage.shutdown_distributed
    stage.shutdown_distributed = lambda: None  # keep one process group for all the runs
    probe: dict[str, list[torch.Tensor]] = {}

    def record(optimizer, args, kwargs):
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if not probe:
            probe["initial"] = [p.detach().clone() for p in params]
            probe["first_grad"] = [p.grad.detach().clone() for p in params]

    register_optimizer_step_pre_hook(record)
    try:
        for mode in modes:
            _patch(mode)
            probe.clear()
            out = Path(root) / mode
            run_cli(lambda args: stage.run(parse_options(stage.PretrainOptions, args, None)), [*argv, "--out", str(out)])
            if int(os.environ.get("RANK", "0")) == 0:
                torch.save(probe, out / "probe.pt")
    finally:
        shutdown()


if __name__ == "__main__":
    main()
