"""Evaluate a saved checkpoint: a hidden two-stream network on an action test set, or a MotionNet's flow.

    python experiments/evaluate.py --checkpoint runs/two_stream/checkpoint.pt          # its own test set
    python experiments/evaluate.py --checkpoint runs/two_stream/checkpoint.pt \\
        --test-windows 25 --test-crops multi --test-flip                               # the paper's protocol
    torchrun --standalone --nproc-per-node 8 experiments/evaluate.py --checkpoint CKPT \\
        --dataset ucf101 --video-root UCF-101 --split-dir ucfTrainTestlist --split 1 \\
        --test-windows 25 --test-crops multi --test-flip
    python experiments/evaluate.py --checkpoint runs/motion/checkpoint.pt              # a MotionNet: flow

A two-stream checkpoint (``train_two_stream.py``) is rebuilt from its model config. Frames,
segments, size, the synthetic classes, the seed and the streams default to the training run's, so
without data options it is scored on the test set its training evaluated on. Under ``torchrun``
every rank scores its share of the videos (each once) and the numbers equal one process's. Test
videos that are unreadable, too short or fail to decode are skipped, never replaced: the report
says how many videos were scored and skipped (``eval.json``: ``videos``, ``skipped``, and why, in
``skipped_videos``). Results go to ``--out`` (default: ``eval_<dataset>_w<windows>_<crops>[_flip]/``
beside the checkpoint): ``eval.json`` (clip and video top-1/top-5 per head, per-class accuracy,
confusion matrices, time), ``eval.md`` (the tables), ``confusion.png`` and ``scores.pt`` (video scores per head).

A MotionNet checkpoint (``pretrain_motion.py``) is scored beside zero flow and OpenCV TV-L1
(``--no-tvl1`` to skip it): EPE / Fl-all on held-out synthetic windows (the pretraining's
held-out set, and photo layers when ``<shared>/data/images`` exists), EPE on the real ground-truth
pairs of ``<shared>/data/flow_gt`` and photometric L1 / SSIM on held-out windows of the clips in
``<shared>/data/clips``. It runs on rank 0 only.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from hidden2stream.cli import OneLineParser, add_quiet_arg, existing_dir, non_negative_int, positive_int, run_cli
from hidden2stream.data.action_sets import (action_test_set, add_action_data_args, protocol_name,
                                            views_per_video)
from hidden2stream.data.clips import VideoWindowDataset
from hidden2stream.data.flow_pairs import iter_flow_pairs
from hidden2stream.data.synthetic_flow import SyntheticFlowConfig, SyntheticFlowDataset
from hidden2stream.errors import CheckpointError
from hidden2stream.evaluate import ActionReport, evaluate_actions, evaluate_classic_flow, evaluate_flow
from hidden2stream.evaluate_flow import (FlowMethod, checkpoint_label, classic_method, motionnet_method,
                                         score_pairs, score_sequences, zero_method)
from hidden2stream.flow.cache import FlowCache
from hidden2stream.paths import shared_data
from hidden2stream.progress import set_quiet
from hidden2stream.models.motionnet import MotionNetConfig
from hidden2stream.models.two_stream import HiddenTwoStreamConfig
from hidden2stream.pretrained import load_motionnet, load_two_stream
from hidden2stream.weights import motion_source, shipped_weights
from hidden2stream.report import action_table, markdown_table, per_class_table, save_confusion_png, video_counts
from hidden2stream.checkpoint import Checkpoint
from hidden2stream.train.distributed import init_distributed, shutdown_distributed
from hidden2stream.runtime import Runtime, add_runtime_args, runtime_from_args

STREAMS = {"both": ("spatial", "temporal"), "spatial": ("spatial",), "temporal": ("temporal",)}
KINDS = ("two_stream", "motionnet")
FLOW_SIZE = (64, 64)  # MotionNet: synthetic and clip windows, as pretrain_motion.py's default


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", required=True,
                   help="train_two_stream.py or pretrain_motion.py checkpoint (or shipped MotionNet weights by name)")
    p.add_argument("--out", type=Path, help="results folder (default: beside the checkpoint)")
    p.add_argument("--seed", type=int, help="test data seed (default: the training run's)")
    add_action_data_args(p, train=False, frames=None, segments=None, size=None, appearances=None, motions=None,
                         test_items=None)
    action = p.add_argument_group("two-stream checkpoints")
    action.add_argument("--streams", choices=sorted(STREAMS), help="default: the streams the checkpoint trained")
    action.add_argument("--batch-size", type=positive_int,
                        help="videos per batch (default: as many as fit in --max-windows)")
    action.add_argument("--max-windows", type=positive_int, default=256, help="windows per forward pass at most")
    action.add_argument("--workers", type=non_negative_int, default=0, help="DataLoader worker processes")
    action.add_argument("--flow-cache", type=Path,
                        help="a two-stage checkpoint (train_two_stream.py --motion tvl1|farneback|dis): the folder "
                             "of its computed flows (default: flow_cache beside the run folder, as in training)")
    flow = p.add_argument_group("MotionNet checkpoints")
    flow.add_argument("--eval-items", type=positive_int, default=32, help="held-out synthetic windows per set")
    flow.add_argument("--real-root", type=existing_dir, help=f"real pairs with ground truth (default: {shared_data('flow_gt')})")
    flow.add_argument("--clips", type=existing_dir, help=f"videos for held-out windows (default: {shared_data('clips')})")
    flow.add_argument("--clip-windows", type=positive_int, help="held-out windows per clip (default: eval-items / 4)")
    flow.add_argument("--images", type=existing_dir, help=f"photos for photo-layer pairs (default: {shared_data('images')})")
    flow.add_argument("--no-tvl1", action="store_true", help="skip the OpenCV TV-L1 rows")
    add_runtime_args(p)
    add_quiet_arg(p)
    return p


def read_checkpoint(text: str) -> tuple[Path, Checkpoint, MotionNetConfig | HiddenTwoStreamConfig]:
    """The checkpoint's path, contents and model config; one line (CheckpointError) when missing,
    unreadable, foreign or of an older format."""
    path = motion_source(text)
    checkpoint = Checkpoint.load(path)
    if checkpoint.kind not in KINDS:
        raise CheckpointError(f"checkpoint {path} holds a {checkpoint.kind!r} model; "
                              f"evaluate.py reads two-stream and MotionNet checkpoints")
    return path, checkpoint, checkpoint.config


def fill_defaults(args: argparse.Namespace, checkpoint: Checkpoint, config: MotionNetConfig | HiddenTwoStreamConfig) -> None:
    """Options left out take the training run's values (the model config and the saved train config)."""
    trained = checkpoint.train_config
    args.seed = trained.get("seed", 0) if args.seed is None else args.seed
    if isinstance(config, MotionNetConfig):
        args.frames, args.size = args.frames or config.frames, args.size or FLOW_SIZE
        return
    args.frames, args.segments = args.frames or config.motion.frames, args.segments or config.segments
    args.size = args.size or config.size
    if args.size is None:
        raise CheckpointError(f"checkpoint {args.checkpoint} does not record its input size: pass --size")
    names = config.class_names
    if all(name.count("/") == 1 for name in names):  # synthetic classes "appearance/motion"
        args.appearances = args.appearances or len(dict.fromkeys(n.split("/")[0] for n in names))
        args.motions = args.motions or len(dict.fromkeys(n.split("/")[1] for n in names))
    args.appearances, args.motions = args.appearances or 3, args.motions or 4
    run = checkpoint.run_options  # what train_two_stream.py saved beside the model
    args.test_items = args.test_items or run.get("test_items", 240)
    if args.streams is None:
        trained_streams = tuple(run.get("streams", STREAMS["both"]))
        args.streams = next(k for k, v in STREAMS.items() if v == trained_streams)


