"""Lucas-Kanade refinement of a MotionNet's flow: each setting scored, one chosen on validation data.

    python benchmarks/flow_refinement.py [--weights default] [--out benchmarks/results]

The MotionNet of ``--weights`` (its CNN, without the refinement its config may carry) gives one
flow per pair; every setting of :class:`~hidden2stream.flow.refine.LucasKanadeRefinement` in the
grid (``none`` first) refines that same flow, so the rows differ only by the refinement. Scored on

* **validation**: ``--validation-items`` realistic synthetic pairs at 320x320 (the training
  distribution, seed 777: neither training's seeds nor the benchmark's 20000+). The setting with
  the lowest EPE here is the one chosen, and the only thing that chooses;
* the synthetic benchmark pairs at 224x224 and the real pairs with ground truth (default
  ``<shared>/data/flow_gt``, the development set): reported beside it, never used to choose;
* seconds per real pair of the refinement alone (median over the pairs; the CNN's time is the
  ``none`` row of ``benchmarks/flow_quality.py``).

Writes ``flow_refinement.json`` and ``flow_refinement.md`` to ``--out``.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without install

from benchmarks.common import machine_info, machine_line, median, run_benchmark
from hidden2stream.options import existing_dir, positive_int
from hidden2stream_experiments.cli import OneLineParser, run_cli
from hidden2stream_experiments.parsing import argparse_type
from hidden2stream.data.flow_pairs import FlowPair, FlowPairFolder
from hidden2stream.data.synthetic_flow import SyntheticFlowConfig, SyntheticFlowDataset
from hidden2stream.evaluation.flow import BENCHMARK_SEED, benchmark_synthetic_config, pair_scores, synthetic_pairs
from hidden2stream.flow.predict import pair_flow
from hidden2stream.flow.refine import LucasKanadeRefinement, lucas_kanade_refine
from hidden2stream.models.motionnet import build_motionnet
from hidden2stream.paths import shared_data
from hidden2stream.pretrained import load_motionnet
from hidden2stream.weights import motion_source
from hidden2stream.evaluation.report import markdown_table

VALIDATION_SEED, VALIDATION_SIDE = 777, 320


def settings_grid() -> list[LucasKanadeRefinement | None]:
    """None, then the scales x window sizes at 3 iterations, then 1 and 5 iterations of the widest."""
    grid: list[LucasKanadeRefinement | None] = [None]
    grid += [LucasKanadeRefinement(scales=scales, sigma=sigma) for scales in [(1,), (2, 1), (4, 2, 1)]
             for sigma in (2.0, 3.0, 4.0)]
    grid += [LucasKanadeRefinement(scales=(4, 2, 1), iterations=n) for n in (1, 5)]
    return grid


def label(setting: LucasKanadeRefinement | None) -> str:
    if setting is None:
        return "none (the CNN alone)"
    scales = ",".join(f"1/{s}" if s > 1 else "1" for s in setting.scales)
    return f"scales {scales}, sigma {setting.sigma:g}, {setting.iterations} iterations"


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", default="default", help="shipped weights name or MotionNet checkpoint")
    p.add_argument("--real-root", type=argparse_type(existing_dir), default=shared_data("flow_gt"),
                   help="folder of real pairs with ground truth (Middlebury or KITTI layout)")
    p.add_argument("--images", type=argparse_type(existing_dir), default=shared_data("images"), help="photos for the layers")
    p.add_argument("--validation-items", type=argparse_type(positive_int), default=64, help="validation pairs at 320x320")
    p.add_argument("--items", type=argparse_type(positive_int), default=24, help="benchmark pairs at 224x224")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output folder")
    return p


def cnn_flows(model: torch.nn.Module, pairs: list[FlowPair]) -> list[torch.Tensor]:
    """The unrefined flow ``(2, H, W)`` of every pair."""
    return [pair_flow(model, p.frame1, p.frame2, "cpu") for p in pairs]


def score_setting(setting: LucasKanadeRefinement | None, pairs: list[FlowPair],
                  flows: list[torch.Tensor]) -> tuple[list[float], list[float]]:
    """Per pair: EPE of the refined flow and seconds the refinement took."""
    errors, seconds = [], []
    for pair, flow in zip(pairs, flows):
        start = time.perf_counter()
        if setting is not None:
            with torch.no_grad():
                flow = lucas_kanade_refine(pair.frame1[None], pair.frame2[None], flow[None], setting)[0]
        seconds.append(time.perf_counter() - start)
        errors.append(pair_scores(flow, pair.flow, pair.valid)["epe"])
    return errors, seconds


def run(args: argparse.Namespace) -> dict:
    trained = load_motionnet(motion_source(args.weights), frames=2)
    model = build_motionnet(dataclasses.replace(trained.config, refinement=None))
    model.load_state_dict(trained.state_dict())
    images = str(args.images)
    validation = SyntheticFlowConfig.realistic(2, VALIDATION_SIDE, VALIDATION_SIDE, images)
    sets = {
        "validation_320": list(synthetic_pairs(SyntheticFlowDataset(args.validation_items, validation,
                                                                    seed=VALIDATION_SEED))),
        "synthetic_224": list(synthetic_pairs(SyntheticFlowDataset(
            args.items, benchmark_synthetic_config(224, images), seed=BENCHMARK_SEED))),
        "real": list(FlowPairFolder(args.real_root)),
    }
    flows = {name: cnn_flows(model, pairs) for name, pairs in sets.items()}
    rows = []
    for setting in settings_grid():
        row = {"setting": None if setting is None else setting.to_dict(), "label": label(setting)}
        for name, pairs in sets.items():
            errors, seconds = score_setting(setting, pairs, flows[name])
            row[name] = sum(errors) / len(errors)
            if name == "real":
                row["real_pairs"] = {p.name: e for p, e in zip(pairs, errors)}
                row["seconds_per_real_pair"] = median(seconds)
        rows.append(row)
    chosen = min(range(len(rows)), key=lambda i: rows[i]["validation_320"])
    return {"machine": machine_info(), "weights": str(args.weights), "rows": rows, "chosen": rows[chosen]["label"],
            "chosen_is_default": rows[chosen]["setting"] == LucasKanadeRefinement().to_dict(),
            "settings": {"validation_items": args.validation_items, "validation_seed": VALIDATION_SEED,
                         "items": args.items, "real_root": str(args.real_root)}}


def markdown(result: dict) -> str:
    names = list(result["rows"][0]["real_pairs"])
    table = [[("**" + r["label"] + "**") if r["label"] == result["chosen"] else r["label"],
              f"{r['validation_320']:.3f}", f"{r['synthetic_224']:.3f}",
              *[f"{r['real_pairs'][n]:.3f}" for n in names], f"{r['real']:.3f}",
              f"{1000 * r['seconds_per_real_pair']:.0f}"] for r in result["rows"]]
    header = ["refinement", "validation 320 (chooses)", "synthetic 224", *names, "real mean", "ms / real pair"]
    return (f"# Lucas-Kanade refinement of `{result['weights']}`\n\n{machine_line(result['machine'])}. EPE in px; "
            f"chosen (lowest validation EPE): **{result['chosen']}** "
            f"({'the default' if result['chosen_is_default'] else 'not the default'} of LucasKanadeRefinement).\n\n"
            + markdown_table(header, table))


def main(argv: list[str] | None = None) -> dict:
    return run_benchmark("flow_refinement", build_parser(), run, markdown, argv)


if __name__ == "__main__":
    run_cli(main)
