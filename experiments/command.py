"""The ``hidden2stream`` command that ``pip install .`` puts on the PATH: one subcommand a script.

    hidden2stream flow --pair a.png b.png --out flow/    # = python experiments/flow.py --pair ...
    hidden2stream train --help                           # = python experiments/train_two_stream.py --help

Each subcommand runs the same ``main`` as its script in ``experiments/``, with the same one-line
errors and exit codes.
"""
from __future__ import annotations

import importlib
import sys

from hidden2stream_experiments.cli import run_cli

#: subcommand -> script (module of this package)
COMMANDS = {
    "main": "main",
    "pretrain": "pretrain_motion",
    "train": "train_two_stream",
    "evaluate": "evaluate",
    "flow": "flow",
    "predict": "predict",
    "export": "export",
    "make-weights": "make_weights",
}


def main(argv: list[str] | None = None) -> None:
    """Dispatch ``argv`` (default: the command line) to the script its first word names."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, COMMANDS))
        print("usage: hidden2stream <command> [options]   (hidden2stream <command> --help for its options)\n"
              "commands (each runs the script beside it):\n"
              + "\n".join(f"  {name:<{width}}  experiments/{script}.py" for name, script in COMMANDS.items()))
        raise SystemExit(0 if argv else 2)
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; choose from {', '.join(COMMANDS)} (see hidden2stream --help)",
              file=sys.stderr)
        raise SystemExit(2)
    script = importlib.import_module(f".{COMMANDS[name]}", __package__)
    sys.argv[0] = f"hidden2stream {name}"  # argparse's prog in usage and error lines
    run_cli(script.main, rest)


if __name__ == "__main__":
    main()
