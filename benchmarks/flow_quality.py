"""Flow quality: EPE / Fl-all and warped-frame error of MotionNet vs OpenCV TV-L1, Farneback, DIS.

    python benchmarks/flow_quality.py [--checkpoint runs/motion/checkpoint.pt] [--size 64] [--items 32]
                                      [--train-steps N] [--out benchmarks/results]

* Synthetic windows with exact ground truth (layered affine motion textured with the photos in
  ``--images``), ``frames`` = the checkpoint's T+1, at ``--size`` (default 64, the default
  training size): EPE and Fl-all of every method on the same windows, zero flow as a row.
* Real frame pairs (``--pairs-dir``: name1.png / name2.png) and held-out clip windows (the "val"
  part of ``--clips``): photometric L1 and SSIM between frame t and frame t+1 backward-warped by each
  method's flow. MotionNet gets a pair as a window whose later frames repeat the second frame and
  its first flow is used (as experiments/flow.py does).
* ``flow_methods.png``: per synthetic sample a row frame | ground truth | MotionNet | OpenCV methods,
  every flow on the same colour scale (the largest ground-truth vector shown).

Without a checkpoint it stops with one line, unless ``--train-steps N`` pretrains one briefly into
``--out/motion``. Writes ``flow_quality.json`` and ``flow_quality.md`` to ``--out``.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_image
from tqdm import tqdm

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run from a checkout without install

from benchmarks.common import machine_info, machine_line, write_results
from hidden2stream.cli import OneLineParser, existing_dir, image_size, positive_int, run_cli
from hidden2stream.data.clips import VideoWindowDataset
from hidden2stream.data.synthetic_flow import SyntheticFlowConfig, SyntheticFlowDataset
from hidden2stream.errors import UserError
from hidden2stream.evaluate import evaluate_classic_flow, evaluate_flow, markdown_table
from hidden2stream.flow.classic import CLASSIC_METHODS, classic_flow, classic_flow_sequence
from hidden2stream.flow.metrics import photometric_l1, warped_ssim
from hidden2stream.flow.visualize import flow_to_rgb, make_grid_png
from hidden2stream.models.motionnet import MotionNet
from hidden2stream.paths import shared_data
from hidden2stream.pretrained import load_motionnet
from hidden2stream.train.runtime import Runtime, add_runtime_args, evaluation, runtime_from_args

DEFAULT_CHECKPOINT = Path("runs/motion/checkpoint.pt")


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                   help="pretrain_motion.py or train_two_stream.py checkpoint")
    p.add_argument("--train-steps", type=positive_int,
                   help="no checkpoint: pretrain MotionNet for N steps into --out/motion first")
    p.add_argument("--size", type=image_size, default=(64, 64), help="synthetic and clip size, N or HxW")
    p.add_argument("--items", type=positive_int, default=32, help="synthetic windows")
    p.add_argument("--images", type=existing_dir, default=shared_data("images"), help="photos for the layers")
    p.add_argument("--pairs-dir", type=existing_dir, default=shared_data("frame_pairs"),
                   help="real frame pairs NAME1.png / NAME2.png")
    p.add_argument("--pair-size", type=image_size, help="resize the real pairs to N or HxW (default: native)")
    p.add_argument("--clips", type=existing_dir, default=shared_data("clips"), help="folder of videos")
    p.add_argument("--clip-windows", type=positive_int, default=2, help="held-out windows per video")
    p.add_argument("--grid-rows", type=positive_int, default=4, help="synthetic samples in flow_methods.png")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output folder")
    add_runtime_args(p)
    return p


def checkpoint_path(args: argparse.Namespace) -> Path:
    """The checkpoint to evaluate; with ``--train-steps``, pretrain one when it is absent."""
    if args.checkpoint.is_file():
        return args.checkpoint
    if args.train_steps is None:
        raise UserError(f"no MotionNet checkpoint at {args.checkpoint}: run `python experiments/pretrain_motion.py` "
                        "first, pass --checkpoint PATH, or train briefly with --train-steps N")
    spec = importlib.util.spec_from_file_location("pretrain_motion", REPO / "experiments" / "pretrain_motion.py")
    pretrain = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(pretrain)
    out = args.out / "motion"
    pretrain.main(["--out", str(out), "--steps", str(args.train_steps), "--size", f"{args.size[0]}x{args.size[1]}",
                   "--images", str(args.images), "--device", args.device, "--workers", "0", "--no-tvl1"])
    return out / "checkpoint.pt"


def read_pairs(folder: Path, size: tuple[int, int] | None = None) -> list[tuple[str, torch.Tensor]]:
    """``(name, frames (2, 3, H, W))`` for every ``name1.png`` beside a ``name2.png`` of the same size,
    resized to ``size`` when given."""
    pairs = []
    for first in sorted(folder.glob("*1.png")):
        second = first.with_name(first.name[:-5] + "2.png")
        if not second.is_file():
            continue
        try:
            frames = [decode_image(str(p), mode=ImageReadMode.RGB).float() / 255 for p in (first, second)]
        except RuntimeError as err:
            raise UserError(f"{first} or {second} is not a readable image ({err})") from err
        if frames[0].shape != frames[1].shape:
            raise UserError(f"{first.name} and {second.name} differ in size")
        frames = torch.stack(frames)
        if size is not None:
            frames = F.interpolate(frames, size=size, mode="bilinear", antialias=True).clamp(0.0, 1.0)
        pairs.append((first.name[:-5], frames))
    if not pairs:
        raise UserError(f"no NAME1.png / NAME2.png pair in {folder}")
    return pairs


def motion_flows(model: MotionNet, window: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """MotionNet's full-resolution flows ``(T, 2, H, W)`` of one window ``(T+1, 3, H, W)``."""
    with evaluation(model), runtime.autocast():
        return model(window[None].to(runtime.device), all_scales=False)[0].float().cpu()


