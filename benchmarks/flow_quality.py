"""Flow quality: MotionNet checkpoints vs OpenCV TV-L1, DIS, Farneback and zero flow, in one table.

    python benchmarks/flow_quality.py --checkpoint runs/motion/checkpoint.pt [--checkpoint other.pt ...]
                                      [--real-root DIR ...] [--items 24] [--out benchmarks/results]

One row per method, on the same frames:

* **Real pairs with ground truth** (``--real-root``, repeatable; default ``<shared>/data/flow_gt``,
  the Middlebury RubberWhale, Grove2 and Urban2 pairs; KITTI 2012/2015 training folders work too):
  EPE of each pair at its native size (roots with more than ``--max-pair-columns`` pairs get one
  mean column instead), the mean EPE over all pairs and the mean Fl-all.
* **Synthetic pairs with exact flow** at 224x224 and 64x64 (``--synthetic-sizes``): the same
  scenes (moving layers textured with the photos of ``--images``, fixed seed) at each size, with
  large displacements: the foreground translation reaches ``--max-motion`` px (default 30) at
  224x224 and proportionally less at other sizes (30 * 64/224 = 8.6 px at 64x64); the background
  moves half as far, as in the default synthetic data. EPE per size.
* **Held-out clip windows** (``--clips``, no ground truth): photometric L1 between frame t and
  frame t+1 backward-warped by the flow (SSIM in the JSON).

MotionNet of any window length sees a pair as ``[frame1, frame2, frame2, ...]`` (``pair_flow``) and
a clip window as a video (windows of T+1 frames sharing their end frames). Pictures:
``flow_real_pairs.png`` (per real pair: frame 1 | ground truth | each method, zero flow left out;
one colour scale per row, the largest valid ground-truth vector; no ground truth = black) and
``flow_methods.png`` (the same for the first synthetic pairs at the largest size).

Without ``--checkpoint`` it scores the shipped weights ``default``. Writes ``flow_quality.json`` and ``flow_quality.md`` to ``--out``.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without install

from benchmarks.common import machine_info, machine_line, run_benchmark
from hidden2stream.options import existing_dir, image_size, non_negative_int, positive_float, positive_int
from hidden2stream_experiments.cli import OneLineParser, run_cli
from hidden2stream_experiments.parsing import argparse_type
from hidden2stream.data.clips import VideoWindowDataset
from hidden2stream.data.flow_pairs import FlowPair, FlowPairFolder
from hidden2stream.data.synthetic_flow import SyntheticFlowDataset
from hidden2stream.evaluation.flow import (BENCHMARK_MOTION, BENCHMARK_SEED, BENCHMARK_SIDE, FlowMethod,
                                         benchmark_synthetic_config, flow_methods, score_pairs, score_sequences,
                                         summarize_pairs,
                                         synthetic_pairs)
from hidden2stream.flow.visualize import flow_to_rgb, make_grid_png
from hidden2stream.paths import shared_data
from hidden2stream.weights import motion_source
from hidden2stream.evaluation.report import markdown_table
from hidden2stream.runtime import RuntimeOptions
from hidden2stream_experiments.parsing import add_options

TILE = (240, 320)  # picture tiles: height, width (each flow fitted inside, aspect kept)


def side_list(text: str) -> list[int]:
    """argparse type: ``224,64``, square sizes of at least 16 px."""
    try:
        sides = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of sizes") from None
    if not sides or any(s < 16 for s in sides) or len(set(sides)) != len(sides):
        raise argparse.ArgumentTypeError(f"{text!r}: distinct sizes of at least 16 px, e.g. 224,64")
    return sides


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", action="append",
                   help="pretrain_motion.py or train_two_stream.py checkpoint, or shipped weights by name; "
                        "repeat for several rows (default: the shipped weights 'default')")
    p.add_argument("--real-root", type=Path, action="append",
                   help="folder of real pairs with ground truth (Middlebury frame1.png/frame2.png/flow.flo "
                        "folders or a KITTI training folder); repeat for several "
                        f"(default: {shared_data('flow_gt')})")
    p.add_argument("--max-real-pairs", type=argparse_type(positive_int), help="score at most the first N pairs of each root")
    p.add_argument("--max-pair-columns", type=argparse_type(positive_int), default=8,
                   help="a root with more pairs gets one mean-EPE column instead of one per pair")
    p.add_argument("--synthetic-sizes", type=side_list, default=[224, 64], help="square sizes, e.g. 224,64")
    p.add_argument("--items", type=argparse_type(positive_int), default=24, help="synthetic pairs per size")
    p.add_argument("--max-motion", type=argparse_type(positive_float), default=BENCHMARK_MOTION,
                   help=f"largest foreground translation in px at {BENCHMARK_SIDE}x{BENCHMARK_SIDE}, "
                        "scaled with the size")
    p.add_argument("--images", type=argparse_type(existing_dir), default=shared_data("images"), help="photos for the layers")
    p.add_argument("--clips", type=argparse_type(existing_dir), default=shared_data("clips"), help="folder of videos")
    p.add_argument("--clip-windows", type=argparse_type(non_negative_int), default=2, help="held-out windows per video (0: none)")
    p.add_argument("--clip-frames", type=argparse_type(positive_int), default=6, help="frames per clip window")
    p.add_argument("--clip-size", type=argparse_type(image_size), default=(64, 64), help="clip windows resized to N or HxW")
    p.add_argument("--grid-rows", type=argparse_type(non_negative_int), default=4, help="synthetic pairs in flow_methods.png")
    p.add_argument("--grid-real", type=argparse_type(non_negative_int), default=6, help="real pairs in flow_real_pairs.png")
    p.add_argument("--seed", type=int, default=0, help="synthetic scenes and clip windows")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output folder")
    add_options(p, RuntimeOptions)
    return p


def checkpoint_paths(args: argparse.Namespace) -> list[Path]:
    """The MotionNets to evaluate: checkpoint files or shipped weights by name (default: ``default``)."""
    return [motion_source(c) for c in (args.checkpoint or ["default"])]


def fit_tile(image: torch.Tensor, box: tuple[int, int] = TILE) -> torch.Tensor:
    """uint8 ``(3, H, W)`` resized to fit ``box`` with its aspect ratio kept, padded with white."""
    height, width = image.shape[-2:]
    scale = min(box[0] / height, box[1] / width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    resized = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)[0]
    tile = torch.full((3, *box), 255.0)
    top, left = (box[0] - size[0]) // 2, (box[1] - size[1]) // 2
    tile[:, top:top + size[0], left:left + size[1]] = resized
    return tile.round().clamp(0, 255).to(torch.uint8)


def picture_row(pair: FlowPair, flows: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """Tiles frame 1 | ground truth | each flow on the row's scale (the largest valid ground-truth
    vector); pixels without ground truth are black in the ground-truth tile."""
    magnitude = torch.linalg.vector_norm(pair.flow, dim=0, keepdim=True)
    scale = max(float((magnitude * pair.valid).max()), 1e-3)
    truth = flow_to_rgb(pair.flow, scale) * (pair.valid > 0)
    tiles = [(pair.frame1 * 255).round().to(torch.uint8), truth.to(torch.uint8)]
    tiles += [flow_to_rgb(flow, scale) for flow in flows.values()]
    return [fit_tile(t) for t in tiles]


def picture_collector(rows: int, pictured: set[str], tiles: list[torch.Tensor]) -> Callable[[FlowPair, dict], None]:
    """An ``on_pair`` hook that adds the picture row (the ``pictured`` methods) of the first ``rows``
    pairs it sees to ``tiles``."""
    seen = [0]

    def collect(pair: FlowPair, flows: dict[str, torch.Tensor]) -> None:
        if seen[0] < rows:
            tiles.extend(picture_row(pair, {k: v for k, v in flows.items() if k in pictured}))
        seen[0] += 1

    return collect


def gt_stats(pairs: list[FlowPair]) -> dict[str, float]:
    """Valid fraction and mean / max ground-truth length over the valid pixels of ``pairs``."""
    valid = sum(float(p.valid.sum()) for p in pairs)
    total = sum(p.valid.numel() for p in pairs)
    lengths = [torch.linalg.vector_norm(p.flow, dim=0)[p.valid[0] > 0] for p in pairs]
    lengths = torch.cat(lengths) if lengths else torch.zeros(0)
    return {"valid_fraction": valid / max(total, 1), "mean_gt": float(lengths.mean()) if len(lengths) else 0.0,
            "max_gt": float(lengths.max()) if len(lengths) else 0.0}


def score_real(methods: list[FlowMethod], folders: list[FlowPairFolder], max_pairs: int | None,
               on_pair: Callable[[FlowPair, dict], None]) -> tuple[dict, list[dict]]:
    """Every method on the real pairs of every root, read one pair at a time: ``({method: per-pair
    scores and means over all roots}, [per root: pairs, sizes, ground-truth statistics])``. Pair
    names are prefixed by the root's folder name when there are several roots."""
    pairs_of: dict[str, dict] = {m.name: {} for m in methods}
    roots = []
    for folder in folders:
        count = min(len(folder), max_pairs or len(folder))
        prefix = f"{folder.root.resolve().name}/" if len(folders) > 1 else ""
        info = {"root": str(folder.root), "pairs": [], "sizes": {}, "per_pair": {}}

        def note(pair: FlowPair, flows: dict[str, torch.Tensor], info: dict = info) -> None:
            info["pairs"].append(pair.name)
            info["sizes"][pair.name] = list(pair.flow.shape[-2:])
            info["per_pair"][pair.name] = gt_stats([pair])
            on_pair(pair, flows)

        pairs = (folder[i]._replace(name=prefix + folder.files[i].name) for i in range(count))
        for name, scores in score_pairs(methods, pairs, note, desc=f"real pairs {folder.root}").items():
            pairs_of[name].update(scores["pairs"])
        roots.append(info)
    return {name: summarize_pairs(pairs) for name, pairs in pairs_of.items()}, roots


