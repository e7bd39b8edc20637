"""TensorBoard while training: flow pictures every N steps, learning rate and evaluation scalars,
the confusion matrix; read back from the event files with tensorboard's EventAccumulator."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn

from helpers import load_script
from hidden2stream.train.loop import TrainConfig, train
from hidden2stream.runtime import Runtime
from hidden2stream.train.tensorboard import flow_tiles

CPU = Runtime(device=torch.device("cpu"))


def script(name: str):
    return load_script("experiments", name)


def events(out: Path) -> EventAccumulator:
    accumulator = EventAccumulator(str(out / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    accumulator.Reload()
    return accumulator


def image_steps(accumulator: EventAccumulator, tag: str) -> list[tuple[int, int, int]]:
    return [(e.step, e.height, e.width) for e in accumulator.Images(tag)]


def test_pretraining_logs_flow_pictures_with_ground_truth(tmp_path):
    out = tmp_path / "motion"
    script("pretrain_motion").main(["--out", str(out), "--steps", "4", "--log-images-every", "2", "--frames", "3",
                                    "--size", "32", "--device", "cpu", "--workers", "0", "--eval-items", "2",
                                    "--train-items", "16", "--warmup", "1", "--no-tvl1", "--batch-size", "4"])
    board = events(out)
    # 4 windows (rows) of frame | flow | warping error | ground truth: 32x32 tiles, 2-pixel borders
    assert image_steps(board, "flow/train") == [(2, 4 * 34 + 2, 4 * 34 + 2), (4, 4 * 34 + 2, 4 * 34 + 2)]
    scalars = board.Tags()["scalars"]
    assert "lr" in scalars and "loss" in scalars
    assert {"eval/synthetic/epe", "eval/synthetic/zero_epe"} <= set(scalars)


def test_two_stream_training_logs_flow_pictures_metrics_and_confusion(tmp_path):
    out = tmp_path / "joint"
    script("train_two_stream").main(["--out", str(out), "--steps", "2", "--log-images-every", "1", "--frames", "3",
                                     "--size", "64", "--segments", "2", "--device", "cpu", "--workers", "0",
                                     "--train-items", "16", "--test-items", "4", "--batch-size", "2", "--warmup", "1",
                                     "--appearances", "2", "--motions", "2", "--log-every", "1"])
    board = events(out)
    # 2 clips (rows) of frame | flow | warping error: the synthetic action data has no flow labels
    assert image_steps(board, "flow/train") == [(1, 2 * 66 + 2, 3 * 66 + 2), (2, 2 * 66 + 2, 3 * 66 + 2)]
    assert image_steps(board, "eval/confusion") == [(2, 4 * 24, 4 * 24)]
    scalars = set(board.Tags()["scalars"])
    assert {"lr", "loss", "eval/video_top1/fused", "eval/video_top1/late", "eval/clip_top5/spatial"} <= scalars
    assert [e.step for e in board.Scalars("lr")] == [1, 2]


def test_no_pictures_when_switched_off(tmp_path):
    out = tmp_path / "off"
    script("train_two_stream").main(["--out", str(out), "--steps", "1", "--log-images-every", "0", "--frames", "3",
                                     "--size", "64", "--segments", "1", "--device", "cpu", "--workers", "0",
                                     "--train-items", "8", "--test-items", "2", "--batch-size", "2",
                                     "--appearances", "1", "--motions", "2", "--no-eval"])
    assert events(out).Tags()["images"] == []


class Points(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 32

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        x = torch.randn(4, generator=torch.Generator().manual_seed(i))
        return {"x": x, "y": x.sum(0, keepdim=True)}


def _toy_run(out: Path, callback) -> dict[str, torch.Tensor]:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.2), nn.ReLU(), nn.Linear(8, 1))
    config = TrainConfig(out_dir=out, steps=6, batch_size=4, log_every=3, checkpoint_every=6, log_images_every=2)

    def mse(net, batch):
        return (net(batch["x"]) - batch["y"]).pow(2).mean(), {}

    train(model, Points(), mse, torch.optim.Adam(model.parameters(), lr=1e-2), config, CPU, kind="toy",
          model_config={}, image_callback=callback)
    return model.state_dict()


def test_loop_calls_the_image_callback_every_n_steps_without_changing_training(tmp_path):
    seen = []

    def callback(model, batch, step, writer):
        assert not isinstance(model, nn.parallel.DistributedDataParallel) and batch["x"].shape == (4, 4)
        model(torch.randn(3, 4))  # the callback may run the model (and draw random numbers)
        writer.add_scalar("probe", float(step), step)
        seen.append(step)

    drawn = _toy_run(tmp_path / "drawn", callback)
    plain = _toy_run(tmp_path / "plain", None)
    assert seen == [2, 4, 6]
    assert all(torch.equal(drawn[k], plain[k]) for k in plain)  # the same training, pictures or not


def test_flow_tiles_show_zero_error_for_the_true_flow():
    frames = torch.rand(2, 2, 3, 16, 16)
    frames[:, 1] = frames[:, 0].roll(1, dims=-1)  # frame 1 = frame 0 moved one pixel right
    flow = torch.zeros(2, 2, 16, 16)
    flow[:, 0] = 1.0
    image = flow_tiles(frames, flow, truth=flow.clone())
    assert image.shape == (3, 2 * 18 + 2, 4 * 18 + 2)
    error = image[:, 2:18, 2 * 18 + 2:2 * 18 + 18]  # first row, third tile
    assert float(error[:, :, :-1].max()) == pytest.approx(0.0, abs=1e-6)  # the last column leaves the frame
    assert float(error[:, :, -1].max()) > 0
