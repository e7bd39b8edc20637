"""Evaluate a saved checkpoint: a hidden two-stream network on an action test set, or a MotionNet's flow.

The job behind ``experiments/evaluate.py`` (:class:`EvaluateOptions` -> :func:`run`). A two-stream
checkpoint is rebuilt from its model config; options left out take the training run's values (frames,
segments, size, the synthetic classes, the seed, the streams), so without data options it is scored on
the test set its training evaluated on. Under ``torchrun`` every rank scores its share of the videos.
A MotionNet checkpoint is scored beside zero flow and OpenCV TV-L1 on rank 0.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from hidden2stream.checkpoint import Checkpoint
from hidden2stream.data.action_sets import (ActionDataOptions, action_test_set, class_factors, protocol_name,
                                            views_per_video)
from hidden2stream.data.clips import VideoWindowDataset
from hidden2stream.data.flow_cache import FlowCache
from hidden2stream.data.flow_pairs import iter_flow_pairs
from hidden2stream.data.synthetic_flow import SyntheticFlowConfig, SyntheticFlowDataset
from hidden2stream.errors import CheckpointError
from hidden2stream.evaluation.actions import ActionReport, evaluate_actions
from hidden2stream.evaluation.flow import (FlowMethod, checkpoint_label, classic_method, evaluate_classic_flow,
                                           evaluate_flow, motionnet_method, score_pairs, score_sequences, zero_method)
from hidden2stream.evaluation.report import (action_table, factor_summary, markdown_table, per_class_table,
                                             save_confusion_png, video_counts)
from hidden2stream.models.motionnet import MotionNetConfig
from hidden2stream.options import existing_dir, non_negative_int, option, override, positive_int
from hidden2stream.paths import shared_data
from hidden2stream.pipeline.two_stream import STREAM_CHOICES
from hidden2stream.pretrained import load_motionnet, load_two_stream
from hidden2stream.runtime import Runtime, RuntimeOptions
from hidden2stream.train.distributed import init_distributed, shutdown_distributed
from hidden2stream.weights import motion_source, shipped_weights

KINDS = ("two_stream", "motionnet")
FLOW_SIZE = (64, 64)  # MotionNet: synthetic and clip windows, as pretrain_motion.py's default
TWO_STREAM, MOTIONNET = "two-stream checkpoints", "MotionNet checkpoints"


@dataclass(frozen=True)
class EvaluateOptions(ActionDataOptions, RuntimeOptions):
    """The options of ``evaluate.py``; the data options left None take the checkpoint's values (:func:`run`)."""

    checkpoint: str = option(None, "train_two_stream.py or pretrain_motion.py checkpoint (or shipped MotionNet "
                             "weights by name)", required=True)
    out: Path | None = option(None, "results folder (default: beside the checkpoint)", parse=Path)
    seed: int | None = option(None, "test data seed (default: the training run's)", parse=int)
    appearances: int | None = override(ActionDataOptions, "appearances", None)
    motions: int | None = override(ActionDataOptions, "motions", None)
    test_items: int | None = override(ActionDataOptions, "test_items", None)
    frames: int | None = override(ActionDataOptions, "frames", None)
    segments: int | None = override(ActionDataOptions, "segments", None)
    size: tuple[int, int] | None = override(ActionDataOptions, "size", None)
    streams: str | None = option(None, "default: the streams the checkpoint trained", choices=tuple(sorted(STREAM_CHOICES)),
                                 group=TWO_STREAM)
    batch_size: int | None = option(None, "videos per batch (default: as many as fit in --max-windows)",
                                    parse=positive_int, group=TWO_STREAM)
    max_windows: int = option(256, "windows per forward pass at most", parse=positive_int, group=TWO_STREAM)
    workers: int = option(0, "DataLoader worker processes", parse=non_negative_int, group=TWO_STREAM)
    flow_cache: Path | None = option(None, "a two-stage checkpoint (train_two_stream.py --motion tvl1|farneback|dis): "
                                     "the folder of its computed flows (default: flow_cache beside the run folder, "
                                     "as in training)", parse=Path, group=TWO_STREAM)
    eval_items: int = option(32, "held-out synthetic windows per set", parse=positive_int, group=MOTIONNET)
    real_root: Path | None = option(None, f"real pairs with ground truth (default: {shared_data('flow_gt')})",
                                    parse=existing_dir, group=MOTIONNET)
    clips: Path | None = option(None, f"videos for held-out windows (default: {shared_data('clips')})",
                                parse=existing_dir, group=MOTIONNET)
    clip_windows: int | None = option(None, "held-out windows per clip (default: eval-items / 4)", parse=positive_int,
                                      group=MOTIONNET)
    images: Path | None = option(None, f"photos for photo-layer pairs (default: {shared_data('images')})",
                                 parse=existing_dir, group=MOTIONNET)
    no_tvl1: bool = option(False, "skip the OpenCV TV-L1 rows", group=MOTIONNET)


