"""Rebuild trained networks from this project's checkpoints and from the weights it ships.

Every file is read through :class:`~hidden2stream.checkpoint.Checkpoint`; shipped weights are found by
name in :mod:`hidden2stream.weights` (nothing is downloaded).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from hidden2stream.checkpoint import Checkpoint
from hidden2stream.errors import CheckpointError, UserError
from hidden2stream.models.motionnet import LEVELS, MotionNetConfig, build_motionnet
from hidden2stream.models.two_stream import HiddenTwoStream, build_two_stream
from hidden2stream.weights import motion_source

VIDEO_WINDOW = 11  # frames per window when window-free weights run on a video


def load_two_stream(path: str | Path) -> HiddenTwoStream:
    """A trained :class:`HiddenTwoStream` rebuilt from its checkpoint's config (``model.config``:
    class names, input size, segments, the MotionNet ...)."""
    return two_stream_from(Checkpoint.load(path, kind="two_stream"))


def two_stream_from(checkpoint: Checkpoint) -> HiddenTwoStream:
    """The trained network of a two-stream checkpoint already read."""
    model = build_two_stream(checkpoint.config)
    checkpoint.load_into(model)
    return model


def init_from_two_stream(model: HiddenTwoStream, path: str | Path) -> list[str]:
    """Copy into ``model`` every tensor of the two-stream checkpoint ``path`` (e.g. a playback
    pretext run) whose name and shape match, except the classifier heads (every ``head`` module),
    which stay new: the start of a fine-tuning on other classes. Returns the names left new;
    a one-line UserError when nothing matches (another architecture)."""
    source = load_two_stream(path).state_dict()
    target = model.state_dict()
    taken = {name: tensor for name, tensor in source.items()
             if "head" not in name.split(".") and name in target and target[name].shape == tensor.shape}
    if not taken:
        raise UserError(f"{path} shares no weights with this network (other streams or MotionNet)")
    target.update(taken)
    model.load_state_dict(target)
    return sorted(set(target) - set(taken))


def _motionnet_parts(checkpoint: Checkpoint) -> tuple[MotionNetConfig, dict[str, Any]]:
    """(config, weights) of the MotionNet in a checkpoint: a ``pretrain_motion.py`` checkpoint or shipped
    weights, or a two-stream checkpoint (its hidden stream's MotionNet)."""
    config = checkpoint.config
    if isinstance(config, MotionNetConfig):
        return config, checkpoint.motionnet_weights()
    if config.flow != "motionnet":
        raise CheckpointError(f"{checkpoint.path} is a two-stage network on precomputed {config.flow} flow: "
                              "it holds no MotionNet")
    return config.motion, checkpoint.motionnet_weights()


def motionnet_from(checkpoint: Checkpoint, frames: int | None = None) -> nn.Module:
    """The trained MotionNet of a checkpoint already read, for windows of ``frames`` (None: its own); only
    window-free MotionNets (``config.window_free``: MotionNet-corr) accept a length other than their own."""
    return _built(checkpoint, *_motionnet_parts(checkpoint), frames)


def _built(checkpoint: Checkpoint, config: MotionNetConfig, weights: dict[str, Any], frames: int | None) -> nn.Module:
    """The MotionNet of ``config`` with ``weights`` (from ``checkpoint``), rebuilt for ``frames`` if given."""
    if frames is not None and frames != config.frames:
        if not config.window_free:
            raise CheckpointError(f"{checkpoint.path} holds a {config.frames}-frame MotionNet-{config.variant}, "
                                  f"whose weights fit only that window length (frames={config.frames}), not {frames}")
        config = config.with_frames(frames)
    model = build_motionnet(config)
    checkpoint.load_into(model, weights)
    return model


def motionnet_config(source: str | Path) -> MotionNetConfig:
    """The config of the trained MotionNet in ``source`` (as :func:`load_motionnet` reads it),
    without building the network."""
    return _motionnet_parts(Checkpoint.load(motion_source(source)))[0]


def load_motionnet(source: str | Path, frames: int | None = None) -> nn.Module:
    """The trained MotionNet of ``source`` (a checkpoint of either kind or a shipped weights name).

    ``frames`` rebuilds it for windows of that length; only window-free MotionNets
    (``config.window_free``: MotionNet-corr) accept a length other than their own.
    """
    return motionnet_from(Checkpoint.load(motion_source(source)), frames)


def load_flow_model(source: str | Path, pair: bool) -> nn.Module:
    """The MotionNet of ``source`` (checkpoint or shipped name) shaped for the job.

    Window-free weights (MotionNet-corr) run a pair as a 2-frame model and a video as 11-frame
    windows (each frame encoded once); other MotionNets keep their own window length, and a pair
    then fills the window with copies of its second frame.
    """
    checkpoint = Checkpoint.load(motion_source(source))
    config, weights = _motionnet_parts(checkpoint)
    return _built(checkpoint, config, weights, (2 if pair else VIDEO_WINDOW) if config.window_free else None)


def load_motionnet_into(model: nn.Module, source: str | Path, option: str, built_by: str) -> None:
    """Copy the trained MotionNet of ``source`` into ``model`` (a fresh MotionNet of the run);
    a one-line refusal when ``source`` holds another one. ``option`` / ``built_by`` name, for
    that line, where ``source`` and ``model`` came from (``--init``, ``--motion tiny``).

    One growth is allowed: a MotionNet-corr into the same network with ``refine_half``; the new
    1/2-level context projection keeps its initialisation, every other weight is copied."""
    trained = load_motionnet(source, frames=model.config.frames)
    grown = trained.config.variant == "corr" and not trained.config.layers.refine_half and \
        replace(trained.config, layers=replace(trained.config.layers, refine_half=True)).same_weights_as(model.config)
    if not trained.config.same_weights_as(model.config) and not grown:
        raise CheckpointError(f"{option} {source} holds {trained.config.describe()}, "
                              f"{built_by} builds {model.config.describe()}")
    result = model.load_state_dict(trained.state_dict(), strict=not grown)
    if result.unexpected_keys or any(not key.startswith(f"context.{LEVELS - 1}.") for key in result.missing_keys):
        raise RuntimeError(f"growing {trained.config.describe()}: unexpected state_dict differences {result}")
