"""The checkpoint format, in one place: :class:`Checkpoint` is its only reader and writer.

A checkpoint file is a plain dict of tensors and primitives::

    {"kind": "motionnet" | "two_stream", "model_config": {...}, "model": state_dict,
     "optimizer": ..., "scheduler": ..., "scaler": ..., "step": int, "seconds": float,
     "extra": {"train_config": {...}}}

``model_config`` is the model family's config as plain primitives (``MotionNetConfig.to_dict()``,
``HiddenTwoStreamConfig.to_dict()``), tagged ``{"family": kind, "version": n}``: it alone rebuilds
the network. The families register their config class here (:func:`register_family`, done by
``hidden2stream.models`` when imported), so this module sits below the models and still hands out
typed configs (:attr:`Checkpoint.config`). Shipped weights are the same dict without the optimizer.

Writes go to a temporary file in the same folder, are flushed to disk, then renamed over the
old file, so a crash or a full disk mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import nn

from hidden2stream.atomic import write_atomic
from hidden2stream.errors import CheckpointError


def save_atomic(obj: dict[str, Any], path: str | Path) -> Path:
    """Write ``obj`` with ``torch.save`` so that ``path`` is either the old or the new file."""
    return write_atomic(path, lambda handle: torch.save(obj, handle))


PYTORCH_MAGIC = (b"PK\x03\x04", b"\x80")  # how torch.save files begin: a zip archive, or a pickle (legacy)


def read_torch_file(path: Path, what: str) -> Any:
    """``torch.load`` of ``path`` on the CPU with ``weights_only=True``. A file that fails to load is
    one line saying which failure it is: not a PyTorch file at all (a text file given by mistake), or
    a damaged, truncated or foreign one; ``what`` names the expected content (``state_dict``)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        with path.open("rb") as handle:
            head = handle.read(4)
        if not head.startswith(PYTORCH_MAGIC):
            problem = "not a PyTorch file" if head else "an empty file"
            raise CheckpointError(f"{path} is not a {what} ({problem})") from None
        raise CheckpointError(f"{path} cannot be read as a {what}: a damaged, truncated or foreign PyTorch file "
                              f"({type(err).__name__})") from err


#: family name -> config class; filled by :func:`register_family` when the model modules are imported
FAMILIES: dict[str, type] = {}

RERUN = {"motionnet": "experiments/pretrain_motion.py (shipped weights: experiments/make_weights.py)",
         "two_stream": "experiments/train_two_stream.py"}
MOTIONNET_PREFIX = "hidden.motionnet."  # where a two-stream state_dict keeps its MotionNet

C = TypeVar("C", bound=type)


