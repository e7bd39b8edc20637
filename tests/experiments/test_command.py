"""The ``hidden2stream`` command: subcommands run the scripts, and a plain install (no clone) has it."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from helpers import REPO


def test_subcommands_run_the_scripts_and_bad_ones_are_one_line(capsys):
    from hidden2stream_experiments import command  # experiments/, as `pip install` names it
    for name, script in command.COMMANDS.items():
        assert (REPO / "experiments" / f"{script}.py").is_file(), name
    with pytest.raises(SystemExit) as exit_help:
        command.main(["flow", "--help"])
    assert exit_help.value.code == 0 and "--pair" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_unknown:
        command.main(["fly"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_unknown.value.code == 2 and len(err) == 1 and "unknown command 'fly'" in err[0]
    with pytest.raises(SystemExit) as exit_none:
        command.main([])
    assert exit_none.value.code == 2 and "flow" in capsys.readouterr().out


def test_a_plain_install_outside_the_clone_has_the_command(tmp_path):
    """``pip install .`` (not editable; dependencies taken as installed) into a folder, then the
    command from another folder: the scripts come with the package, not from the clone. Built from
    a copy of the sources, so the build leaves nothing in the clone."""
    source, target = tmp_path / "source", tmp_path / "site"
    source.mkdir()
    shutil.copy(REPO / "setup.py", source)
    for folder in ("hidden2stream", "experiments"):
        shutil.copytree(REPO / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    install = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                              "--target", str(target), str(source)], capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([str(target / "bin" / "hidden2stream"), "flow", "--help"], capture_output=True,
                            text=True, timeout=120, cwd=tmp_path, env=env)
    assert result.returncode == 0 and "--pair" in result.stdout, result.stderr
    located = subprocess.run([sys.executable, "-c", "import hidden2stream_experiments; print(hidden2stream_experiments.__file__)"],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert located.stdout.startswith(str(target)), located.stdout + located.stderr