def run(options: EvaluateOptions) -> dict:
    """Score the checkpoint (every rank for a two-stream network, rank 0 for a MotionNet); rank 0 writes,
    prints and returns the report."""
    path, checkpoint = read_checkpoint(options.checkpoint)
    options = with_training_defaults(options, checkpoint)
    rank, world_size, local_rank = init_distributed()
    try:
        runtime = options.resolve(rank, world_size, local_rank)
        if checkpoint.kind == "motionnet":
            return evaluate_motionnet(options, path, checkpoint, runtime)
        return evaluate_two_stream(options, path, checkpoint, runtime)
    finally:
        shutdown_distributed()


def read_checkpoint(text: str) -> tuple[Path, Checkpoint]:
    """The checkpoint's path and record; one line (CheckpointError) when missing, unreadable, foreign or of
    an older format."""
    path = motion_source(text)
    checkpoint = Checkpoint.load(path)
    if checkpoint.kind not in KINDS:
        raise CheckpointError(f"checkpoint {path} holds a {checkpoint.kind!r} model; "
                              f"evaluate.py reads two-stream and MotionNet checkpoints")
    return path, checkpoint


def with_training_defaults(options: EvaluateOptions, checkpoint: Checkpoint) -> EvaluateOptions:
    """The options with those left out set to the training run's values (model config, train config)."""
    config = checkpoint.config
    seed = checkpoint.train_config.get("seed", 0) if options.seed is None else options.seed
    if isinstance(config, MotionNetConfig):
        return options.replace(seed=seed, frames=options.frames or config.frames, size=options.size or FLOW_SIZE)
    size = options.size or config.size
    if size is None:
        raise CheckpointError(f"checkpoint {options.checkpoint} does not record its input size: pass --size")
    appearances, motions, names = options.appearances, options.motions, config.class_names
    if all(name.count("/") == 1 for name in names):  # synthetic classes "appearance/motion"
        appearances = appearances or len(dict.fromkeys(n.split("/")[0] for n in names))
        motions = motions or len(dict.fromkeys(n.split("/")[1] for n in names))
    run_options = checkpoint.run_options  # what train_two_stream.py saved beside the model
    streams = options.streams
    if streams is None:
        trained_streams = tuple(run_options.get("streams", STREAM_CHOICES["both"]))
        streams = next(k for k, v in STREAM_CHOICES.items() if v == trained_streams)
    return options.replace(seed=seed, frames=options.frames or config.motion.frames,
                           segments=options.segments or config.segments, size=size, appearances=appearances or 3,
                           motions=motions or 4, test_items=options.test_items or run_options.get("test_items", 240),
                           streams=streams)


