"""DDP through torchrun on CPU (gloo, 2 processes): same loss curve as 1 process; elastic restart."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from hidden2stream.train.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parent.parent
SCRIPT = str(REPO / "experiments" / "pretrain_motion.py")
TINY = ["--frames", "3", "--size", "32", "--device", "cpu", "--no-tvl1", "--eval-items", "2",
        "--workers", "0", "--train-items", "64", "--warmup", "2", "--log-every", "1"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def torchrun(nproc: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            *extra, SCRIPT]


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_two_process_gloo_matches_one_process(tmp_path):
    args = [*TINY, "--steps", "4", "--batch-size", "4"]
    one = subprocess.run([sys.executable, SCRIPT, "--out", str(tmp_path / "one"), *args],
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([*torchrun(2), "--out", str(tmp_path / "two"), *args],
                         env=ENV, capture_output=True, text=True, timeout=300)
    assert two.returncode == 0, two.stderr[-2000:]
    a, b = losses(tmp_path / "one"), losses(tmp_path / "two")
    assert len(a) == len(b) == 4
    assert a == pytest.approx(b, rel=1e-4)
    w1 = load_checkpoint(tmp_path / "one" / "checkpoint.pt")["model"]
    w2 = load_checkpoint(tmp_path / "two" / "checkpoint.pt")["model"]
    for key in w1:
        torch.testing.assert_close(w1[key], w2[key], rtol=1e-3, atol=1e-5)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
def test_killed_worker_is_restarted_and_resumes(tmp_path):
    out = tmp_path / "elastic"
    steps = 60
    cmd = [*torchrun(2, "--max-restarts=1"), "--out", str(out), *TINY, "--steps", str(steps),
           "--batch-size", "4", "--checkpoint-every", "5", "--resume"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 240
        while not (out / "checkpoint.pt").exists():
            assert proc.poll() is None and time.time() < deadline, "no checkpoint was written"
            time.sleep(0.05)
        workers = _children(proc.pid)
        assert workers, "torchrun started no worker processes"
        os.kill(workers[-1], signal.SIGKILL)
        output, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-3000:]
    assert "resumed" in output
    assert load_checkpoint(out / "checkpoint.pt")["step"] == steps
    logged = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == list(range(1, steps + 1))  # every step logged once, redone steps replaced