def method_flows(method: str, model: MotionNet, window: torch.Tensor, runtime: Runtime) -> torch.Tensor:
    """Flows ``(T, 2, H, W)`` of ``window`` by ``method`` (``motionnet``, ``zero`` or an OpenCV method)."""
    if method == "motionnet":
        return motion_flows(model, window, runtime)
    if method == "zero":
        return torch.zeros(window.shape[0] - 1, 2, *window.shape[-2:])
    return classic_flow_sequence(method, window)


def photometric(model: MotionNet, windows: Iterable[tuple[torch.Tensor, int]], methods: list[str],
                runtime: Runtime) -> dict[str, dict[str, float]]:
    """Mean photometric L1 and SSIM per method over the first ``keep`` pairs of each window."""
    sums = {m: {"photometric_l1": 0.0, "ssim": 0.0} for m in methods}
    pairs = 0
    for window, keep in windows:
        first, second = window[:keep], window[1:keep + 1]
        for method in methods:
            flow = method_flows(method, model, window if method == "motionnet" else window[:keep + 1], runtime)[:keep]
            sums[method]["photometric_l1"] += float(photometric_l1(first, second, flow)) * keep
            sums[method]["ssim"] += float(warped_ssim(first, second, flow)) * keep
        pairs += keep
    return {m: {k: v / pairs for k, v in s.items()} | {"pairs": pairs} for m, s in sums.items()}


def padded_pairs(pairs: list[tuple[str, torch.Tensor]], frames: int) -> Iterator[tuple[torch.Tensor, int]]:
    """Each pair as a ``frames``-frame window repeating its second frame; one flow to keep."""
    for _, pair in pairs:
        yield torch.cat([pair[:1], pair[1:].expand(frames - 1, -1, -1, -1)]), 1


def flow_grid(model: MotionNet, dataset: SyntheticFlowDataset, rows: int, path: Path, runtime: Runtime) -> Path:
    """PNG: per sample frame | ground truth | MotionNet | OpenCV methods, one shared colour scale."""
    items = [dataset[i] for i in range(min(rows, len(dataset)))]
    scale = max(float(torch.linalg.vector_norm(item["flow"][0], dim=0).max()) for item in items)
    tiles = []
    for item in items:
        frames = item["frames"]
        flows = [item["flow"][0], motion_flows(model, frames, runtime)[0]]
        flows += [classic_flow(m, frames[0], frames[1]) for m in CLASSIC_METHODS]
        tiles += [frames[0]] + [flow_to_rgb(f, max(scale, 1e-3)) for f in flows]
    return make_grid_png(tiles, path, ncol=2 + len(CLASSIC_METHODS) + 1)


