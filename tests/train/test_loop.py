"""The training loop: exact resume, non-finite losses, checkpoint safety, refusal of foreign checkpoints."""
from __future__ import annotations

import io
import json

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from hidden2stream_experiments.cli import OneLineParser
from hidden2stream.errors import CheckpointError, UserError
from hidden2stream.checkpoint import Checkpoint, save_atomic
from hidden2stream.train.loop import TrainConfig, TrainingDiverged, train
from hidden2stream.train.options import TrainOptions
from hidden2stream_experiments.parsing import add_options
from hidden2stream.runtime import Runtime
from hidden2stream.train.sampler import DistributedStepSampler
from hidden2stream.train.schedule import build_scheduler, load_schedule

CPU = Runtime(device=torch.device("cpu"))


class Points(Dataset):
    """Noisy linear regression items, seeded per index."""

    def __init__(self, n: int = 64, poison: int | None = None) -> None:
        self.n, self.poison = n, poison

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(i)
        x = torch.randn(4, generator=g)
        y = x.sum(0, keepdim=True) + 0.1 * torch.randn(1, generator=g)
        if self.poison is not None and i == self.poison:
            x = x * float("nan")
        return {"x": x, "y": y}


def mse(model: nn.Module, batch: dict[str, torch.Tensor]):
    pred = model(batch["x"])
    loss = (pred - batch["y"]).pow(2).mean()
    return loss, {"abs": (pred - batch["y"]).abs().mean().detach()}


def make_model() -> nn.Module:
    torch.manual_seed(1)
    return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.ReLU(), nn.Linear(8, 1))


def run(tmp_path, steps=12, dataset=None, **overrides):
    model = make_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    config = TrainConfig(out_dir=tmp_path, steps=steps, batch_size=4, checkpoint_every=4, log_every=2,
                         warmup_steps=2, milestones=(0.5,), **overrides)
    result = train(model, dataset or Points(), mse, optimizer, config, CPU, kind="toy",
                   model_config={"hidden": 8})
    return model, result


def closed_form_factor(step: int, steps: int, warmup: int, milestones: tuple[float, ...], gamma: float) -> float:
    """The schedule the loop promises: linear warm-up times ``gamma`` per milestone passed."""
    warm = min(1.0, (step + 1) / warmup) if warmup else 1.0
    return warm * gamma ** sum(step >= m * steps for m in milestones)


def two_group_optimizer() -> torch.optim.Optimizer:
    params = [nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(3))]
    return torch.optim.SGD([{"params": [params[0]], "lr": 1e-3}, {"params": [params[1]], "lr": 3e-2}])


SCHEDULES = [  # (steps, warmup, milestones, gamma)
    (100, 10, (0.5, 0.75), 0.5),
    (40, 50, (0.5, 0.75), 0.1),  # main.py --quick fine-tuning: both milestones inside the warm-up
    (60, 100, (0.25, 0.5, 0.625, 0.75, 0.875), 0.5),  # --quick pretraining with the paper's milestones
    (30, 0, (0.1, 0.1), 0.5),  # 0.1 * 30 = 3.0000000000000004: the decay is at step 4; doubled milestone
    (12, 1, (0.0,), 0.3),  # warm-up of one step is no warm-up; a milestone at step 0
]


@pytest.mark.parametrize("steps, warmup, milestones, gamma", SCHEDULES)
def test_schedule_matches_the_closed_form_at_every_step(steps, warmup, milestones, gamma):
    optimizer = two_group_optimizer()
    base = [group["lr"] for group in optimizer.param_groups]
    scheduler = build_scheduler(optimizer, steps, warmup, milestones, gamma)
    for step in range(steps + 5):
        factor = closed_form_factor(step, steps, warmup, milestones, gamma)
        for lr, group, base_lr in zip(scheduler.get_last_lr(), optimizer.param_groups, base):
            assert group["lr"] == lr
            assert lr == pytest.approx(base_lr * factor, rel=1e-12, abs=0.0)
        optimizer.step()
        scheduler.step()


