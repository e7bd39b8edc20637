"""Helpers shared by the benchmark scripts: machine description, timing, result files.

Every benchmark names the machine it ran on, reports medians over repeats with warm-up excluded,
and writes ``<name>.json`` + ``<name>.md`` into its ``--out`` folder.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Callable

import torch

from hidden2stream.errors import UserError
from hidden2stream.evaluation.report import markdown_table
from hidden2stream.options import positive_int
from hidden2stream.pipeline import two_stream
from hidden2stream.progress import set_quiet
from hidden2stream_experiments.parsing import argparse_type


def comma_choices(allowed: tuple[str, ...] | list[str], option: str,
                  empty_ok: bool = False) -> Callable[[str], list[str]]:
    """argparse type for ``option``: a comma list of items from ``allowed``, repeats dropped (in
    order); an empty list only with ``empty_ok``."""
    def parse(text: str) -> list[str]:
        items = list(dict.fromkeys(s.strip() for s in text.split(",") if s.strip()))
        if (not items and not empty_ok) or any(i not in allowed for i in items):
            raise argparse.ArgumentTypeError(f"{option} must be among {', '.join(allowed)}, got {text!r}")
        return items
    return parse


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (``platform.processor()`` where that is absent)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(device: torch.device | None = None) -> dict:
    """CPU model, cores, torch threads, platform; GPU name and memory when ``device`` is CUDA."""
    info = {"cpu": cpu_model(), "machine": platform.machine(), "platform": platform.platform(),
            "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__}
    if device is not None:
        info["device"] = str(device)
        if device.type == "cuda":
            props = torch.cuda.get_device_properties(device)
            info["gpu"] = props.name
            info["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
    return info


def machine_line(info: dict) -> str:
    """One line naming the machine, for the top of a Markdown report."""
    line = f"{info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch threads"
    return f"{line}, GPU {info['gpu']}" if "gpu" in info else line


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work so that wall-clock timings include it (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of ``fn`` takes, GPU work included."""
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    """Median of a non-empty list (the statistic every benchmark reports)."""
    return float(statistics.median(values))


def write_results(out: Path, name: str, result: dict, markdown: str) -> tuple[Path, Path]:
    """Write ``out/name.json`` and ``out/name.md``; returns both paths."""
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{name}.json", out / f"{name}.md"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    md_path.write_text(markdown if markdown.endswith("\n") else markdown + "\n")
    return json_path, md_path


def table_report(title: str, machine: dict, settings: str, headers: list[str], rows: list[list]) -> str:
    """A benchmark's Markdown: ``# title (machine)``, a line of its settings, one table."""
    return f"# {title} ({machine_line(machine)})\n\n{settings}\n\n" + markdown_table(headers, rows)


def publish(out: Path, name: str, result: dict, markdown: str) -> dict:
    """Print a benchmark's tables and write them with its JSON (:func:`write_results`); returns ``result``."""
    print(markdown)
    write_results(out, name, result, markdown)
    return result


def run_benchmark(name: str, parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], dict],
                  markdown: Callable[[dict], str], argv: list[str] | None) -> dict:
    """A benchmark's ``main``: parse ``argv``, ``run`` it, then :func:`publish` its ``markdown``
    (a ``--quiet`` option, when the parser has one, turns progress output off)."""
    args = parser.parse_args(argv)
    set_quiet(getattr(args, "quiet", False))
    result = run(args)
    return publish(args.out, name, result, markdown(result))


def add_training_run_args(parser: argparse.ArgumentParser, steps: int, steps_help: str, out: str) -> None:
    """The options of a benchmark made of two-stream training runs: steps and batch of each run, test videos,
    DataLoader workers, the results folder and ``--quiet``."""
    parser.add_argument("--steps", type=argparse_type(positive_int), default=steps, help=steps_help)
    parser.add_argument("--batch-size", type=argparse_type(positive_int), default=8)
    parser.add_argument("--test-items", type=argparse_type(positive_int), default=240)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader worker processes of each run")
    parser.add_argument("--out", type=Path, default=Path(out))
    parser.add_argument("--quiet", action="store_true", help="no progress lines from the training runs")


def two_stream_run(out: Path, **options: object) -> dict:
    """One run of the two-stream training stage (``experiments/train_two_stream.py``) into ``out`` with
    ``options`` set as on its command line, on the CPU, resumable; a finished run (its ``eval.json``)
    is read back instead of trained again. Returns the run's ``eval.json``."""
    if not (out / "eval.json").is_file():
        two_stream.run(two_stream.TwoStreamOptions(out=out, resume=True, device="cpu", **options))
    return json.loads((out / "eval.json").read_text())


def add_onnx_option(parser: argparse.ArgumentParser) -> None:
    """``--onnx auto|on|off``: the ONNX Runtime rows :func:`onnx_rows` decides on."""
    parser.add_argument("--onnx", default="auto", choices=("auto", "on", "off"),
                        help="ONNX Runtime rows (auto: when onnxruntime is installed and the device is the CPU)")


def onnx_rows(option: str, device: torch.device) -> str | None:
    """Why ONNX Runtime rows are left out under ``--onnx auto|on|off`` (None: add them).

    They run on the CPU with the ``export`` extras installed; ``--onnx on`` where they cannot run is
    a :class:`UserError` naming what is missing.
    """
    from hidden2stream.export import missing_packages

    if option == "off":
        return "ONNX Runtime rows off (--onnx off)"
    missing = missing_packages()
    if device.type != "cpu":
        note = f"ONNX Runtime rows are CPU only: skipped on {device}"
    elif missing:
        note = f"ONNX Runtime rows skipped: {', '.join(missing)} not installed (pip install -e \".[export]\")"
    else:
        return None
    if option == "on":
        raise UserError(note.replace("rows skipped", "rows asked for (--onnx on)"))
    return note
