"""Rebuild trained networks from this project's checkpoints (for flow export, prediction, benchmarks)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from hidden2stream.errors import CheckpointError
from hidden2stream.models.motionnet import MotionNet, build_motionnet
from hidden2stream.models.two_stream import HiddenTwoStream, hidden_two_stream
from hidden2stream.train.checkpoint import load_checkpoint, load_weights

TWO_STREAM_ARGS = ("motion", "frames", "spatial_arch", "temporal_arch", "hidden", "fusion",
                   "temporal_fusion", "segments")


def load_two_stream(path: str | Path) -> tuple[HiddenTwoStream, dict[str, Any]]:
    """A trained :class:`HiddenTwoStream` and its ``model_config`` (class names, input size)."""
    checkpoint = load_checkpoint(path, kind="two_stream")
    config = checkpoint["model_config"]
    model = hidden_two_stream(config["num_classes"], **{k: config[k] for k in TWO_STREAM_ARGS})
    load_weights(model, checkpoint, path)
    return model, config


def load_motionnet(path: str | Path) -> MotionNet:
    """The MotionNet of a ``pretrain_motion.py`` checkpoint or of a two-stream checkpoint."""
    checkpoint = load_checkpoint(path)
    kind = checkpoint.get("kind")
    if kind == "motionnet":
        config = checkpoint["model_config"]
        model = build_motionnet(config["model"], config["frames"])
        load_weights(model, checkpoint, path)
        return model
    if kind == "two_stream":
        return load_two_stream(path)[0].motionnet
    raise CheckpointError(f"checkpoint {path} holds a {kind!r} model, expected a MotionNet")