def register_family(config_class: C) -> C:
    """Class decorator of a family's config: checkpoints of ``config_class.FAMILY`` rebuild it."""
    FAMILIES[config_class.FAMILY] = config_class
    return config_class


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint, loaded once: the model's tagged config and weights, and what training adds
    (optimizer, scheduler and scaler states, step, seconds, ``extra``). ``path`` names it in errors."""

    kind: str
    model_config: dict[str, Any]
    model: dict[str, Any]
    path: Path = Path("<memory>")
    step: int = 0
    seconds: float = 0.0
    optimizer: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    scaler: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path, kind: str | None = None) -> "Checkpoint":
        """Read ``path`` on the CPU with ``weights_only=True``; a missing, damaged or foreign file, or one of
        another ``kind`` than asked for, is a one-line :class:`CheckpointError`."""
        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"checkpoint {path} does not exist")
        data = read_torch_file(path, "hidden2stream checkpoint")
        if not isinstance(data, dict) or "model" not in data:
            raise CheckpointError(f"checkpoint {path} is not a hidden2stream checkpoint")
        if kind is not None and data.get("kind") != kind:
            raise CheckpointError(f"checkpoint {path} holds a {data.get('kind')!r} model, expected {kind!r}")
        return cls(kind=data.get("kind"), model_config=data.get("model_config"), model=data["model"], path=path,
                   step=int(data.get("step", 0)), seconds=float(data.get("seconds", 0.0)),
                   optimizer=data.get("optimizer"), scheduler=data.get("scheduler"), scaler=data.get("scaler"),
                   extra=data.get("extra") or {})

    def save(self, path: str | Path) -> Path:
        """Write atomically; a checkpoint without optimizer state (shipped weights) stores none."""
        data: dict[str, Any] = {"kind": self.kind, "model_config": self.model_config, "model": self.model}
        if self.optimizer is not None:
            data.update(optimizer=self.optimizer, scheduler=self.scheduler, scaler=self.scaler, step=self.step,
                        seconds=self.seconds, extra=self.extra)
        return save_atomic(data, path)

    def tagged_config(self) -> dict[str, Any]:
        """``model_config`` after checking its tag against the family of :attr:`kind`: a checkpoint of an
        older or other format is one line naming the script to rerun."""
        config, rerun = self.model_config, RERUN.get(self.kind, "the script that made it")
        family = FAMILIES.get(self.kind)
        if family is None:
            raise CheckpointError(f"checkpoint {self.path} holds a {self.kind!r} model, expected one of "
                                  f"{', '.join(sorted(FAMILIES)) or 'the registered families'}")
        if not isinstance(config, dict) or "family" not in config:
            raise CheckpointError(f"checkpoint {self.path} predates tagged model configs and cannot be rebuilt; "
                                  f"rerun {rerun}")
        if config["family"] != family.FAMILY or config.get("version") != family.VERSION:
            raise CheckpointError(f"checkpoint {self.path} holds a {config['family']!r} config version "
                                  f"{config.get('version')}, expected {family.FAMILY!r} version {family.VERSION}; "
                                  f"rerun {rerun}")
        return config

    @property
    def config(self) -> Any:
        """The typed config of the model family (``MotionNetConfig``, ``HiddenTwoStreamConfig``): the only
        thing a model is rebuilt from."""
        tagged = self.tagged_config()
        try:
            return FAMILIES[self.kind].from_dict(tagged)
        except (KeyError, TypeError, ValueError) as err:
            raise CheckpointError(f"checkpoint {self.path} has an invalid {self.kind} config ({err})") from err

    @property
    def train_config(self) -> dict[str, Any]:
        """The training settings the run saved (``TrainConfig`` as primitives; ``{}`` for shipped weights)."""
        return dict(self.extra.get("train_config", {}))

    @property
    def run_options(self) -> dict[str, Any]:
        """What the training script saved beside the model (``train_config["extra"]``: streams, test items)."""
        return dict(self.train_config.get("extra", {}))

    def motionnet_weights(self) -> dict[str, Any]:
        """The MotionNet's state_dict: the whole model of a ``motionnet`` checkpoint, the hidden stream's
        MotionNet of a two-stream one."""
        if self.kind == "motionnet":
            return self.model
        return {k[len(MOTIONNET_PREFIX):]: v for k, v in self.model.items() if k.startswith(MOTIONNET_PREFIX)}

    def check_resumable(self, kind: str, model_config: dict[str, Any]) -> None:
        """Refuse to resume a run of another kind or model config, naming the first difference."""
        if self.kind != kind:
            raise CheckpointError(f"checkpoint {self.path} holds a {self.kind!r} model, expected {kind!r}")
        if "family" in model_config:  # a family's config: an older untagged checkpoint names what to rerun
            self.tagged_config()
        check_config(self.model_config, model_config, self.path)

    def load_into(self, model: nn.Module, weights: dict[str, Any] | None = None) -> None:
        """Load ``weights`` (default: the checkpoint's model) into ``model``, turning a shape or key mismatch
        into one clear line."""
        try:
            unwrap(model).load_state_dict(self.model if weights is None else weights)
        except RuntimeError as err:
            first = str(err).strip().splitlines()
            detail = first[1].strip() if len(first) > 1 else first[0]
            raise CheckpointError(f"checkpoint {self.path} does not fit this model: {detail}") from err


def check_config(saved: dict[str, Any], expected: dict[str, Any], path: str | Path) -> None:
    """Raise :class:`CheckpointError` naming the first key whose value differs."""
    for key in sorted(set(saved) | set(expected)):
        a, b = plain(saved.get(key)), plain(expected.get(key))
        if a != b:
            raise CheckpointError(f"checkpoint {path} was made with {key}={a!r}, "
                                  f"this run uses {key}={b!r}")


def plain(value: Any) -> Any:
    """``value`` with every tuple a list, at any depth: the form a checkpoint stores (and in which
    tuples and lists compare equal: a checkpoint round-trip may turn one into the other)."""
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DDP and ``torch.compile`` wrappers."""
    model = getattr(model, "_orig_mod", model)
    model = getattr(model, "module", model)
    return getattr(model, "_orig_mod", model)
