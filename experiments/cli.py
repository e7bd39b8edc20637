"""The scripts' one-line errors: every script's ``main`` runs through :func:`run_cli`, so a bad path, a bad
number or a foreign checkpoint prints one ``error: ...`` line and exits 2 instead of a traceback.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from hidden2stream.errors import UserError


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
        print("interrupted: the last checkpoint is kept; rerun with --resume to continue", file=sys.stderr)
        raise SystemExit(130) from None
