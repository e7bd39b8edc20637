"""Progress output where no terminal is attached: plain lines on stderr, turned off by --quiet."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from hidden2stream import progress
from hidden2stream.progress import Progress

REPO = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^\[(?P<desc>[^\]]+)\] (?P<n>\d+)/(?P<total>\d+) \(\d+%\).* \| [\d.e+-]+ \w+/s \| elapsed \d+:\d\d")


@pytest.fixture(autouse=True)
def loud():
    progress.set_quiet(False)
    yield
    progress.set_quiet(False)


def test_lines_come_at_the_first_item_every_tenth_and_at_the_end(capsys):
    with Progress(100, "work", unit="item") as bar:
        for i in range(100):
            bar.set_postfix({"loss": 1.0 / (i + 1)})
            bar.update()
    lines = capsys.readouterr().err.splitlines()  # pytest's captured stderr is not a terminal
    counts = [int(LINE.match(line)["n"]) for line in lines]
    assert counts == [1, 11, 21, 31, 41, 51, 61, 71, 81, 91, 100]
    assert "loss 0.01 " in lines[-1] and "eta 0:00" in lines[-1]


def test_a_line_comes_after_the_interval_even_between_counts(capsys, monkeypatch):
    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    bar = Progress(1000, "slow")
    bar.update()  # the first item: a line
    now[0] = 1.0
    bar.update()  # 1 s later: no line (not 100 items, not 30 s)
    now[0] = 40.0
    bar.update()  # 39 s after the last line: a line
    lines = capsys.readouterr().err.splitlines()
    assert [int(LINE.match(line)["n"]) for line in lines] == [1, 3]


def test_quiet_and_disabled_write_nothing(capsys):
    with Progress(5, "off", enabled=False) as bar:
        bar.update(5)
    progress.set_quiet(True)
    with Progress(5, "quiet") as bar:
        bar.update(5)
    progress.stage("a stage")
    assert capsys.readouterr().err == ""


def _redirected(script: str, args: list[str], cwd: Path) -> str:
    """``experiments/<script>.py args`` as a user runs it with its output redirected to a file; the file's text."""
    log = cwd / f"{script}.log"
    with open(log, "w") as handle:
        result = subprocess.run([sys.executable, str(REPO / "experiments" / f"{script}.py"), *args],
                                stdout=handle, stderr=subprocess.STDOUT, timeout=300, cwd=cwd)
    assert result.returncode == 0, log.read_text()
    return log.read_text()


def _train(tmp_path: Path, *extra: str) -> str:
    """A 4-step joint training, output redirected to a file; the file's text."""
    tmp_path.mkdir()
    return _redirected("train_two_stream", [
        "--out", str(tmp_path / "run"), "--steps", "4", "--no-eval", "--frames", "3", "--size", "64",
        "--segments", "2", "--device", "cpu", "--workers", "0", "--train-items", "16", "--batch-size", "4",
        "--appearances", "2", "--motions", "2", *extra], tmp_path)


def test_redirected_training_and_evaluation_leave_progress_lines_and_quiet_none(tmp_path):
    text = _train(tmp_path / "loud")
    steps = [m for m in map(LINE.match, text.splitlines()) if m and m["desc"] == "train both"]
    assert [(int(m["n"]), int(m["total"])) for m in steps][-1] == (4, 4), text
    assert steps[0]["n"] == "1" and "loss " in text
    quiet = _train(tmp_path / "quiet", "--quiet")
    assert not any(map(LINE.match, quiet.splitlines())), quiet
    evaluate = ["--checkpoint", str(tmp_path / "loud" / "run" / "checkpoint.pt"), "--test-items", "4",
                "--device", "cpu"]
    evaluated = _redirected("evaluate", evaluate + ["--out", str(tmp_path / "eval")], tmp_path)
    assert any(m and m["desc"] == "evaluate" for m in map(LINE.match, evaluated.splitlines())), evaluated
    evaluated_quietly = _redirected("evaluate", evaluate + ["--out", str(tmp_path / "eval_q"), "--quiet"], tmp_path)
    assert not any(map(LINE.match, evaluated_quietly.splitlines())), evaluated_quietly
