"""Classical flow on many frame pairs with one process per core, as a two-stage pipeline runs it.

TV-L1 is a per-pair optimisation; the usual way to use every core on a video collection is a pool
of single-threaded processes, each computing whole pairs. :class:`FlowPool` does that with
:func:`hidden2stream.flow.classic.classic_flow`: frames travel as uint8 RGB arrays and flows come
back as float32 ``(2, H, W)`` arrays in pixels (u, v).
"""
from __future__ import annotations

import multiprocessing
import os
from typing import Sequence

import numpy as np
import torch

from hidden2stream.flow.classic import CLASSIC_METHODS, classic_flow


def _init_worker(ready) -> None:
    """One thread per worker process: the pool, not the library, spreads the work over the cores."""
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    ready.put(os.getpid())


def _pair_flow(task: tuple[str, np.ndarray, np.ndarray]) -> np.ndarray:
    method, first, second = task
    frames = [torch.from_numpy(f).permute(2, 0, 1).float().div_(255.0) for f in (first, second)]
    return classic_flow(method, frames[0], frames[1]).numpy()


def to_uint8(frames: torch.Tensor) -> np.ndarray:
    """Float frames ``(N, 3, H, W)`` in [0, 1] -> uint8 RGB ``(N, H, W, 3)`` (exact for decoded frames)."""
    return (frames.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()


class FlowPool:
    """A pool of ``workers`` processes (default: one per core) computing ``method`` flow pair by pair.

    Use as a context manager; :meth:`windows` maps every consecutive pair of every window.
    Processes are started with ``spawn`` (safe beside torch's OpenMP threads); the constructor returns
    once every worker is up, so no later call pays for process start-up.
    """

    def __init__(self, method: str = "tvl1", workers: int | None = None) -> None:
        if method not in CLASSIC_METHODS:
            raise ValueError(f"unknown classic flow method {method!r}; choose one of {', '.join(CLASSIC_METHODS)}")
        self.method = method
        self.workers = workers or os.cpu_count() or 1
        if self.workers < 1:
            raise ValueError(f"need at least 1 worker, got {self.workers}")
        context = multiprocessing.get_context("spawn")
        ready = context.Queue()
        self._pool = context.Pool(self.workers, initializer=_init_worker, initargs=(ready,))
        for _ in range(self.workers):  # every worker has started and imported its modules
            ready.get(timeout=300)

    def __enter__(self) -> "FlowPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._pool.terminate()
        self._pool.join()

    def pairs(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Flow ``(2, H, W)`` float32 of each ``(first, second)`` uint8 ``(H, W, 3)`` pair, in order."""
        return self._pool.map(_pair_flow, [(self.method, a, b) for a, b in pairs], chunksize=1)

    def windows(self, windows: torch.Tensor) -> torch.Tensor:
        """Windows ``(K, T+1, 3, H, W)`` in [0, 1] -> flows ``(K, T, 2, H, W)`` of consecutive frames."""
        if windows.ndim != 5 or windows.shape[1] < 2 or windows.shape[2] != 3:
            raise ValueError(f"expected windows (K, T+1, 3, H, W) with T >= 1, got {tuple(windows.shape)}")
        k, count = windows.shape[:2]
        frames = to_uint8(windows.flatten(0, 1)).reshape(k, count, *windows.shape[-2:], 3)
        flows = self.pairs([(w[t], w[t + 1]) for w in frames for t in range(count - 1)])
        return torch.from_numpy(np.stack(flows)).reshape(k, count - 1, 2, *windows.shape[-2:])
