"""The unsupervised objective at the exact flow and at zero flow: can a loss preset learn the motion?

    python benchmarks/loss_landscape.py [--items 16] [--size 256] [--out benchmarks/results]

On realistic synthetic photo-layer pairs with exact flow (``SyntheticFlowConfig.realistic``, seed
777: no training run's), every loss preset (and the census term at a few weights) is evaluated at
three flow pyramids made from the exact flow (resized to each level, in pixels of the level):
the exact flow, half of it, and zero flow. Training follows the loss downhill, so a preset whose
total is lower at zero flow than at the exact flow pulls MotionNet toward predicting no motion,
whatever the optimiser. The margin ``total(zero) - total(exact)`` and each term's share of it
say which term pulls which way (smoothness is 0 at zero flow: it always pulls toward it).

Writes ``loss_landscape.json`` and ``loss_landscape.md`` to ``--out``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without install

from benchmarks.common import machine_info, machine_line, run_benchmark
from hidden2stream.options import existing_dir, positive_int
from hidden2stream_experiments.cli import OneLineParser, run_cli
from hidden2stream_experiments.parsing import argparse_type
from hidden2stream.data.synthetic_flow import SyntheticFlowConfig, SyntheticFlowDataset
from hidden2stream.losses.motion import PRESETS, MotionLossConfig, multiscale_motion_loss
from hidden2stream.losses.supervised import resize_flow
from hidden2stream.paths import shared_data
from hidden2stream.evaluation.report import markdown_table

SEED, LEVELS = 777, 5
FLOWS = {"exact": 1.0, "half": 0.5, "zero": 0.0}  # the exact flow scaled by


def weight_list(text: str) -> list[float]:
    """argparse type: ``1,4,16``, positive weights."""
    try:
        weights = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not weights or min(weights) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: positive weights, e.g. 1,4,16")
    return weights


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--items", type=argparse_type(positive_int), default=16, help="synthetic pairs")
    p.add_argument("--size", type=argparse_type(positive_int), default=256, help="square pair size (realistic motions for it)")
    p.add_argument("--census-weights", type=weight_list, default=[1.0, 4.0, 16.0],
                   help="photometric_weight values for the census term on top of the improved preset")
    p.add_argument("--images", type=argparse_type(existing_dir), default=shared_data("images"), help="photos for the layers")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output folder")
    return p


def exact_pyramid(flow: torch.Tensor, height: int, width: int) -> list[torch.Tensor]:
    """Exact flows ``(B, 1, 2, H, W)`` -> MotionNet's five levels, 1/32 ... 1/2, in pixels of each."""
    return [resize_flow(flow[:, 0], (-(-height // 2 ** (5 - i)), -(-width // 2 ** (5 - i))))[:, None]
            for i in range(LEVELS)]


def losses(args: argparse.Namespace) -> dict[str, MotionLossConfig]:
    configs = {name: make() for name, make in PRESETS.items()}
    for weight in args.census_weights:
        configs[f"census x{weight:g}"] = dataclasses.replace(MotionLossConfig.improved(), census=True,
                                                             photometric_weight=weight)
    return configs


def run(args: argparse.Namespace) -> dict:
    config = SyntheticFlowConfig.realistic(2, args.size, args.size, str(args.images))
    items = [SyntheticFlowDataset(args.items, config, seed=SEED)[i] for i in range(args.items)]
    frames = torch.stack([item["frames"] for item in items])
    exact = exact_pyramid(torch.stack([item["flow"] for item in items]), args.size, args.size)
    rows = []
    for name, loss_config in losses(args).items():
        row: dict = {"loss": name}
        for flow_name, scale in FLOWS.items():
            pyramid = [level * scale for level in exact]
            backward = [-level for level in pyramid]  # occlusion presets need one: the negated flow
            with torch.no_grad():
                total, terms = multiscale_motion_loss(frames, pyramid, loss_config, backward)
            row[flow_name] = {"total": float(total), **{k: float(v) for k, v in terms.items()}}
        row["margin"] = row["zero"]["total"] - row["exact"]["total"]
        row["margin_terms"] = {k: row["zero"][k] - row["exact"][k] for k in ("photometric", "smoothness", "ssim")}
        rows.append(row)
    return {"machine": machine_info(), "rows": rows,
            "settings": {"items": args.items, "size": args.size, "seed": SEED}}


def markdown(result: dict) -> str:
    table = [[r["loss"], r["exact"]["total"], r["half"]["total"], r["zero"]["total"], r["margin"],
              r["margin_terms"]["photometric"], r["margin_terms"]["smoothness"], r["margin_terms"]["ssim"],
              "exact flow" if r["exact"]["total"] < min(r["zero"]["total"], r["half"]["total"]) else
              ("zero flow" if r["zero"]["total"] <= r["half"]["total"] else "half flow")] for r in result["rows"]]
    header = ["loss", "at exact flow", "at half", "at zero flow", "margin zero - exact", "photometric part",
              "smoothness part", "SSIM part", "lowest at"]
    settings = result["settings"]
    return (f"# The unsupervised objective at the exact flow and at zero flow\n\n{machine_line(result['machine'])}; "
            f"{settings['items']} realistic synthetic pairs at {settings['size']}x{settings['size']} "
            f"(seed {settings['seed']}).\n\n" + markdown_table(header, table, decimals=4))


def main(argv: list[str] | None = None) -> dict:
    return run_benchmark("loss_landscape", build_parser(), run, markdown, argv)


if __name__ == "__main__":
    run_cli(main)