def run(args: argparse.Namespace) -> dict:
    runtime = runtime_from_args(args)
    path = checkpoint_path(args)
    model = runtime.prepare(load_motionnet(path))
    frames = model.config.frames
    height, width = args.size
    synthetic = SyntheticFlowDataset(args.items, SyntheticFlowConfig(frames=frames, height=height, width=width,
                                                                     image_dir=str(args.images)),
                                     seed=20_000 + args.seed)
    ours = evaluate_flow(model, synthetic, runtime)
    flow_rows = {"motionnet": {"epe": ours["epe"], "fl_all": ours["fl_all"]},
                 "zero": {"epe": ours["zero_epe"], "fl_all": ours["zero_fl_all"]}}
    for method in tqdm(CLASSIC_METHODS, desc="synthetic", disable=None):
        flow_rows[method] = evaluate_classic_flow(method, synthetic)
    methods = ["motionnet", *CLASSIC_METHODS, "zero"]
    pairs = read_pairs(args.pairs_dir, args.pair_size)
    clips = VideoWindowDataset(args.clips, frames=frames, size=args.size, part="val",
                               windows_per_video=args.clip_windows, seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    grid = flow_grid(model, synthetic, args.grid_rows, args.out / "flow_methods.png", runtime)
    return {
        "machine": machine_info(runtime.device),
        "settings": {"checkpoint": str(path), "model": {"frames": frames, "widths": list(model.config.widths)},
                     "size": [height, width], "items": args.items, "images": str(args.images),
                     "pairs_dir": str(args.pairs_dir),
                     "pair_size": list(args.pair_size) if args.pair_size else "native", "clips": str(args.clips),
                     "clip_windows": args.clip_windows, "seed": args.seed, "amp": runtime.amp,
                     "channels_last": runtime.channels_last},
        "synthetic": {"pairs": int(ours["pairs"]), "methods": flow_rows},
        "frame_pairs": {"names": [name for name, _ in pairs],
                        "methods": photometric(model, padded_pairs(pairs, frames), methods, runtime)},
        "clips": {"windows": len(clips),
                  "methods": photometric(model, ((clips[i]["frames"], frames - 1) for i in range(len(clips))),
                                         methods, runtime)},
        "grid": str(grid),
    }


def markdown(result: dict) -> str:
    """The report: EPE / Fl-all on synthetic windows, photometric error on real pairs and clips."""
    s, syn = result["settings"], result["synthetic"]
    lines = [f"# Flow quality ({machine_line(result['machine'])}; checkpoint {s['checkpoint']}, "
             f"T+1 = {s['model']['frames']}, MotionNet amp {s['amp']})", "",
             f"## Synthetic windows with exact flow: {syn['pairs']} pairs at {s['size'][0]}x{s['size'][1]}", "",
             markdown_table(["method", "EPE (px)", "Fl-all"],
                            [[m, r["epe"], r["fl_all"]] for m, r in syn["methods"].items()]), ""]
    for key, title in (("frame_pairs", f"Real frame pairs ({', '.join(result['frame_pairs'].get('names', []))})"),
                       ("clips", f"Held-out clip windows ({result['clips']['windows']})")):
        rows = [[m, r["photometric_l1"], r["ssim"]] for m, r in result[key]["methods"].items()]
        pairs = next(iter(result[key]["methods"].values()))["pairs"]
        lines += [f"## {title}: {pairs} pairs, frame t vs frame t+1 warped by the flow", "",
                  markdown_table(["method", "photometric L1", "SSIM"], rows), ""]
    lines.append(f"Pictures: {result['grid']} (frame | ground truth | MotionNet | TV-L1 | Farneback | DIS)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    result = run(args)
    text = markdown(result)
    print(text)
    write_results(args.out, "flow_quality", result, text)
    return result


if __name__ == "__main__":
    run_cli(main)
