"""Does the hidden stream see real motion? Playback speed and direction on real footage, per stream.

    python benchmarks/real_motion.py                          # leave-one-video-out over ../shared/data/clips
    python benchmarks/real_motion.py --train DIR --test DIR   # train once on DIR's videos, score TEST's
    python benchmarks/real_motion.py --json results.json --steps 400 --size 112

Windows of real videos are labelled by how they are played (:mod:`hidden2stream.data.playback`:
frame stride 1 / 2 / 4, forwards or backwards; 6 classes, one frame cannot tell them apart). On the
same windows, two runs of the two-stream training per fold: ``--streams both`` with the hidden stream
(stacked, the shipped MotionNet, trained end to end) gives the spatial stream, the hidden stream and
their fusion; ``--streams temporal --motion dis`` the two-stage baseline, a temporal stream on OpenCV
DIS flow of the same frames, extracted once into a disk cache. Scored on test videos only (never
trained on): accuracy of speed (chance 1/3), direction (1/2) and both (1/6), from the confusion
matrices summed over the folds. Folders are searched recursively (class subfolders are ignored).
Writes ``real_motion.json`` (``streams.<spatial|hidden|dis|fused>.<speed|direction|both>``) and
``real_motion.md`` to ``--out``; ``--json`` writes the JSON there too.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

import torch

from benchmarks.common import machine_info, machine_line, publish, two_stream_run
from hidden2stream.options import existing_dir, frame_count, positive_int
from hidden2stream_experiments.cli import OneLineParser, run_cli
from hidden2stream_experiments.parsing import argparse_type
from hidden2stream.data.playback import DIRECTIONS, PLAYBACK_CLASSES, check_disjoint, find_videos
from hidden2stream.data.probe import probe_videos
from hidden2stream.errors import UserError, VideoError
from hidden2stream.evaluation.actions import factor_accuracy
from hidden2stream.paths import shared_data
from hidden2stream.progress import set_quiet, stage
from hidden2stream.evaluation.report import markdown_table

#: stream name -> (the run that trains it, the head it is scored on)
STREAMS = {"spatial": ("hidden", "spatial"), "hidden": ("hidden", "temporal"), "dis": ("dis", "temporal"),
           "fused": ("hidden", "fused")}
RUNS = {"hidden": dict(streams="both", motion="corr", motion_checkpoint="default"),
        "dis": dict(streams="temporal", motion="dis")}
CHANCE = {"speed": 1 / 3, "direction": 1 / 2, "both": 1 / len(PLAYBACK_CLASSES)}


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--train", type=argparse_type(existing_dir), help="training videos (with --test)")
    p.add_argument("--test", type=argparse_type(existing_dir), help="test videos, none of them in --train")
    p.add_argument("--clips", type=Path, help="without --train/--test: leave-one-video-out over these videos "
                                              "(default: the shared clips)")
    p.add_argument("--steps", type=argparse_type(positive_int), default=200, help="training steps per run")
    p.add_argument("--batch-size", type=argparse_type(positive_int), default=8)
    p.add_argument("--size", type=argparse_type(positive_int), default=64, help="square crop size")
    p.add_argument("--frames", type=argparse_type(frame_count), default=6, help="T+1 frames per window")
    p.add_argument("--test-windows", type=argparse_type(positive_int), default=4, help="test windows per video and class")
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes of each run")
    p.add_argument("--refinement", choices=["auto", "none", "lk"], default="auto",
                   help="the hidden stream's Lucas-Kanade step (auto: as the shipped weights say, i.e. on)")
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/real_motion"))
    p.add_argument("--json", type=Path, help="also write the results JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress lines from the training runs")
    return p


def folds(args: argparse.Namespace) -> list[tuple[str, Path, Path]]:
    """``(name, train folder, test folder)`` per fold: the given pair, or one fold per readable video
    of ``--clips`` (folders of links under ``--out/folds``)."""
    if (args.train is None) != (args.test is None):
        raise UserError("give both --train and --test, or neither (leave-one-video-out over --clips)")
    if args.train is not None:
        check_disjoint(find_videos(args.train), find_videos(args.test))
        return [("given", args.train, args.test)]
    clips = args.clips or shared_data("clips")
    if not clips.is_dir():
        raise UserError(f"no clips in {clips}: pass --clips DIR, or --train and --test (or set H2S_SHARED)")
    found = find_videos(clips)
    videos = [v for v, info in zip(found, probe_videos(found)) if not isinstance(info, VideoError)]
    if len(videos) < 2:
        raise UserError(f"leave-one-video-out needs at least 2 readable videos in {clips}, found {len(videos)}")
    result = []
    for held_out in videos:
        root = args.out / "folds" / held_out.stem
        for part, members in (("train", [v for v in videos if v != held_out]), ("test", [held_out])):
            (root / part).mkdir(parents=True, exist_ok=True)
            for video in members:
                link = root / part / video.name
                if not link.is_symlink():
                    os.symlink(video.resolve(), link)
        result.append((held_out.name, root / "train", root / "test"))
    return result


def train_fold(args: argparse.Namespace, fold: tuple[str, Path, Path], run: str) -> dict:
    """One training run of a fold (kept: a finished run is read back), its eval.json."""
    name, train, test = fold
    return two_stream_run(
        args.out / "runs" / name / run, dataset="playback", video_root=train, test_root=test, steps=args.steps,
        batch_size=args.batch_size, size=(args.size, args.size), frames=args.frames, segments=1,
        test_windows=args.test_windows, warmup=min(50, args.steps // 10), frame_cache=args.out / "frame_cache",
        flow_cache=args.out / "flow_cache", log_images_every=0, checkpoint_every=max(args.steps // 2, 1),
        workers=args.workers, refinement=args.refinement, **RUNS[run])


def factor_scores(confusion: torch.Tensor) -> dict[str, float]:
    """Speed, direction and both accuracy from a playback confusion matrix (rows true, cols predicted)."""
    speed, direction = factor_accuracy(confusion, len(DIRECTIONS))
    return {"speed": speed, "direction": direction,
            "both": float(confusion.diagonal().sum() / confusion.sum().clamp(min=1))}


def run(args: argparse.Namespace) -> dict:
    summaries: dict[str, list[dict]] = {run_name: [] for run_name in RUNS}
    fold_list = folds(args)
    for i, fold in enumerate(fold_list, 1):
        for run_name in RUNS:
            stage(f"fold {i}/{len(fold_list)} (test: {fold[0]}), {run_name} run")
            summaries[run_name].append(train_fold(args, fold, run_name))
    streams = {}
    for name, (run_name, head) in STREAMS.items():
        runs = summaries[run_name]
        confusion = sum(torch.tensor(s["confusions"][head], dtype=torch.float64) for s in runs)
        seconds = sum(s["train_seconds"] for s in runs)
        streams[name] = {**factor_scores(confusion), "test_items": int(confusion.sum()),
                         "train_minutes": seconds / 60,
                         "train_windows_per_s": len(runs) * args.steps * args.batch_size / max(seconds, 1e-9)}
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    flow_cache = summaries["dis"][-1].get("flow_cache")
    return {"machine": machine_info(), "settings": settings, "folds": [f[0] for f in fold_list],
            "chance": CHANCE, "streams": streams, "flow_cache": flow_cache}


def markdown(result: dict) -> str:
    s, chance = result["settings"], result["chance"]
    rows = [[name, r["speed"], r["direction"], r["both"], r["test_items"], r["train_minutes"],
             r["train_windows_per_s"]] for name, r in result["streams"].items()]
    rows.append(["chance", chance["speed"], chance["direction"], chance["both"], "", "", ""])
    protocol = ("leave-one-video-out over " + ", ".join(result["folds"]) if len(result["folds"]) > 1
                else f"trained on {s['train']}, tested on {s['test']}")
    return (f"# Playback speed and direction on real footage, per stream ({machine_line(result['machine'])})\n\n"
            f"{protocol}; {s['steps']} steps x batch {s['batch_size']} per run, {s['size']}x{s['size']}, "
            f"{s['frames']} frames, {s['test_windows']} test windows per video and class; test videos only. "
            f"spatial / hidden / fused: one end-to-end run (shipped MotionNet, stacked, --refinement "
            f"{s['refinement']}); dis: a temporal stream on cached OpenCV DIS flow.\n\n"
            + markdown_table(["stream", "speed", "direction", "both", "test items", "train min (all folds)",
                              "train windows/s"], rows))


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    set_quiet(args.quiet)
    result = run(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return publish(args.out, "real_motion", result, markdown(result))


if __name__ == "__main__":
    run_cli(main)
