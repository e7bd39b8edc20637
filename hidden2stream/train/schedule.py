"""The learning-rate schedule: linear warm-up times step decay, from ``torch.optim.lr_scheduler``.

At step ``s`` (0-based, the step the rate is used for) every parameter group runs at::

    base_lr * min(1, (s + 1) / warmup_steps) * gamma ** (number of milestones m with s >= m * steps)

The two factors multiply, so they are chained (:class:`ChainedScheduler`), not run one after the
other (:class:`SequentialLR` would start the decay only after the warm-up, and short runs such as
``main.py --quick`` have milestones inside the warm-up). :class:`LinearLR` reaches
``(s + 1) / W`` with ``start_factor = 1 / W`` and ``total_iters = W - 1``; :class:`MultiStepLR`
decays at ``ceil(m * steps)``, the first integer step with ``s >= m * steps``. Both update the
rate multiplicatively, so it matches the closed form to float64 rounding (about 1e-15), and its
``state_dict`` resumes it exactly.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch.optim.lr_scheduler import ChainedScheduler, LinearLR, LRScheduler, MultiStepLR

from hidden2stream.errors import CheckpointError


def build_scheduler(optimizer: torch.optim.Optimizer, steps: int, warmup_steps: int,
                    milestones: tuple[float, ...], gamma: float) -> ChainedScheduler:
    """Warm-up (when ``warmup_steps`` > 1) chained with step decay; ``milestones`` are fractions of
    ``steps``. Building it sets every group's rate to its step-0 value (``initial_lr`` keeps the base)."""
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be 0 or more, got {warmup_steps}")
    schedulers: list[LRScheduler] = []
    if warmup_steps > 1:
        schedulers.append(LinearLR(optimizer, start_factor=1.0 / warmup_steps, total_iters=warmup_steps - 1))
    decay_steps = [math.ceil(m * steps) for m in milestones]
    schedulers.append(MultiStepLR(optimizer, milestones=decay_steps, gamma=gamma))
    return ChainedScheduler(schedulers, optimizer)


def load_schedule(scheduler: ChainedScheduler, state: Any, path: str | Path) -> None:
    """Resume ``scheduler`` from a checkpoint's ``scheduler`` entry (the saved milestones win, as in
    torchvision's references: a resumed run keeps the schedule it was started with).

    The saved chain must hold the same schedulers in the same order: a checkpoint of an older
    schedule (``LambdaLR``) or of another warm-up choice is refused in one line, not half loaded.
    """
    if not _same_chain(state, scheduler.state_dict()):
        raise CheckpointError(f"checkpoint {path} holds another learning-rate schedule (an older version or "
                              f"another --warmup): resume it with the options it was made with, or rerun "
                              f"the training into a new --out")
    scheduler.load_state_dict(state)


def _same_chain(saved: Any, current: dict[str, Any]) -> bool:
    """Whether ``saved`` is a chain state whose schedulers have the keys of ``current``'s, in order."""
    links = saved.get("_schedulers") if isinstance(saved, dict) else None
    if not isinstance(links, list) or not all(isinstance(link, dict) for link in links):
        return False
    return [set(link) for link in links] == [set(link) for link in current["_schedulers"]]
