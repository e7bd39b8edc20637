"""Where the shared sample data lives: ``$H2S_SHARED``, else ``../shared`` beside the repo."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path:
    """Root of the shared sample data (may not exist; callers check)."""
    env = os.environ.get("H2S_SHARED")
    return Path(env).expanduser().resolve() if env else (REPO_ROOT.parent / "shared").resolve()


def shared_data(*parts: str) -> Path:
    """A path under ``<shared>/data``, e.g. ``shared_data("clips")``."""
    return shared_dir().joinpath("data", *parts)
