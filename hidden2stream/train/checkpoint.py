"""Checkpoints: atomic writes, ``weights_only`` loads, and a refusal of foreign checkpoints.

A checkpoint is a plain dict of tensors and primitives::

    {"kind": "motionnet" | "two_stream", "model_config": {...}, "model": state_dict,
     "optimizer": ..., "scheduler": ..., "scaler": ..., "step": int, "extra": {...}}

``model_config`` is the model family's config as plain primitives (``MotionNetConfig.to_dict()``,
``HiddenTwoStreamConfig.to_dict()``), tagged ``{"family": kind, "version": n}``: it alone rebuilds
the network (:func:`model_config_of` reads it back, refusing untagged checkpoints of older versions).

Writes go to a temporary file in the same folder, are flushed to disk, then renamed over the
old file, so a crash or a full disk mid-write leaves the previous checkpoint intact.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

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


def load_checkpoint(path: str | Path, kind: str | None = None,
                    model_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Load a checkpoint on the CPU with ``weights_only=True`` and check it is the expected one.

    ``kind`` and ``model_config``, when given, must match what the checkpoint was saved with;
    otherwise :class:`CheckpointError` names the first mismatch.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    checkpoint = read_torch_file(path, "hidden2stream checkpoint")
    if not isinstance(checkpoint, dict) or "model" not in checkpoint:
        raise CheckpointError(f"checkpoint {path} is not a hidden2stream checkpoint")
    if kind is not None and checkpoint.get("kind") != kind:
        raise CheckpointError(f"checkpoint {path} holds a {checkpoint.get('kind')!r} model, "
                              f"expected {kind!r}")
    if model_config is not None:
        if "family" in model_config:  # an older untagged checkpoint: name what to rerun
            model_config_of(checkpoint, path, model_config["family"], model_config["version"])
        check_config(checkpoint.get("model_config", {}), model_config, path)
    return checkpoint


RERUN = {"motionnet": "experiments/pretrain_motion.py (shipped weights: experiments/make_weights.py)",
         "two_stream": "experiments/train_two_stream.py"}


def model_config_of(checkpoint: dict[str, Any], path: str | Path, family: str, version: int) -> dict[str, Any]:
    """The checkpoint's ``model_config`` of ``family`` in format ``version``; a one-line
    :class:`CheckpointError` naming the script to rerun for a checkpoint of another format."""
    config = checkpoint.get("model_config")
    if not isinstance(config, dict) or "family" not in config:
        raise CheckpointError(f"checkpoint {path} predates tagged model configs and cannot be rebuilt; "
                              f"rerun {RERUN.get(family, 'the script that made it')}")
    if config["family"] != family or config.get("version") != version:
        raise CheckpointError(f"checkpoint {path} holds a {config['family']!r} config version "
                              f"{config.get('version')}, expected {family!r} version {version}; "
                              f"rerun {RERUN.get(family, 'the script that made it')}")
    return config


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


def load_weights(model: nn.Module, checkpoint: dict[str, Any], path: str | Path) -> None:
    """Load a checkpoint's weights, turning a shape/key mismatch into one clear line."""
    try:
        unwrap(model).load_state_dict(checkpoint["model"])
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0]
        raise CheckpointError(f"checkpoint {path} does not fit this model: {detail}") from err
