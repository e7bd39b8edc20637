"""Rebuild trained networks from this project's checkpoints and from the weights it ships.

Shipped weights live in ``hidden2stream/weights/`` and are listed, by name, in its
``MANIFEST.json`` (file, sha256, the command that made them, data, steps, measured quality).
Nothing is downloaded: a name either is in the manifest or gives a one-line error.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch import nn

from hidden2stream.errors import CheckpointError, UserError
from hidden2stream.models.motionnet import MotionNetConfig, build_motionnet
from hidden2stream.models.motionnet_corr import LEVELS
from hidden2stream.models.two_stream import HiddenTwoStream, HiddenTwoStreamConfig, build_two_stream
from hidden2stream.train.checkpoint import load_checkpoint, load_weights, model_config_of

VIDEO_WINDOW = 11  # frames per window when window-free weights run on a video
MOTIONNET_PREFIX = "hidden.motionnet."  # where a two-stream state_dict keeps its MotionNet


def checkpoint_config(checkpoint: dict[str, Any], path: str | Path) -> MotionNetConfig | HiddenTwoStreamConfig:
    """The config a checkpoint was saved with, by its ``kind``; the only thing a model is rebuilt from."""
    kind = checkpoint.get("kind")
    family = {"motionnet": MotionNetConfig, "two_stream": HiddenTwoStreamConfig}.get(kind)
    if family is None:
        raise CheckpointError(f"checkpoint {path} holds a {kind!r} model, expected a MotionNet or a two-stream network")
    plain = model_config_of(checkpoint, path, family.FAMILY, family.VERSION)
    try:
        return family.from_dict(plain)
    except (KeyError, TypeError, ValueError) as err:
        raise CheckpointError(f"checkpoint {path} has an invalid {kind} config ({err})") from err


def load_two_stream(path: str | Path) -> HiddenTwoStream:
    """A trained :class:`HiddenTwoStream` rebuilt from its checkpoint's config (``model.config``:
    class names, input size, segments, the MotionNet ...)."""
    checkpoint = load_checkpoint(path, kind="two_stream")
    model = build_two_stream(checkpoint_config(checkpoint, path))
    load_weights(model, checkpoint, path)
    return model


WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = WEIGHTS_DIR / "MANIFEST.json"


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


def shipped_weights() -> dict[str, dict[str, Any]]:
    """The manifest of the shipped weights: name -> entry (``file``, ``sha256``, ``model``, ...)."""
    if not MANIFEST.is_file():
        return {}
    return json.loads(MANIFEST.read_text())["weights"]


def weights_path(name: str) -> Path:
    """The file of shipped weights ``name``, its sha256 checked against the manifest."""
    entries = shipped_weights()
    if name not in entries:
        known = ", ".join(sorted(entries)) or "none are installed"
        raise UserError(f"unknown MotionNet weights {name!r}; shipped weights: {known}")
    entry = entries[name]
    path = WEIGHTS_DIR / entry["file"]
    if not path.is_file():
        raise CheckpointError(f"shipped weights {name!r} are missing: {path} (reinstall the package)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != entry["sha256"]:
        raise CheckpointError(f"shipped weights {path} do not match their manifest sha256 (corrupt file)")
    return path


def motion_source(text: str | Path) -> Path:
    """A ``--motion-checkpoint`` / ``--weights`` value: a shipped weights name or a checkpoint path."""
    if str(text) in shipped_weights():
        return weights_path(str(text))
    path = Path(text)
    if not path.exists():
        raise UserError(f"{text} is neither a checkpoint file nor shipped weights "
                        f"({', '.join(sorted(shipped_weights())) or 'none installed'})")
    return path


def _motionnet_parts(source: str | Path) -> tuple[Path, MotionNetConfig, dict[str, Any]]:
    """(path, config, weights) of the MotionNet in ``source``: a ``pretrain_motion.py`` checkpoint,
    a two-stream checkpoint (its hidden stream's MotionNet) or shipped weights by name."""
    path = motion_source(source)
    checkpoint = load_checkpoint(path)
    config = checkpoint_config(checkpoint, path)
    if isinstance(config, MotionNetConfig):
        return path, config, checkpoint["model"]
    if config.flow != "motionnet":
        raise CheckpointError(f"{path} is a two-stage network on precomputed {config.flow} flow: it holds no MotionNet")
    weights = {k[len(MOTIONNET_PREFIX):]: v for k, v in checkpoint["model"].items() if k.startswith(MOTIONNET_PREFIX)}
    return path, config.motion, weights


def _build_motionnet(path: Path, config: MotionNetConfig, weights: dict[str, Any], frames: int | None) -> nn.Module:
    """The MotionNet of ``config`` for windows of ``frames`` (None: its own) with ``weights``."""
    if frames is not None and frames != config.frames:
        if not config.window_free:
            raise CheckpointError(f"{path} holds a {config.frames}-frame MotionNet-{config.variant}, whose weights "
                                  f"fit only that window length (frames={config.frames}), not {frames}")
        config = config.with_frames(frames)
    model = build_motionnet(config)
    load_weights(model, {"model": weights}, path)
    return model


def motionnet_config(source: str | Path) -> MotionNetConfig:
    """The config of the trained MotionNet in ``source`` (as :func:`load_motionnet` reads it),
    without building the network."""
    return _motionnet_parts(source)[1]


def load_motionnet(source: str | Path, frames: int | None = None) -> nn.Module:
    """The trained MotionNet of ``source`` (a checkpoint of either kind or a shipped weights name).

    ``frames`` rebuilds it for windows of that length; only window-free MotionNets
    (``config.window_free``: MotionNet-corr) accept a length other than their own.
    """
    return _build_motionnet(*_motionnet_parts(source), frames)


def load_flow_model(source: str | Path, pair: bool) -> nn.Module:
    """The MotionNet of ``source`` (checkpoint or shipped name) shaped for the job.

    Window-free weights (MotionNet-corr) run a pair as a 2-frame model and a video as 11-frame
    windows (each frame encoded once); other MotionNets keep their own window length, and a pair
    then fills the window with copies of its second frame.
    """
    path, config, weights = _motionnet_parts(source)
    frames = (2 if pair else VIDEO_WINDOW) if config.window_free else None
    return _build_motionnet(path, config, weights, frames)


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