def default_out(args: argparse.Namespace, path: Path) -> Path:
    """--out, else a folder beside the checkpoint named by the test protocol."""
    if args.out is not None:
        return args.out
    if str(args.checkpoint) in shipped_weights():  # not into the installed package
        return Path("runs") / f"eval_{args.checkpoint}"
    if args.kind == "motionnet":
        return path.parent / "eval_flow"
    windows, _ = views_per_video(args)
    return path.parent / f"eval_{args.dataset}_w{windows}_{args.test_crops}{'_flip' if args.test_flip else ''}"


# ---------------------------------------------------------------- two-stream checkpoints


def evaluate_two_stream(args: argparse.Namespace, path: Path, checkpoint: Checkpoint, runtime: Runtime) -> dict:
    """Action accuracy of a two-stream checkpoint on every rank; rank 0 writes and prints."""
    config = checkpoint.config
    flows = None if config.flow == "motionnet" else FlowCache(args.flow_cache or path.parent.parent / "flow_cache",
                                                              config.flow)
    test_set, classes = action_test_set(args, flows)
    trained = config.class_names
    if list(classes) != list(trained):
        raise CheckpointError(f"checkpoint {path} was trained on {len(trained)} classes ({', '.join(trained[:3])}, ...); "
                              f"--dataset {args.dataset} has {len(classes)} classes ({', '.join(classes[:3])}, ...)")
    model = runtime.prepare(load_two_stream(path))
    windows, views = views_per_video(args)
    batch_size = args.batch_size or max(1, args.max_windows // (windows * views))
    report = evaluate_actions(model, test_set, runtime, len(classes), streams=STREAMS[args.streams],
                              batch_size=batch_size, num_workers=args.workers, max_windows=args.max_windows)
    if not runtime.is_main:
        return {}
    return write_action_results(args, path, report, list(classes), runtime)


def write_action_results(args: argparse.Namespace, path: Path, report: ActionReport, classes: list[str],
                         runtime: Runtime) -> dict:
    """eval.json, eval.md, confusion.png and scores.pt in the results folder; the tables printed."""
    out = default_out(args, path)
    out.mkdir(parents=True, exist_ok=True)
    windows, views = views_per_video(args)
    rate = report.videos / max(report.seconds, 1e-9)
    per_head = {head: report.per_class(head) for head in report.video_top1}
    summary = {"checkpoint": str(path), "dataset": args.dataset, "protocol": protocol_name(args),
               "test_windows": windows, "views": views, "streams": args.streams, "classes": classes,
               "device": str(runtime.device), "processes": runtime.world_size, "videos_per_second": rate,
               **report.as_dict(),
               "per_class": {name: {h: v[c] for h, v in per_head.items()} for c, name in enumerate(classes)}}
    text = (f"{path}: {args.dataset} test set, {video_counts(report)}; {protocol_name(args)} = {report.clips} clips, "
            f"{report.seconds:.1f} s ({rate:.1f} videos/s) on {runtime.device} x {runtime.world_size}\n"
            + action_table(report))
    if args.dataset == "synthetic":  # classes are (appearance, motion): which factor each head gets
        factors = {head: report.factor_accuracy(head, args.motions) for head in report.confusions}
        summary["factor_accuracy"] = {h: {"appearance": a, "motion": m} for h, (a, m) in factors.items()}
        text += "\n\n" + markdown_table(["head", "appearance accuracy", "motion accuracy"],
                                        [[h, a, m] for h, (a, m) in factors.items()])
    (out / "eval.json").write_text(json.dumps(summary, indent=2))
    (out / "eval.md").write_text(text + "\n\nVideo top-1 per class\n\n" + per_class_table(report, classes) + "\n")
    save_confusion_png(report.confusion, out / "confusion.png")
    torch.save({"labels": report.labels, "scores": report.scores, "class_names": classes}, out / "scores.pt")
    print(text + f"\nper-class accuracy, confusion matrix and scores in {out}/")
    return summary


# ---------------------------------------------------------------- MotionNet checkpoints


def _optional_dir(given: Path | None, default: Path) -> Path | None:
    return given if given is not None else (default if default.is_dir() else None)


def synthetic_scores(model: torch.nn.Module, name: str, args: argparse.Namespace, runtime: Runtime,
                     image_dir: Path | None) -> dict:
    """EPE / Fl-all on held-out synthetic windows (seed 10000 + seed, as pretraining's held-out set)."""
    height, width = args.size
    config = SyntheticFlowConfig(frames=model.config.frames, height=height, width=width,
                                 image_dir=str(image_dir) if image_dir else None)
    held_out = SyntheticFlowDataset(args.eval_items, config, seed=10_000 + args.seed)
    ours = evaluate_flow(model, held_out, runtime)
    rows = {name: {"epe": ours["epe"], "fl_all": ours["fl_all"]}}
    if not args.no_tvl1:
        rows[classic_method("tvl1").name] = evaluate_classic_flow("tvl1", held_out)
    rows[zero_method().name] = {"epe": ours["zero_epe"], "fl_all": ours["zero_fl_all"]}
    return {"pairs": int(ours["pairs"]), "methods": rows}


def flow_methods_for(model: torch.nn.Module, pair_model: torch.nn.Module, name: str, args: argparse.Namespace,
                     runtime: Runtime) -> tuple[list[FlowMethod], list[FlowMethod]]:
    """(methods for real pairs, methods for clip windows): MotionNet, TV-L1 unless --no-tvl1, zero flow."""
    classic = [] if args.no_tvl1 else [classic_method("tvl1")]
    return ([motionnet_method(pair_model, runtime, name), *classic, zero_method()],
            [motionnet_method(model, runtime, name), *classic, zero_method()])


def evaluate_motionnet(args: argparse.Namespace, path: Path, checkpoint: Checkpoint, runtime: Runtime) -> dict:
    """Flow scores of a MotionNet checkpoint on every set that is there (rank 0 only)."""
    if not runtime.is_main:
        return {}
    model = runtime.prepare(load_motionnet(path, frames=args.frames))
    pair_model = runtime.prepare(load_motionnet(path, frames=2)) if model.config.window_free else model
    name = f"MotionNet {checkpoint_label(path)} (T+1={model.config.frames})"
    report: dict = {"checkpoint": str(path), "kind": "motionnet", "model_config": checkpoint.model_config,
                    "size": list(args.size), "synthetic": synthetic_scores(model, name, args, runtime, None)}
    images = _optional_dir(args.images, shared_data("images"))
    if images is not None:
        report["synthetic_photos"] = synthetic_scores(model, name, args, runtime, images)
    pair_methods, clip_methods = flow_methods_for(model, pair_model, name, args, runtime)
    real_root = _optional_dir(args.real_root, shared_data("flow_gt"))
    if real_root is not None:
        report["real_pairs"] = score_pairs(pair_methods, iter_flow_pairs(real_root), desc="real pairs")
    clips = _optional_dir(args.clips, shared_data("clips"))
    if clips is not None:
        windows = VideoWindowDataset(clips, frames=model.config.frames, size=args.size, part="val", seed=args.seed,
                                     windows_per_video=args.clip_windows or max(1, args.eval_items // 4))
        report["clips"] = score_sequences(clip_methods, (windows[i]["frames"] for i in range(len(windows))),
                                          desc="clip windows")
    return write_flow_results(args, path, report, [m.name for m in pair_methods])


def flow_table(report: dict, methods: list[str]) -> str:
    """One row per method: synthetic EPE / Fl-all, photo layers, real pairs, clip windows."""
    def cell(part: str, method: str, key: str) -> object:
        scores = report.get(part, {})
        scores = scores.get("methods", scores).get(method, {})
        return scores.get(key, "-")

    columns = [("synthetic", "epe", "synthetic EPE"), ("synthetic", "fl_all", "synthetic Fl-all"),
               ("synthetic_photos", "epe", "photo layers EPE"), ("real_pairs", "mean_epe", "real pairs EPE"),
               ("real_pairs", "mean_fl_all", "real pairs Fl-all"), ("clips", "photometric_l1", "clips L1"),
               ("clips", "ssim", "clips SSIM")]
    columns = [c for c in columns if c[0] in report]
    rows = [[m] + [cell(part, m, key) for part, key, _ in columns] for m in methods]
    return markdown_table(["method"] + [title for _, _, title in columns], rows, decimals=4)


def write_flow_results(args: argparse.Namespace, path: Path, report: dict, methods: list[str]) -> dict:
    out = default_out(args, path)
    out.mkdir(parents=True, exist_ok=True)
    text = f"{path}: flow at {args.size[0]}x{args.size[1]} (real pairs at their own size)\n" + flow_table(report, methods)
    if "real_pairs" in report:
        pairs = list(report["real_pairs"][methods[0]]["pairs"])
        rows = [[m] + [report["real_pairs"][m]["pairs"][p]["epe"] for p in pairs] for m in methods]
        text += "\n\nEPE per real pair (px)\n" + markdown_table(["method"] + pairs, rows)
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    (out / "eval.md").write_text(text + "\n")
    print(text + f"\nresults in {out}/")
    return report


def main(argv: list[str] | None = None) -> dict:
    args = build_parser().parse_args(argv)
    set_quiet(args.quiet)
    path, checkpoint, config = read_checkpoint(args.checkpoint)
    args.kind = checkpoint.kind
    fill_defaults(args, checkpoint, config)
    rank, world_size, local_rank = init_distributed()
    try:
        runtime = runtime_from_args(args, rank, world_size, local_rank)
        if args.kind == "motionnet":
            return evaluate_motionnet(args, path, checkpoint, runtime)
        return evaluate_two_stream(args, path, checkpoint, runtime)
    finally:
        shutdown_distributed()


if __name__ == "__main__":
    run_cli(main)
