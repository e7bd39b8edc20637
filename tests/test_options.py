"""Job options: dataclass fields carry their command line; code and command line build equal options."""
from __future__ import annotations

from pathlib import Path

import pytest

from hidden2stream.options import image_size, positive_int
from hidden2stream.pipeline.flow import FlowOptions
from hidden2stream.pipeline.two_stream import TwoStreamOptions
from hidden2stream.errors import UserError
from hidden2stream_experiments.parsing import parse_options


def test_value_parsers_say_what_is_wrong():
    assert image_size("64") == (64, 64) and image_size("64x96") == (64, 96)
    with pytest.raises(ValueError, match="multiples of 8"):
        image_size("60")
    with pytest.raises(ValueError, match="must be >= 1"):
        positive_int("0")


def test_defaults_and_job_overrides_match_the_command_line():
    parsed = parse_options(TwoStreamOptions, ["--out", "j", "--size", "32x48", "--test-flip"], None)
    assert parsed == TwoStreamOptions(out=Path("j"), size=(32, 48), test_flip=True)
    assert parsed.steps == 300 and parsed.frames == 6 and parsed.device == "auto"  # the job's, the data's, runtime's
    assert parsed.replace(steps=5).steps == 5 and parsed.steps == 300  # frozen


def test_a_bad_value_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_options(TwoStreamOptions, ["--frames", "2"], None)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "need T+1 >= 3 frames" in err


def test_options_that_exclude_each_other_are_one_line(tmp_path):
    frame = tmp_path / "f.png"
    frame.write_bytes(b"")
    with pytest.raises(UserError, match="give one of --video and --pair"):
        FlowOptions().check()
    with pytest.raises(UserError, match="--size and --max-side"):
        parse_options(FlowOptions, ["--pair", str(frame), str(frame), "--size", "64", "--max-side", "32"], None).check()
