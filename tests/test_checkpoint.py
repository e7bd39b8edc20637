"""The checkpoint record: the one reader and writer of the format, typed configs, clear refusals."""
from __future__ import annotations

import pytest
import torch

from hidden2stream.checkpoint import Checkpoint
from hidden2stream.errors import CheckpointError
from hidden2stream.models.motionnet import MotionNetConfig, motionnet_tiny
from hidden2stream.models.two_stream import hidden_two_stream


def test_a_saved_checkpoint_loads_back_typed(tmp_path):
    model = motionnet_tiny(frames=3)
    extra = {"train_config": {"seed": 4, "extra": {"streams": ["spatial"]}}}
    Checkpoint("motionnet", model.config.to_dict(), model.state_dict(), step=7, seconds=1.5, optimizer={},
               scheduler={}, scaler={}, extra=extra).save(tmp_path / "c.pt")
    loaded = Checkpoint.load(tmp_path / "c.pt", kind="motionnet")
    assert (loaded.kind, loaded.step, loaded.seconds, loaded.path) == ("motionnet", 7, 1.5, tmp_path / "c.pt")
    assert loaded.config == MotionNetConfig("tiny", 3)
    assert loaded.train_config["seed"] == 4 and loaded.run_options == {"streams": ["spatial"]}
    assert all(torch.equal(loaded.motionnet_weights()[k], v) for k, v in model.state_dict().items())


def test_shipped_form_has_no_training_state(tmp_path):
    model = motionnet_tiny(frames=3)
    Checkpoint("motionnet", model.config.to_dict(), model.state_dict()).save(tmp_path / "w.pt")
    raw = torch.load(tmp_path / "w.pt", weights_only=True)
    assert set(raw) == {"kind", "model_config", "model"}
    assert Checkpoint.load(tmp_path / "w.pt").train_config == {}


def test_two_stream_checkpoint_gives_its_motionnet(tmp_path):
    network = hidden_two_stream(2, motion="tiny", frames=3, segments=1)
    Checkpoint("two_stream", network.config.to_dict(), network.state_dict()).save(tmp_path / "n.pt")
    loaded = Checkpoint.load(tmp_path / "n.pt")
    assert loaded.config == network.config
    fresh = motionnet_tiny(frames=3)
    loaded.load_into(fresh, loaded.motionnet_weights())
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in network.motionnet.state_dict().items())


def test_refusals_are_one_line(tmp_path):
    model = motionnet_tiny(frames=3)
    Checkpoint("motionnet", model.config.to_dict(), model.state_dict()).save(tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="holds a 'motionnet' model, expected 'two_stream'"):
        Checkpoint.load(tmp_path / "c.pt", kind="two_stream")
    with pytest.raises(CheckpointError, match="does not exist"):
        Checkpoint.load(tmp_path / "missing.pt")
    untagged = Checkpoint("motionnet", {"variant": "tiny", "frames": 3}, model.state_dict(), tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="predates tagged model configs.*rerun experiments/pretrain_motion.py"):
        untagged.config
    with pytest.raises(CheckpointError, match="frames=3.*frames=4"):
        Checkpoint.load(tmp_path / "c.pt").check_resumable("motionnet", MotionNetConfig("tiny", 4).to_dict())
    with pytest.raises(CheckpointError, match="does not fit this model"):
        Checkpoint.load(tmp_path / "c.pt").load_into(motionnet_tiny(frames=4))