def default_out(options: EvaluateOptions, path: Path, kind: str) -> Path:
    """--out, else a folder beside the checkpoint named by the test protocol."""
    if options.out is not None:
        return options.out
    if str(options.checkpoint) in shipped_weights():  # not into the installed package
        return Path("runs") / f"eval_{options.checkpoint}"
    if kind == "motionnet":
        return path.parent / "eval_flow"
    windows, _ = views_per_video(options)
    return path.parent / f"eval_{options.dataset}_w{windows}_{options.test_crops}{'_flip' if options.test_flip else ''}"


# ---------------------------------------------------------------- two-stream checkpoints


def evaluate_two_stream(options: EvaluateOptions, path: Path, checkpoint: Checkpoint, runtime: Runtime) -> dict:
    """Action accuracy of a two-stream checkpoint on every rank; rank 0 writes and prints."""
    config = checkpoint.config
    flows = None if config.flow == "motionnet" else FlowCache(options.flow_cache or path.parent.parent / "flow_cache",
                                                              config.flow)
    test_set, classes = action_test_set(options, options.seed, flows)
    trained = config.class_names
    if list(classes) != list(trained):
        raise CheckpointError(f"checkpoint {path} was trained on {len(trained)} classes ({', '.join(trained[:3])}, ...); "
                              f"--dataset {options.dataset} has {len(classes)} classes ({', '.join(classes[:3])}, ...)")
    model = runtime.prepare(load_two_stream(path))
    windows, views = views_per_video(options)
    batch_size = options.batch_size or max(1, options.max_windows // (windows * views))
    report = evaluate_actions(model, test_set, runtime, len(classes), streams=STREAM_CHOICES[options.streams],
                              batch_size=batch_size, num_workers=options.workers, max_windows=options.max_windows)
    if not runtime.is_main:
        return {}
    return write_action_results(options, path, report, list(classes), runtime)


def write_action_results(options: EvaluateOptions, path: Path, report: ActionReport, classes: list[str],
                         runtime: Runtime) -> dict:
    """eval.json, eval.md, confusion.png and scores.pt in the results folder; the tables printed."""
    out = default_out(options, path, "two_stream")
    out.mkdir(parents=True, exist_ok=True)
    windows, views = views_per_video(options)
    rate = report.videos / max(report.seconds, 1e-9)
    per_head = {head: report.per_class(head) for head in report.video_top1}
    summary = {"checkpoint": str(path), "dataset": options.dataset, "protocol": protocol_name(options),
               "test_windows": windows, "views": views, "streams": options.streams, "classes": classes,
               "device": str(runtime.device), "processes": runtime.world_size, "videos_per_second": rate,
               **report.as_dict(),
               "per_class": {name: {h: v[c] for h, v in per_head.items()} for c, name in enumerate(classes)}}
    text = (f"{path}: {options.dataset} test set, {video_counts(report)}; {protocol_name(options)} = {report.clips} clips, "
            f"{report.seconds:.1f} s ({rate:.1f} videos/s) on {runtime.device} x {runtime.world_size}\n"
            + action_table(report))
    factors = class_factors(options)
    if factors is not None:  # two-factor classes: which factor each head gets
        summary["factor_accuracy"], table = factor_summary(report, *factors)
        text += "\n\n" + table
    (out / "eval.json").write_text(json.dumps(summary, indent=2))
    (out / "eval.md").write_text(text + "\n\nVideo top-1 per class\n\n" + per_class_table(report, classes) + "\n")
    save_confusion_png(report.confusion, out / "confusion.png")
    torch.save({"labels": report.labels, "scores": report.scores, "class_names": classes}, out / "scores.pt")
    print(text + f"\nper-class accuracy, confusion matrix and scores in {out}/")
    return summary


# ---------------------------------------------------------------- MotionNet checkpoints


def _optional_dir(given: Path | None, default: Path) -> Path | None:
    return given if given is not None else (default if default.is_dir() else None)


def synthetic_scores(model: torch.nn.Module, name: str, options: EvaluateOptions, runtime: Runtime,
                     image_dir: Path | None) -> dict:
    """EPE / Fl-all on held-out synthetic windows (seed 10000 + seed, as pretraining's held-out set)."""
    height, width = options.size
    config = SyntheticFlowConfig(frames=model.config.frames, height=height, width=width,
                                 image_dir=str(image_dir) if image_dir else None)
    held_out = SyntheticFlowDataset(options.eval_items, config, seed=10_000 + options.seed)
    ours = evaluate_flow(model, held_out, runtime)
    rows = {name: {"epe": ours["epe"], "fl_all": ours["fl_all"]}}
    if not options.no_tvl1:
        rows[classic_method("tvl1").name] = evaluate_classic_flow("tvl1", held_out)
    rows[zero_method().name] = {"epe": ours["zero_epe"], "fl_all": ours["zero_fl_all"]}
    return {"pairs": int(ours["pairs"]), "methods": rows}


def flow_methods_for(model: torch.nn.Module, pair_model: torch.nn.Module, name: str, options: EvaluateOptions,
                     runtime: Runtime) -> tuple[list[FlowMethod], list[FlowMethod]]:
    """(methods for real pairs, methods for clip windows): MotionNet, TV-L1 unless --no-tvl1, zero flow."""
    classic = [] if options.no_tvl1 else [classic_method("tvl1")]
    return ([motionnet_method(pair_model, runtime, name), *classic, zero_method()],
            [motionnet_method(model, runtime, name), *classic, zero_method()])


def evaluate_motionnet(options: EvaluateOptions, path: Path, checkpoint: Checkpoint, runtime: Runtime) -> dict:
    """Flow scores of a MotionNet checkpoint on every set that is there (rank 0 only)."""
    if not runtime.is_main:
        return {}
    model = runtime.prepare(load_motionnet(path, frames=options.frames))
    pair_model = runtime.prepare(load_motionnet(path, frames=2)) if model.config.window_free else model
    name = f"MotionNet {checkpoint_label(path)} (T+1={model.config.frames})"
    report: dict = {"checkpoint": str(path), "kind": "motionnet", "model_config": checkpoint.model_config,
                    "size": list(options.size), "synthetic": synthetic_scores(model, name, options, runtime, None)}
    images = _optional_dir(options.images, shared_data("images"))
    if images is not None:
        report["synthetic_photos"] = synthetic_scores(model, name, options, runtime, images)
    pair_methods, clip_methods = flow_methods_for(model, pair_model, name, options, runtime)
    real_root = _optional_dir(options.real_root, shared_data("flow_gt"))
    if real_root is not None:
        report["real_pairs"] = score_pairs(pair_methods, iter_flow_pairs(real_root), desc="real pairs")
    clips = _optional_dir(options.clips, shared_data("clips"))
    if clips is not None:
        windows = VideoWindowDataset(clips, frames=model.config.frames, size=options.size, part="val", seed=options.seed,
                                     windows_per_video=options.clip_windows or max(1, options.eval_items // 4))
        report["clips"] = score_sequences(clip_methods, (windows[i]["frames"] for i in range(len(windows))),
                                          desc="clip windows")
    return write_flow_results(options, path, report, [m.name for m in pair_methods])


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


def write_flow_results(options: EvaluateOptions, path: Path, report: dict, methods: list[str]) -> dict:
    out = default_out(options, path, "motionnet")
    out.mkdir(parents=True, exist_ok=True)
    text = f"{path}: flow at {options.size[0]}x{options.size[1]} (real pairs at their own size)\n" + flow_table(report, methods)
    if "real_pairs" in report:
        pairs = list(report["real_pairs"][methods[0]]["pairs"])
        rows = [[m] + [report["real_pairs"][m]["pairs"][p]["epe"] for p in pairs] for m in methods]
        text += "\n\nEPE per real pair (px)\n" + markdown_table(["method"] + pairs, rows)
    (out / "eval.json").write_text(json.dumps(report, indent=2))
    (out / "eval.md").write_text(text + "\n")
    print(text + f"\nresults in {out}/")
    return report
