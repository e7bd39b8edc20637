"""Shared fixtures: the shared sample data folder, skipped with a reason when absent."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hidden2stream.paths import shared_data


def _shared(sub: str) -> Path:
    path = shared_data(sub)
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} is absent (set H2S_SHARED)")
    return path


@pytest.fixture
def clips_dir() -> Path:
    return _shared("clips")


@pytest.fixture
def bad_videos_dir() -> Path:
    return _shared("bad")


@pytest.fixture
def images_dir() -> Path:
    return _shared("images")


@pytest.fixture
def frame_pairs_dir() -> Path:
    return _shared("frame_pairs")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
