"""experiments/evaluate.py on saved checkpoints: one process vs torchrun, MotionNet checkpoints, bad input.

The torchrun runs use gloo on the CPU (2 processes, one thread each). The two-process training run
is also the regression test for SyncBatchNorm, which has no CPU implementation: converting the tiny
streams' BatchNorm layers under DDP on the CPU made the first step fail.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import REPO, load_script, run_script
from hidden2stream.checkpoint import Checkpoint, save_atomic

EXPERIMENTS = REPO / "experiments"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "H2S_BACKEND": "gloo"}
# 11 test videos: 2 processes score 6 and 5 of them
TINY_JOINT = ["--frames", "3", "--size", "64", "--segments", "2", "--device", "cpu", "--workers", "0",
              "--train-items", "48", "--test-items", "11", "--batch-size", "4", "--warmup", "2",
              "--appearances", "2", "--motions", "2", "--log-every", "1", "--test-windows", "3"]


def script(name: str):
    return load_script("experiments", name)


def torchrun(nproc: int, name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           str(EXPERIMENTS / f"{name}.py"), *args]
    result = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=240, cwd=cwd)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    return result


def test_torchrun_evaluation_equals_one_process_on_an_odd_test_set(tmp_path):
    """Train for 3 steps under torchrun (2 CPU processes: SyncBatchNorm must stay off), then
    evaluate the checkpoint in one process and under torchrun: the same videos, each once, the
    same numbers (11 test videos do not divide by 2)."""
    run = tmp_path / "run"
    trained = torchrun(2, "train_two_stream", "--out", str(run), "--steps", "3", *TINY_JOINT, cwd=tmp_path)
    assert "3 windows x 1 view" in trained.stdout  # --test-windows reached the training run's evaluation
    checkpoint = run / "checkpoint.pt"
    assert Checkpoint.load(checkpoint, kind="two_stream").step == 3
    options = ["--checkpoint", str(checkpoint), "--device", "cpu", "--batch-size", "2"]
    one = script("evaluate").main([*options, "--out", str(tmp_path / "one")])
    torchrun(2, "evaluate", *options, "--out", str(tmp_path / "two"), cwd=tmp_path)
    two = json.loads((tmp_path / "two" / "eval.json").read_text())
    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["videos"] == two["videos"] == 11 and one["clips"] == two["clips"] == 11
    assert one["test_windows"] == 2  # by default the synthetic test clips keep the K = 2 training segments
    for key in ("clip_top1", "clip_top5", "video_top1", "video_top5", "confusions", "per_class"):
        assert two[key] == one[key], key  # counts over the same predictions: exactly equal
    first, second = (torch.load(tmp_path / part / "scores.pt", weights_only=True) for part in ("one", "two"))
    assert torch.equal(first["labels"], second["labels"])
    assert first["labels"].tolist() == [i % 4 for i in range(11)]  # every video once, in dataset order
    for head, scores in first["scores"].items():
        assert torch.allclose(scores, second["scores"][head], atol=1e-6), head
    assert (tmp_path / "two" / "confusion.png").stat().st_size > 0
    assert "| late |" in (tmp_path / "two" / "eval.md").read_text()


def test_evaluate_reads_a_motionnet_checkpoint(tmp_path, capsys):
    """A pretraining checkpoint: JSON and table written, MotionNet beside zero flow on every set;
    the synthetic rows reproduce the pretraining run's own held-out evaluation."""
    run = tmp_path / "motion"
    pretrained = script("pretrain_motion").main(
        ["--out", str(run), "--steps", "2", "--frames", "3", "--size", "32", "--device", "cpu", "--workers", "0",
         "--eval-items", "2", "--train-items", "16", "--warmup", "1", "--no-tvl1"])
    report = script("evaluate").main(["--checkpoint", str(run / "checkpoint.pt"), "--device", "cpu",
                                      "--eval-items", "2", "--size", "32", "--no-tvl1", "--clip-windows", "1"])
    saved = json.loads((run / "eval_flow" / "eval.json").read_text())
    assert saved["kind"] == "motionnet" and set(saved["synthetic"]["methods"]) == {"MotionNet motion (T+1=3)",
                                                                                  "zero flow"}
    ours = saved["synthetic"]["methods"]["MotionNet motion (T+1=3)"]
    assert ours["epe"] == pytest.approx(pretrained["synthetic"]["epe"], rel=1e-6)
    assert saved["synthetic"]["methods"]["zero flow"]["epe"] == pytest.approx(pretrained["synthetic"]["zero_epe"])
    table = capsys.readouterr().out
    assert "| zero flow |" in table and "OpenCV TV-L1" not in table
    if "real_pairs" in report:  # the shared data is there
        assert report["real_pairs"]["zero flow"]["count"] >= 1 and "clips L1" in table


def _toy_checkpoint(path: Path) -> Path:
    save_atomic({"kind": "toy", "model_config": {}, "model": {"w": torch.zeros(1)}}, path)
    return path


def _text_file(path: Path) -> Path:
    path.parent.mkdir(parents=True)
    path.write_text("loss 0.3\naccuracy 0.9\n")
    return path.relative_to(path.parent.parent)  # as typed on the command line, from the run folder


def _cut_checkpoint(path: Path) -> Path:
    """The first half of a real checkpoint, as a copy interrupted midway leaves it."""
    whole = _toy_checkpoint(path).read_bytes()
    path.write_bytes(whole[:len(whole) // 2])
    return path


@pytest.mark.parametrize("make, message", [
    (lambda tmp: tmp / "missing.pt", "neither a checkpoint file nor shipped weights"),
    (lambda tmp: _toy_checkpoint(tmp / "toy.pt"), "holds a 'toy' model"),
    (lambda tmp: Path(__file__), f"{__file__} is not a hidden2stream checkpoint (not a PyTorch file)"),
    (lambda tmp: _text_file(tmp / "runs" / "x.txt"), "runs/x.txt is not a hidden2stream checkpoint (not a PyTorch file)"),
    (lambda tmp: _cut_checkpoint(tmp / "cut.pt"), "cut.pt cannot be read as a hidden2stream checkpoint: a damaged, "
                                                  "truncated or foreign PyTorch file"),
])
def test_bad_checkpoints_give_one_line_and_exit_2(tmp_path, make, message):
    result = run_script("experiments", "evaluate", ["--checkpoint", str(make(tmp_path)), "--device", "cpu"],
                        cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr
