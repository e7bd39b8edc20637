"""Job options as frozen dataclasses, and the parsers of their values.

Every job of :mod:`hidden2stream.pipeline` takes one frozen options dataclass. Its fields carry what a
command line needs to offer them (:func:`option`: help, value parser, choices, group), so the scripts
in ``experiments/`` build their parser from the dataclass and code builds the same options directly,
with the same defaults (``TwoStreamOptions(out=..., steps=20)``). Value parsers raise ``ValueError``
with a one-line message; the command line shows it as the option's error.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, TypeVar

from hidden2stream.errors import UserError

T = TypeVar("T")
O = TypeVar("O", bound="Options")


def option(default: Any = None, help: str = "", *, parse: Callable[[str], Any] | None = None,
           choices: Any = None, group: str | None = None, required: bool = False, nargs: int | None = None,
           metavar: str | tuple[str, ...] | None = None) -> Any:
    """A field with its command-line description: ``parse`` turns the text into the value, ``choices``
    limits it, ``group`` titles its help section, ``required`` makes the flag obligatory, ``nargs`` takes
    that many values (a tuple), ``metavar`` names the value in the help (``OUT.mp4``); a ``False`` default
    makes a switch. Mutable defaults (tuples are fine) are not allowed."""
    meta = {"help": help, "parse": parse, "choices": choices, "group": group, "required": required, "nargs": nargs,
            "metavar": metavar}
    return dataclasses.field(default=default, metadata=meta)


def override(options: type, name: str, default: Any) -> Any:
    """The field ``name`` of ``options`` with another default (a job's own default for a shared option)."""
    base = next(f for f in dataclasses.fields(options) if f.name == name)
    return dataclasses.field(default=default, metadata=base.metadata)


@dataclasses.dataclass(frozen=True)
class Options:
    """Base of the jobs' options: building from parsed command-line values and replacing fields."""

    @classmethod
    def from_args(cls: type[O], args: Any) -> O:
        """The options of parsed command-line values (an ``argparse.Namespace`` or a dict; fields not
        among them keep their defaults)."""
        values = args if isinstance(args, dict) else vars(args)
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})

    def replace(self: O, **changes: Any) -> O:
        return dataclasses.replace(self, **changes)


def options_check(options: str, call: Callable[..., T], *args: object, **kwargs: object) -> T:
    """``call(*args, **kwargs)``, which builds or checks something from the command-line ``options`` alone;
    the ``ValueError`` the library raises for a bad value becomes a one-line :class:`UserError`
    naming those options (library code raises ``ValueError``; the user sees what to change)."""
    try:
        return call(*args, **kwargs)
    except ValueError as err:
        raise UserError(f"{options}: {err}") from None


def existing_path(text: str) -> Path:
    """A path that exists."""
    path = Path(text).expanduser()
    if not path.exists():
        raise ValueError(f"{text} does not exist")
    return path


def existing_dir(text: str) -> Path:
    """A folder that exists."""
    path = existing_path(text)
    if not path.is_dir():
        raise ValueError(f"{text} is not a folder")
    return path


def _number(text: str, kind: type, noun: str, low: float, strict: bool) -> int | float:
    """``text`` as ``kind`` (int or float) that is ``> low`` (``strict``) or ``>= low``."""
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{text!r} is not {noun}") from None
    if not (value > low if strict else value >= low):
        raise ValueError(f"{text} must be {'>' if strict else '>='} {low}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return int(_number(text, int, "an integer", 1, strict=False))


def positive_float(text: str) -> float:
    """A number > 0."""
    return float(_number(text, float, "a number", 0, strict=True))


def non_negative_int(text: str) -> int:
    """An integer >= 0."""
    return int(_number(text, int, "an integer", 0, strict=False))


def non_negative_float(text: str) -> float:
    """A number >= 0."""
    return float(_number(text, float, "a number", 0, strict=False))


def probability(text: str) -> float:
    """A number in [0, 1]."""
    value = non_negative_float(text)
    if value > 1:
        raise ValueError(f"{text} must be <= 1")
    return value


def frame_count(text: str) -> int:
    """``--frames`` (T+1): at least 3, so that a window holds T >= 2 flows."""
    value = positive_int(text)
    if value < 3:
        raise ValueError(f"--frames {value}: need T+1 >= 3 frames (T >= 2 flows)")
    return value


def image_size(text: str) -> tuple[int, int]:
    """``64`` or ``64x96`` (height x width), each a multiple of 8 and >= 32."""
    parts = text.lower().split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise ValueError(f"size {text!r} is not N or HxW") from None
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or any(s < 32 or s % 8 for s in sizes):
        raise ValueError(f"size {text!r}: height and width must be multiples of 8 and at least 32")
    return sizes[0], sizes[1]