def score_synthetic(methods: list[FlowMethod], args: argparse.Namespace,
                    on_pair: Callable[[FlowPair, dict], None]) -> dict[str, dict]:
    """Every method on ``--items`` synthetic pairs at each size (the same scenes, seed
    ``20000 + --seed``); ``on_pair`` sees the pairs of the first size."""
    synthetic = {}
    for i, side in enumerate(args.synthetic_sizes):
        config = benchmark_synthetic_config(side, args.images, args.max_motion)
        pairs = list(synthetic_pairs(SyntheticFlowDataset(args.items, config, seed=BENCHMARK_SEED + args.seed)))
        scores = score_pairs(methods, pairs, on_pair if i == 0 else None, desc=f"synthetic {side}")
        synthetic[str(side)] = {"pairs": len(pairs), "max_translation": config.max_translation,
                                "background_translation": config.background_translation, **gt_stats(pairs),
                                "methods": {m: {"epe": s["mean_epe"], "fl_all": s["mean_fl_all"],
                                                "seconds_per_pair": s["seconds_per_pair"]}
                                            for m, s in scores.items()}}
    return synthetic


def run(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    runtime = RuntimeOptions.from_args(args).resolve()
    paths = checkpoint_paths(args)
    roots = args.real_root or [shared_data("flow_gt")]
    folders = [FlowPairFolder(root) for root in roots]  # fails early, with one line, on a bad root
    methods = flow_methods(paths, runtime)
    pictured = {m.name for m in methods if m.info["kind"] != "zero"}  # zero flow is a blank picture
    columns = 2 + len(pictured)
    args.out.mkdir(parents=True, exist_ok=True)
    grids: dict[str, str | None] = {}

    real_tiles: list[torch.Tensor] = []
    real, real_roots = score_real(methods, folders, args.max_real_pairs,
                                  picture_collector(args.grid_real, pictured, real_tiles))
    grids["real"] = str(make_grid_png(real_tiles, args.out / "flow_real_pairs.png", columns)) if real_tiles else None
    synthetic_tiles: list[torch.Tensor] = []
    synthetic = score_synthetic(methods, args, picture_collector(args.grid_rows, pictured, synthetic_tiles))
    grids["synthetic"] = (str(make_grid_png(synthetic_tiles, args.out / "flow_methods.png", columns))
                          if synthetic_tiles else None)
    clips = None
    if args.clip_windows:  # held-out clip windows: photometric error, MotionNet run as on a video
        windows = VideoWindowDataset(args.clips, frames=args.clip_frames, size=args.clip_size, part="val",
                                     windows_per_video=args.clip_windows, seed=args.seed)
        clips = {"windows": len(windows), "methods": score_sequences(
            methods, (windows[i]["frames"] for i in range(len(windows))), desc="clip windows")}

    machine = machine_info(runtime.device)
    return {
        "machine": machine,
        "machine_line": machine_line(machine),
        "settings": {"checkpoints": [str(p) for p in paths], "real_roots": [str(r) for r in roots],
                     "max_real_pairs": args.max_real_pairs, "synthetic_sizes": args.synthetic_sizes,
                     "items": args.items, "max_motion_at_224": args.max_motion, "images": str(args.images),
                     "synthetic_seed": BENCHMARK_SEED + args.seed, "clips": str(args.clips),
                     "clip_windows": args.clip_windows, "clip_frames": args.clip_frames,
                     "clip_size": list(args.clip_size), "amp": runtime.amp,
                     "channels_last": runtime.channels_last, "max_pair_columns": args.max_pair_columns},
        "methods": {m.name: m.info for m in methods},
        "real": {"roots": real_roots, "methods": real},
        "synthetic": synthetic,
        "clips": clips,
        "grids": grids,
        "wall_s": time.perf_counter() - start,
    }


def table(result: dict) -> str:
    """The one table: rows = methods; real-pair EPE columns, their mean, Fl-all, synthetic, clips."""
    real, limit = result["real"], result["settings"]["max_pair_columns"]
    columns: list[tuple[str, Callable[[dict, str], object]]] = []
    for root in real["roots"]:
        if len(root["pairs"]) <= limit:
            columns += [(f"{p} EPE", lambda r, m, p=p: real["methods"][m]["pairs"][p]["epe"]) for p in root["pairs"]]
        else:
            label = f"{Path(root['root']).name} mean EPE ({len(root['pairs'])} pairs)"
            columns.append((label, lambda r, m, ps=root["pairs"]: sum(
                real["methods"][m]["pairs"][p]["epe"] for p in ps) / len(ps)))
    columns += [("real mean EPE", lambda r, m: real["methods"][m]["mean_epe"]),
                ("real mean Fl-all", lambda r, m: real["methods"][m]["mean_fl_all"])]
    for side, part in result["synthetic"].items():
        columns.append((f"synthetic {side}x{side} EPE", lambda r, m, part=part: part["methods"][m]["epe"]))
    if result["clips"]:
        columns.append(("clips photometric L1", lambda r, m: result["clips"]["methods"][m]["photometric_l1"]))
    rows = [[m] + [get(result, m) for _, get in columns] for m in result["methods"]]
    return markdown_table(["method"] + [c for c, _ in columns], rows)


def markdown(result: dict) -> str:
    """The report: machine, what each column is, the table, the pictures."""
    s, real = result["settings"], result["real"]
    lines = [f"# Flow quality ({result['machine_line']})", "",
             f"Wall time {result['wall_s']:.0f} s; MotionNet amp {s['amp']}. Checkpoints: "
             + ", ".join(f"{name} = `{info['checkpoint']}`" for name, info in result["methods"].items()
                         if info["kind"] == "motionnet") + ".", ""]
    for root in real["roots"]:
        stats = root["per_pair"]
        if len(root["pairs"]) <= s["max_pair_columns"]:
            sizes = ", ".join(f"{name} {h}x{w} ({stats[name]['valid_fraction']:.1%} valid, max |GT| "
                              f"{stats[name]['max_gt']:.1f} px)" for name, (h, w) in root["sizes"].items())
        else:
            shapes = sorted({f"{h}x{w}" for h, w in root["sizes"].values()})
            sizes = (f"{len(root['pairs'])} pairs ({', '.join(shapes[:4])}{', ...' if len(shapes) > 4 else ''}), "
                     f"{sum(v['valid_fraction'] for v in stats.values()) / len(stats):.1%} valid on average, "
                     f"max |GT| {max(v['max_gt'] for v in stats.values()):.1f} px")
        lines.append(f"- Real pairs with ground truth, native size, `{root['root']}`: {sizes}.")
    lines.append("  Means are over pairs (each pair counts once); Fl-all = share of valid pixels with EPE > 3 px "
                 "and > 5 % of the true length.")
    for side, part in result["synthetic"].items():
        lines.append(f"- Synthetic {side}x{side}: {part['pairs']} pairs with exact flow (seed {s['synthetic_seed']}), "
                     f"foreground translation <= {part['max_translation']:.1f} px, background <= "
                     f"{part['background_translation']:.1f} px; |GT| mean {part['mean_gt']:.2f}, max "
                     f"{part['max_gt']:.1f} px; {part['valid_fraction']:.1%} valid.")
    if result["clips"]:
        pairs = next(iter(result["clips"]["methods"].values()))["pairs"]
        lines.append(f"- Clips: {result['clips']['windows']} held-out windows of {s['clip_frames']} frames at "
                     f"{s['clip_size'][0]}x{s['clip_size'][1]} ({pairs} pairs), no ground truth: frame t vs "
                     "frame t+1 warped by the flow.")
    lines += ["- MotionNet window models get a pair as [frame1, frame2, frame2, ...] and a clip window as a video.",
              "", table(result), ""]
    grids = [f"{path} ({part})" for part, path in result["grids"].items() if path]
    if grids:
        pictured = [m for m, info in result["methods"].items() if info["kind"] != "zero"]
        lines.append(f"Pictures: {' and '.join(grids)}: frame 1 | ground truth | " + " | ".join(pictured)
                     + "; one colour scale per row (largest valid ground-truth vector), black = no ground truth.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    return run_benchmark("flow_quality", build_parser(), run, markdown, argv)


if __name__ == "__main__":
    run_cli(main)
