"""Runtime options in one place: device, mixed precision, memory format, compilation.

GPU-first defaults: on CUDA, bf16 autocast, ``channels_last`` and ``cudnn.benchmark`` are on;
on CPU everything runs in float32 and ``torch.compile`` stays off unless asked for.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import torch
from torch import nn

from hidden2stream.errors import UserError
from hidden2stream.options import Options, option

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Runtime:
    """Where and how tensors run. ``amp`` is ``"bf16"``, ``"fp16"`` or ``"off"``."""

    device: torch.device
    amp: str = "off"
    channels_last: bool = False
    compile: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast context for forward passes (a no-op when ``amp == "off"``)."""
        if self.amp == "off":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AMP_DTYPES[self.amp])

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A scaler that is active only for fp16 (bf16 needs none)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp == "fp16")

    def prepare(self, model: nn.Module) -> nn.Module:
        """Move a model to the device and memory format (compilation is done by the loop)."""
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model


@dataclass(frozen=True)
class RuntimeOptions(Options):
    """The runtime a job asks for; ``auto`` settings are resolved for the machine by :meth:`resolve`."""

    device: str = option("auto", "auto, cpu, cuda or cuda:N (default: auto)", group="runtime")
    amp: str = option("auto", "mixed precision (auto: bf16 on CUDA, off on CPU)",
                      choices=("auto", "bf16", "fp16", "off"), group="runtime")
    channels_last: str = option("auto", "channels_last memory format (auto: on for CUDA)",
                                choices=("auto", "on", "off"), group="runtime")
    compile: bool = option(False, "wrap the model in torch.compile", group="runtime")

    def resolve(self, rank: int = 0, world_size: int = 1, local_rank: int = 0) -> Runtime:
        """The :class:`Runtime` of these options on this machine (and this process of ``world_size``)."""
        if self.device == "auto":
            device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
        else:
            try:
                device = torch.device(self.device)
            except RuntimeError as err:
                raise UserError(f"unknown device {self.device!r}") from err
            if device.type == "cuda":
                if not torch.cuda.is_available():
                    raise UserError("--device cuda asked for, but no CUDA device is available")
                if device.index is None:
                    device = torch.device(f"cuda:{local_rank}")
        cuda = device.type == "cuda"
        amp = ("bf16" if cuda else "off") if self.amp == "auto" else self.amp
        channels_last = cuda if self.channels_last == "auto" else self.channels_last == "on"
        if cuda:
            torch.cuda.set_device(device)
            torch.backends.cudnn.benchmark = True
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        return Runtime(device=device, amp=amp, channels_last=channels_last, compile=self.compile,
                       rank=rank, world_size=world_size, local_rank=local_rank)


def cpu_threads() -> int:
    """Threads torch uses on CPU (all cores unless OMP_NUM_THREADS says otherwise)."""
    return int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))


@contextlib.contextmanager
def evaluation(model: nn.Module) -> Iterator[nn.Module]:
    """Put a model in eval mode under ``torch.inference_mode`` and restore its mode after."""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield model
    finally:
        model.train(was_training)