def test_schedule_resumed_from_its_state_dict_continues_bit_exactly():
    steps, warmup, milestones, gamma = 40, 50, (0.5, 0.75), 0.1
    optimizer = two_group_optimizer()
    scheduler = build_scheduler(optimizer, steps, warmup, milestones, gamma)
    saved = None
    for step in range(steps):
        if step == 17:  # mid warm-up, before the first decay
            buffer = io.BytesIO()
            torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, buffer)
            saved = buffer.getvalue()
        optimizer.step()
        scheduler.step()
    state = torch.load(io.BytesIO(saved), weights_only=True)
    again = two_group_optimizer()
    resumed = build_scheduler(again, steps, warmup, milestones, gamma)
    again.load_state_dict(state["optimizer"])
    load_schedule(resumed, state["scheduler"], "ckpt")
    for _ in range(17, steps):
        again.step()
        resumed.step()
    assert resumed.get_last_lr() == scheduler.get_last_lr()


def test_checkpoint_of_another_schedule_is_refused_in_one_line():
    optimizer = two_group_optimizer()
    warm = build_scheduler(optimizer, 20, 5, (0.5,), 0.5)
    lambda_state = torch.optim.lr_scheduler.LambdaLR(two_group_optimizer(), lambda s: 1.0).state_dict()
    no_warmup = build_scheduler(two_group_optimizer(), 20, 0, (0.5,), 0.5).state_dict()
    for state in (lambda_state, no_warmup):
        with pytest.raises(CheckpointError, match="another learning-rate schedule") as info:
            load_schedule(warm, state, "old.pt")
        assert "\n" not in str(info.value)


def test_negative_warmup_is_refused(capsys):
    """A contract error in the library; one line from the command line, where the user types it."""
    with pytest.raises(ValueError, match="warmup_steps must be 0 or more, got -3"):
        build_scheduler(two_group_optimizer(), 10, -3, (), 0.5)
    parser = OneLineParser()
    add_options(parser, TrainOptions)
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--warmup", "-3"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "--warmup: -3 must be >= 0" in err


def test_logged_lr_is_the_rate_each_logged_step_used(tmp_path):
    run(tmp_path)  # 12 steps, warm-up 2, milestone 0.5, logged every 2 steps
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["step"] for row in logged] == [2, 4, 6, 8, 10, 12]
    for row in logged:
        want = 1e-2 * closed_form_factor(row["step"] - 1, 12, 2, (0.5,), 0.5)
        assert row["lr"] == pytest.approx(want, rel=1e-12, abs=0.0)


def test_sampler_global_batches_do_not_depend_on_world_size():
    one = list(_take(DistributedStepSampler(40, 4, 0, 1, seed=3), 12))
    two = [list(_take(DistributedStepSampler(40, 2, r, 2, seed=3), 6)) for r in range(2)]
    for step in range(3):
        together = sorted(two[0][2 * step:2 * step + 2] + two[1][2 * step:2 * step + 2])
        assert together == sorted(one[4 * step:4 * step + 4])


def _take(iterable, n):
    for i, item in zip(range(n), iterable):
        yield item


def test_interrupted_and_resumed_run_matches_uninterrupted(tmp_path):
    full, _ = run(tmp_path / "full")

    class Interrupt(Points):
        calls = 0

        def __getitem__(self, i):
            Interrupt.calls += 1
            if Interrupt.calls == 4 * 6 + 1:  # during step 7, after the checkpoint at step 4
                raise KeyboardInterrupt
            return super().__getitem__(i)

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "cut", dataset=Interrupt())
    assert Checkpoint.load(tmp_path / "cut" / "checkpoint.pt").step == 4
    resumed, result = run(tmp_path / "cut", resume=True)
    assert result.step == 12
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    history = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert len(history) == 6  # logged every 2 steps, none duplicated by the redo


def test_existing_checkpoint_needs_resume(tmp_path):
    run(tmp_path, steps=4)
    with pytest.raises(UserError, match="--resume"):
        run(tmp_path, steps=4)


