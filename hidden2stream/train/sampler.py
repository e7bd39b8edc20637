"""A resumable distributed sampler that makes a run's data order independent of world size.

Each optimizer step consumes one *global batch* of ``batch_size * world_size * accumulation``
items, taken in order from a seeded permutation of the dataset (a new one each epoch, the last
incomplete batch dropped). Rank r takes the items at positions r, r + W, r + 2W, ... of each
micro-batch slice, as ``torch.utils.data.DistributedSampler`` does, so the union over ranks is the
same global batch for any number of processes. Starting at ``start_step`` skips exactly the
items already consumed, which is what makes ``--resume`` continue the same run.

Items are yielded as ``(index, epoch)``; :class:`EpochIndexed` passes the epoch on to datasets
that draw per-epoch randomness (``set_epoch``), inside each worker process.
"""
from __future__ import annotations

from typing import Iterator

import torch
from torch.utils.data import Dataset, Sampler

from hidden2stream.errors import UserError


class DistributedStepSampler(Sampler[tuple[int, int]]):
    """Endless ``(index, epoch)`` stream for one rank, in micro-batch order."""

    def __init__(self, num_items: int, batch_size: int, rank: int = 0, world_size: int = 1,
                 accumulation: int = 1, seed: int = 0, shuffle: bool = True, start_step: int = 0) -> None:
        self.num_items, self.batch_size = num_items, batch_size
        self.rank, self.world_size, self.accumulation = rank, world_size, accumulation
        self.seed, self.shuffle, self.start_step = seed, shuffle, start_step
        self.global_batch = batch_size * world_size * accumulation
        if num_items < self.global_batch:
            split = world_size * accumulation
            if num_items < split:
                fits = "use fewer processes or accumulation steps"
            else:
                fits = f"pass --batch-size {num_items // split * split}" + (
                    f" or a smaller multiple of {split}" if split > 1 else " or less")
            raise UserError(f"the training set has {num_items} items (videos, clips or windows), fewer than "
                            f"one global batch (--batch-size {self.global_batch} = {batch_size} x {world_size} "
                            f"processes x {accumulation} accumulation steps): {fits}")
        self.steps_per_epoch = num_items // self.global_batch

    def _order(self, epoch: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_items)
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.num_items, generator=generator)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        step = self.start_step
        while True:
            epoch, step_in_epoch = divmod(step, self.steps_per_epoch)
            order = self._order(epoch)
            for s in range(step_in_epoch, self.steps_per_epoch):
                chunk = order[s * self.global_batch:(s + 1) * self.global_batch]
                micro = self.batch_size * self.world_size
                for m in range(self.accumulation):
                    part = chunk[m * micro:(m + 1) * micro][self.rank::self.world_size]
                    for index in part.tolist():
                        yield index, epoch
            step = (epoch + 1) * self.steps_per_epoch

    def __len__(self) -> int:  # one epoch's worth for this rank
        return self.steps_per_epoch * self.batch_size * self.accumulation


class ShardSampler(Sampler[int]):
    """The indices ``rank, rank + W, rank + 2W, ...`` of ``num_items``, in order: an evaluation shard.

    Every item lands on exactly one of the W ranks, also when W does not divide ``num_items`` (no
    padding, unlike ``torch.utils.data.DistributedSampler``, which repeats items to even out the
    shards and so counts some videos twice).
    """

    def __init__(self, num_items: int, rank: int = 0, world_size: int = 1) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        self.indices = range(rank, num_items, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class EpochIndexed(Dataset):
    """Wraps a dataset so it accepts the sampler's ``(index, epoch)`` keys."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]):
        index, epoch = key
        set_epoch = getattr(self.dataset, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)
        return self.dataset[index]
