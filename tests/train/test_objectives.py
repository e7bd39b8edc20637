"""Training objectives: end-to-end fine-tuning applies occlusion masking with real backward flows."""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from hidden2stream.losses.motion import PRESETS, multiscale_motion_loss
from hidden2stream.models.two_stream import hidden_two_stream
from hidden2stream.train import objectives
from hidden2stream.train.objectives import ActionObjective

STREAMS = ("spatial", "temporal")


def _model_and_batch(hidden: str = "stacked"):
    torch.manual_seed(0)
    model = hidden_two_stream(2, motion="tiny", frames=3, segments=2, hidden=hidden).train()
    frames = torch.rand(2, 2, 3, 3, 32, 32)  # (B, K, T+1, 3, H, W)
    return model, {"frames": frames, "label": torch.tensor([0, 1])}


@pytest.mark.parametrize("hidden", ["stacked", "branched"])
@pytest.mark.parametrize("preset", ["occlusion", "improved"])
def test_fine_tuning_occlusion_loss_uses_backward_flows(hidden, preset, monkeypatch):
    """``--motion-loss occlusion|improved`` in train_two_stream.py: the motion term gets backward
    flows (MotionNet on the time-reversed windows, as in pretraining) and is the masked
    two-direction loss, not the forward-only loss ``multiscale_motion_loss`` falls back to
    without them (which ignores ``occlusion``)."""
    config = PRESETS[preset]()
    assert config.occlusion
    seen = []

    def spy(*args, **kwargs):
        seen.append(kwargs.get("backward_pyramid"))
        return multiscale_motion_loss(*args, **kwargs)

    monkeypatch.setattr(objectives, "multiscale_motion_loss", spy)
    model, batch = _model_and_batch(hidden)
    _, metrics = ActionObjective(STREAMS, config)(model, batch)
    windows = batch["frames"].flatten(0, 1)
    with torch.no_grad():
        forward = model.motionnet(windows, all_scales=True)
        backward = [level.flip(1) for level in model.motionnet(windows.flip(1), all_scales=True)]
        masked, _ = multiscale_motion_loss(windows, forward, config, backward_pyramid=backward)
        unmasked, _ = multiscale_motion_loss(windows, forward, config)
    assert len(seen) == 1 and seen[0] is not None and len(seen[0]) == len(backward)
    for got, expected in zip(seen[0], backward):
        assert got.requires_grad  # MotionNet learns from both directions, as in pretraining
        torch.testing.assert_close(got.detach(), expected)
    torch.testing.assert_close(metrics["motion"], masked)
    # An untrained MotionNet's flows are small, so the two differ by ~1e-4 relative here: far
    # above the ~1e-7 rounding of these float32 means, which is all that rtol=1e-6 would allow.
    assert not torch.allclose(masked, unmasked, rtol=1e-6, atol=0)


def test_fine_tuning_without_occlusion_runs_motionnet_once(monkeypatch):
    model, batch = _model_and_batch()
    calls = []  # MotionNet passes: the hidden stream's pyramid_and_flow, forward, ... each encode once
    original = type(model.motionnet).encode
    monkeypatch.setattr(type(model.motionnet), "encode",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    config = PRESETS["paper"]()
    _, metrics = ActionObjective(STREAMS, config)(model, batch)
    assert len(calls) == 1
    windows = batch["frames"].flatten(0, 1)
    expected, _ = multiscale_motion_loss(windows, model.motionnet(windows, all_scales=True), config)
    torch.testing.assert_close(metrics["motion"], expected.detach())


def test_backward_flows_train_motionnet_under_ddp(tmp_path):
    """Inside DDP the reversed pass goes to the wrapped module; DDP accepts the two uses of
    MotionNet's weights in one backward and gives the plain model's gradients (1 process)."""
    objective = ActionObjective(STREAMS, PRESETS["improved"]())
    model, batch = _model_and_batch()
    torch.manual_seed(1)  # dropout
    objective(model, batch)[0].backward()
    plain = {name: p.grad.clone() for name, p in model.motionnet.named_parameters()}
    model.zero_grad(set_to_none=True)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        wrapped = DistributedDataParallel(model)
        torch.manual_seed(1)
        objective(wrapped, batch)[0].backward()
    finally:
        dist.destroy_process_group()
    for name, p in model.motionnet.named_parameters():
        # The same float32 operations in the same order: only DDP's division by world size 1.
        torch.testing.assert_close(p.grad, plain[name], rtol=0, atol=0, msg=name)
