"""Command-line plumbing shared by the scripts: one-line errors and argument checks.

Every script's ``main`` runs through :func:`run_cli`, so a bad path, a bad number or a foreign
checkpoint prints one ``error: ...`` line and exits 2 instead of a traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, TypeVar

from hidden2stream.errors import UserError

T = TypeVar("T")


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (no usage dump) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        print(f"error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def run_cli(main: Callable[[list[str] | None], object], argv: list[str] | None = None) -> None:
    """Run a script's ``main``; turn :class:`UserError` and Ctrl-C into one line and an exit code."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    try:
        main(argv)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        print("interrupted: the last checkpoint is kept; rerun with --resume to continue",
              file=sys.stderr)
        raise SystemExit(130) from None


def add_quiet_arg(parser: argparse.ArgumentParser) -> None:
    """Add ``--quiet``: no progress bars or progress lines (:mod:`hidden2stream.progress`);
    the script calls ``set_quiet(args.quiet)``."""
    parser.add_argument("--quiet", action="store_true",
                        help="no progress output (a bar on a terminal, else a line every ~30 s on stderr)")


def options_check(options: str, call: Callable[..., T], *args: object, **kwargs: object) -> T:
    """``call(*args, **kwargs)``, which builds or checks something from the command-line ``options`` alone;
    the ``ValueError`` the library raises for a bad value becomes a one-line :class:`UserError`
    naming those options (library code raises ``ValueError``; the user sees what to change)."""
    try:
        return call(*args, **kwargs)
    except ValueError as err:
        raise UserError(f"{options}: {err}") from None


def existing_path(text: str) -> Path:
    """argparse type: a path that exists."""
    path = Path(text).expanduser()
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text} does not exist")
    return path


def existing_dir(text: str) -> Path:
    """argparse type: a folder that exists."""
    path = existing_path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is not a folder")
    return path


def _number(text: str, kind: type, noun: str, low: float, strict: bool) -> int | float:
    """``text`` as ``kind`` (int or float) that is ``> low`` (``strict``) or ``>= low``, or an
    argparse error naming the rule."""
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {noun}") from None
    if not (value > low if strict else value >= low):
        raise argparse.ArgumentTypeError(f"{text} must be {'>' if strict else '>='} {low}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    return int(_number(text, int, "an integer", 1, strict=False))


def positive_float(text: str) -> float:
    """argparse type: a number > 0."""
    return float(_number(text, float, "a number", 0, strict=True))


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    return int(_number(text, int, "an integer", 0, strict=False))


def probability(text: str) -> float:
    """argparse type: a number in [0, 1]."""
    value = float(_number(text, float, "a number", 0, strict=False))
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text} must be <= 1")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a float >= 0."""
    return float(_number(text, float, "a number", 0, strict=False))


def frame_count(text: str) -> int:
    """argparse type for ``--frames`` (T+1): at least 3, so that a window holds T >= 2 flows."""
    value = positive_int(text)
    if value < 3:
        raise argparse.ArgumentTypeError(f"--frames {value}: need T+1 >= 3 frames (T >= 2 flows)")
    return value


def image_size(text: str) -> tuple[int, int]:
    """argparse type: ``64`` or ``64x96`` (height x width), each a multiple of 8 and >= 32."""
    parts = text.lower().split("x")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"size {text!r} is not N or HxW") from None
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or any(s < 32 or s % 8 for s in sizes):
        raise argparse.ArgumentTypeError(
            f"size {text!r}: height and width must be multiples of 8 and at least 32")
    return sizes[0], sizes[1]
