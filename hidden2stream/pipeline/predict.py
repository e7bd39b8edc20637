"""Recognise the action in one video with a trained hidden two-stream checkpoint; optionally write the video
with its hidden flow and the predictions (the job behind ``experiments/predict.py``: :class:`PredictOptions`
-> :func:`run`; the work itself is :mod:`hidden2stream.recognize`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hidden2stream.errors import CheckpointError
from hidden2stream.options import existing_path, option, options_check, positive_int
from hidden2stream.pretrained import load_two_stream
from hidden2stream.recognize import predict_video, write_prediction_video
from hidden2stream.runtime import RuntimeOptions
from hidden2stream.video_writer import DEFAULT_MAX_SIDE, check_output


@dataclass(frozen=True)
class PredictOptions(RuntimeOptions):
    """The options of ``predict.py``."""

    checkpoint: Path = option(None, "train_two_stream.py checkpoint", parse=existing_path, required=True)
    video: Path = option(None, parse=existing_path, required=True)
    views: int = option(3, "evenly spaced samples averaged", parse=positive_int)
    top: int = option(5, parse=positive_int)
    write_video: Path | None = option(None, "an .mp4/.mkv/.mov file, or a folder for PNG frames", parse=Path,
                                      metavar="OUT.mp4")
    max_frames: int = option(150, "frames in --write-video", parse=positive_int)
    max_side: int = option(DEFAULT_MAX_SIDE, "--write-video: the longer side of a frame at most N px (height at least "
                           f"320; default: {DEFAULT_MAX_SIDE})", parse=positive_int)
    batch: int = option(8, "--write-video: windows per forward pass", parse=positive_int)


def run(options: PredictOptions) -> list[tuple[str, float]]:
    """Print (and return) the video's top classes with their scores; write the prediction video if asked."""
    if options.write_video:
        options_check("--write-video", check_output, options.write_video)
    runtime = options.resolve()
    model = load_two_stream(options.checkpoint)
    if model.config.size is None:
        raise CheckpointError(f"{options.checkpoint} does not record the input size it was trained on")
    if model.motionnet is None:
        raise CheckpointError(f"{options.checkpoint} is a two-stage network on precomputed {model.config.flow} flow; "
                              "predict.py runs hidden two-stream (MotionNet) checkpoints")
    model = runtime.prepare(model)
    prediction = predict_video(model, options.video, options.views, runtime)
    ranked = prediction.top(options.top)
    print(f"{options.video.name}: top-{len(ranked)} ({prediction.head} head, {options.views} views)")
    for name, score in ranked:
        print(f"  {score:6.3f}  {name}")
    if options.write_video:
        count = write_prediction_video(model, options.video, options.write_video, prediction, runtime,
                                       options.max_frames, options.max_side, options.batch)
        print(f"wrote {count} frames with their hidden flow to {options.write_video}")
    return ranked