def test_checkpoint_of_another_config_is_refused(tmp_path):
    run(tmp_path, steps=4)
    with pytest.raises(CheckpointError, match="hidden=8"):
        Checkpoint.load(tmp_path / "checkpoint.pt").check_resumable("toy", {"hidden": 16})
    with pytest.raises(CheckpointError, match="'toy'"):
        Checkpoint.load(tmp_path / "checkpoint.pt", kind="motionnet")


def test_nan_loss_stops_and_keeps_last_checkpoint(tmp_path):
    run(tmp_path, steps=4)
    # item 5 holds NaN; the shuffled order reaches it within the first epoch (16 steps)
    with pytest.raises(TrainingDiverged, match="non-finite loss .* kept"):
        run(tmp_path, steps=200, dataset=Points(poison=5), resume=True)
    checkpoint = Checkpoint.load(tmp_path / "checkpoint.pt")
    assert 4 <= checkpoint.step < 200
    assert all(torch.isfinite(v).all() for v in checkpoint.model.values())


def test_nan_policy_skip_continues(tmp_path):
    _, result = run(tmp_path, steps=40, dataset=Points(poison=5), nan_policy="skip")
    assert result.step == 40
    assert result.skipped_steps >= 1
    model = make_model()
    model.load_state_dict(Checkpoint.load(tmp_path / "checkpoint.pt").model)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_interrupted_write_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_atomic({"model": {"w": torch.ones(2)}, "step": 1}, path)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError):
        save_atomic({"model": {"w": torch.zeros(2)}, "step": 2}, path)
    monkeypatch.undo()
    assert Checkpoint.load(path).step == 1
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # no temp file left behind


def test_corrupt_checkpoint_is_one_clear_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="checkpoint.pt is not a hidden2stream checkpoint \\(not a PyTorch file\\)"):
        Checkpoint.load(path)
    whole = save_atomic({"model": {"w": torch.zeros(2)}}, path).read_bytes()
    path.write_bytes(whole[:len(whole) // 2])
    with pytest.raises(CheckpointError, match="cannot be read as a hidden2stream checkpoint: a damaged, truncated"):
        Checkpoint.load(path)


@pytest.mark.parametrize("items, world, accumulation, advice", [
    (5, 1, 1, "pass --batch-size 5 or less"), (5, 2, 1, "pass --batch-size 4 or a smaller multiple of 2"),
    (3, 2, 2, "use fewer processes or accumulation steps")])
def test_too_small_training_set_names_its_size_and_a_batch_size_that_fits(items, world, accumulation, advice):
    with pytest.raises(UserError) as err:
        DistributedStepSampler(items, 16 // (world * accumulation), 0, world, accumulation)
    assert str(err.value) == (f"the training set has {items} items (videos, clips or windows), fewer than one global "
                              f"batch (--batch-size 16 = {16 // (world * accumulation)} x {world} processes x "
                              f"{accumulation} accumulation steps): {advice}")


def test_batch_must_split_over_processes(tmp_path):
    with pytest.raises(UserError, match="not divisible"):
        TrainConfig(out_dir=tmp_path, batch_size=6, accumulation=4).micro_batch(1)


def test_ddp_on_the_cpu_keeps_plain_batchnorm(tmp_path):
    """SyncBatchNorm has no CPU implementation (DDP refuses it: "SyncBatchNorm layers only work with
    GPU modules"), so a gloo run on the CPU keeps per-process BatchNorm; on CUDA it is converted."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from hidden2stream.train.loop import wrap_model

    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
        net = wrap_model(model, TrainConfig(out_dir=tmp_path, sync_batchnorm=True),
                         Runtime(device=torch.device("cpu"), world_size=2))
        assert isinstance(net, DistributedDataParallel)
        assert not any(isinstance(m, nn.SyncBatchNorm) for m in net.modules())
        net(torch.rand(2, 3, 8, 8)).sum().backward()  # a training step's forward and backward run
    finally:
        dist.destroy_process_group()
