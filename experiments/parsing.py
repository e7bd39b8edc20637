"""A script's parser made from its job's options dataclass (fields declared with
``hidden2stream.options.option``): one flag per field, the field's default, parser and help."""
from __future__ import annotations

import argparse
import dataclasses
from typing import Any, Callable

from hidden2stream.progress import set_quiet
from hidden2stream_experiments.cli import OneLineParser


def argparse_type(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """``parse`` as an argparse type: its ``ValueError`` message becomes the option's error line."""
    def typed(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None
    typed.__name__ = parse.__name__
    return typed


def add_options(parser: argparse.ArgumentParser, options: type) -> None:
    """One command-line option per field of the ``options`` dataclass (``hidden2stream.options.option``)."""
    groups: dict[str | None, Any] = {None: parser}
    for f in dataclasses.fields(options):
        meta = f.metadata
        if meta.get("group") not in groups:
            groups[meta["group"]] = parser.add_argument_group(meta["group"])
        group = groups[meta.get("group")]
        kwargs: dict[str, Any] = {"help": meta.get("help"), "dest": f.name}
        if f.default is False:
            kwargs["action"] = "store_true"
        else:
            kwargs.update(default=f.default, choices=meta.get("choices"), required=meta.get("required", False))
            if meta.get("parse") is not None:
                kwargs["type"] = argparse_type(meta["parse"])
            if meta.get("nargs") or meta.get("metavar"):
                kwargs.update(nargs=meta.get("nargs"), metavar=meta.get("metavar") or f.name.upper())
        group.add_argument("--" + f.name.replace("_", "-"), **kwargs)


def parse_options(options: type, argv: list[str] | None, doc: str | None,
                  presets: tuple[str, Callable[[str], dict]] | None = None) -> Any:
    """``argv`` parsed into ``options`` (with ``--quiet``, which it applies). ``presets``: (a field, e.g.
    ``recipe``; its value -> other defaults), which the options typed still override."""
    parser = OneLineParser(description=(doc or "").split("\n")[0])
    add_options(parser, options)
    parser.add_argument("--quiet", action="store_true",
                        help="no progress output (a bar on a terminal, else a line every ~30 s on stderr)")
    if presets is not None:
        field, defaults = presets
        parser.set_defaults(**defaults(getattr(parser.parse_known_args(argv)[0], field)))
    args = parser.parse_args(argv)
    set_quiet(args.quiet)
    return options.from_args(args)
