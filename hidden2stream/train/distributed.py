"""Distributed data parallel through ``torchrun``: process-group set-up and metric reduction.

``torchrun`` sets RANK, WORLD_SIZE and LOCAL_RANK; without them everything runs in one process.
The backend is NCCL on CUDA and gloo on CPU (how the test suite runs two processes).
"""
from __future__ import annotations

import logging
import os
from datetime import timedelta

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


def init_distributed() -> tuple[int, int, int]:
    """Join the process group when launched by torchrun; return (rank, world_size, local_rank)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return 0, 1, 0
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and os.environ.get("H2S_BACKEND") != "gloo" else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30), rank=rank,
                                world_size=world_size, store=_round_store(world_size))
    return rank, world_size, local_rank


def _round_store(world_size: int) -> dist.Store | None:
    """The rendezvous store, with keys private to this restart round of ``torchrun``.

    After an elastic restart the agent's store still holds the previous round's addresses; without
    a per-round prefix the new workers may connect to a dead worker's port. None = default env://.
    """
    restart = os.environ.get("TORCHELASTIC_RESTART_COUNT")
    if restart is None or "MASTER_ADDR" not in os.environ:
        return None
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), world_size,
                          is_master=False, timeout=timedelta(minutes=5))
    return dist.PrefixStore(f"hidden2stream/round{restart}", store)


def shutdown_distributed() -> None:
    """Leave the process group (safe to call when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(values: dict[str, torch.Tensor | float], device: torch.device) -> dict[str, float]:
    """Average scalar metrics over all ranks (identity in one process)."""
    keys = sorted(values)
    stacked = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        stacked /= dist.get_world_size()
    return dict(zip(keys, stacked.tolist()))


def all_gather_objects(obj: object) -> list:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` in one process.

    For results of different sizes per rank, e.g. the per-video scores of an evaluation shard.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, obj)
        return gathered
    return [obj]


def any_rank(flag: bool, device: torch.device) -> bool:
    """True when ``flag`` is true on at least one rank, so all ranks take the same branch."""
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)
