"""Rebuild trained networks from this project's checkpoints and from the weights it ships.

Shipped weights live in ``hidden2stream/weights/`` and are listed, by name, in its
``MANIFEST.json`` (file, sha256, the command that made them, data, steps, measured quality).
Nothing is downloaded: a name either is in the manifest or gives a one-line error.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hidden2stream.errors import CheckpointError, UserError
from hidden2stream.models.motionnet import MotionNet, build_motionnet
from hidden2stream.models.motionnet_corr import CorrMotionNetConfig
from hidden2stream.models.two_stream import HiddenTwoStream, hidden_two_stream
from hidden2stream.train.checkpoint import load_checkpoint, load_weights

VIDEO_WINDOW = 11  # frames per window when window-free weights run on a video
WINDOW_FREE = ("corr",)  # MotionNets whose weights serve any window length (shared per-pair decoder)
TWO_STREAM_ARGS = ("motion", "frames", "spatial_arch", "temporal_arch", "hidden", "fusion",
                   "temporal_fusion", "segments")


def load_two_stream(path: str | Path) -> tuple[HiddenTwoStream, dict[str, Any]]:
    """A trained :class:`HiddenTwoStream` and its ``model_config`` (class names, input size)."""
    checkpoint = load_checkpoint(path, kind="two_stream")
    config = checkpoint["model_config"]
    model = hidden_two_stream(config["num_classes"], **{k: config[k] for k in TWO_STREAM_ARGS})
    load_weights(model, checkpoint, path)
    return model, config


WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
MANIFEST = WEIGHTS_DIR / "MANIFEST.json"


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


def load_motionnet(path: str | Path, frames: int | None = None) -> MotionNet:
    """The MotionNet of a ``pretrain_motion.py`` checkpoint, of a two-stream checkpoint, or of
    shipped weights (a name of :func:`shipped_weights`).

    ``frames`` rebuilds it for windows of that length; only MotionNets whose weights do not
    depend on the window length (the correlation MotionNet) accept a length other than their own.
    """
    path = motion_source(path)
    checkpoint = load_checkpoint(path)
    kind = checkpoint.get("kind")
    if kind == "motionnet":
        config = checkpoint["model_config"]
        length = config["frames"] if frames is None else frames
        if length != config["frames"] and config["model"] not in WINDOW_FREE:
            raise CheckpointError(f"{path} holds a {config['frames']}-frame MotionNet-{config['model']}, "
                                  f"whose weights fit only that window length, not {length}")
        model = build_motionnet(config["model"], length)
        load_weights(model, checkpoint, path)
        return model
    if kind == "two_stream":
        model = load_two_stream(path)[0].motionnet
        if frames is not None and frames != model.config.frames:
            raise CheckpointError(f"{path} holds a {model.config.frames}-frame MotionNet, not {frames}")
        return model
    raise CheckpointError(f"checkpoint {path} holds a {kind!r} model, expected a MotionNet")


def load_flow_model(source: str | Path, pair: bool) -> MotionNet:
    """The MotionNet of ``source`` (checkpoint or shipped name) shaped for the job.

    Weights that serve any window length (MotionNet-corr) run a pair as a 2-frame model and a
    video as 11-frame windows (each frame encoded once); other MotionNets keep their own window
    length, and a pair then fills the window with copies of its second frame.
    """
    model = load_motionnet(source)
    wanted = 2 if pair else VIDEO_WINDOW
    if not isinstance(model.config, CorrMotionNetConfig) or model.config.frames == wanted:
        return model
    resized = build_motionnet("corr", wanted)  # the same weights, another window length
    resized.load_state_dict(model.state_dict())
    return resized
