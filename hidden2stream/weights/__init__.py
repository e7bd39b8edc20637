"""The MotionNet weights this project ships, by name: ``MANIFEST.json`` lists each file with its sha256,
the command that made it (``experiments/make_weights.py``), data, steps and measured quality.

Nothing is downloaded: a name either is in the manifest or gives a one-line error. This lookup sits
below the models (it only finds and checks files); :mod:`hidden2stream.pretrained` builds networks.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from hidden2stream.errors import CheckpointError, UserError

WEIGHTS_DIR = Path(__file__).resolve().parent
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
