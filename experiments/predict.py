"""Predict the action in a video with a trained hidden two-stream checkpoint.

    python experiments/predict.py --checkpoint runs/main/two_stream/checkpoint.pt --video clip.mp4
    python experiments/predict.py ... --write-video clip_flow.mp4      # what the model saw, to watch
    python experiments/predict.py ... --write-video frames_dir/        # the same as PNG frames

Prints the top-5 classes with their scores (the video score averages the softmax of
``--views`` evenly spaced K-segment samples, the fused head when the model has one).
``--write-video`` shows each frame (longer side ``--max-side``, at least 320 px tall) beside the
hidden flow the network classified (computed at the model's input size, then resized), with the
video's top-3 and each window's top-1 written on the frames (see :mod:`hidden2stream.recognize`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from hidden2stream.cli import OneLineParser, add_quiet_arg, existing_path, options_check, positive_int, run_cli
from hidden2stream.errors import CheckpointError
from hidden2stream.pretrained import load_two_stream
from hidden2stream.progress import set_quiet
from hidden2stream.recognize import predict_video, write_prediction_video
from hidden2stream.runtime import add_runtime_args, runtime_from_args
from hidden2stream.video_writer import DEFAULT_MAX_SIDE, check_output


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=existing_path, required=True, help="train_two_stream.py checkpoint")
    p.add_argument("--video", type=existing_path, required=True)
    p.add_argument("--views", type=positive_int, default=3, help="evenly spaced samples averaged")
    p.add_argument("--top", type=positive_int, default=5)
    p.add_argument("--write-video", type=Path, metavar="OUT.mp4",
                   help="an .mp4/.mkv/.mov file, or a folder for PNG frames")
    p.add_argument("--max-frames", type=positive_int, default=150, help="frames in --write-video")
    p.add_argument("--max-side", type=positive_int, default=DEFAULT_MAX_SIDE,
                   help="--write-video: the longer side of a frame at most N px (height at least 320; "
                        "default: %(default)s)")
    p.add_argument("--batch", type=positive_int, default=8, help="--write-video: windows per forward pass")
    add_quiet_arg(p)
    add_runtime_args(p)
    return p


def main(argv: list[str] | None = None) -> list[tuple[str, float]]:
    args = build_parser().parse_args(argv)
    set_quiet(args.quiet)
    if args.write_video:
        options_check("--write-video", check_output, args.write_video)
    runtime = runtime_from_args(args)
    model = load_two_stream(args.checkpoint)
    if model.config.size is None:
        raise CheckpointError(f"{args.checkpoint} does not record the input size it was trained on")
    if model.motionnet is None:
        raise CheckpointError(f"{args.checkpoint} is a two-stage network on precomputed {model.config.flow} flow; "
                              "predict.py runs hidden two-stream (MotionNet) checkpoints")
    model = runtime.prepare(model)
    prediction = predict_video(model, args.video, args.views, runtime)
    ranked = prediction.top(args.top)
    print(f"{args.video.name}: top-{len(ranked)} ({prediction.head} head, {args.views} views)")
    for name, score in ranked:
        print(f"  {score:6.3f}  {name}")
    if args.write_video:
        count = write_prediction_video(model, args.video, args.write_video, prediction, runtime,
                                       args.max_frames, args.max_side, args.batch)
        print(f"wrote {count} frames with their hidden flow to {args.write_video}")
    return ranked


if __name__ == "__main__":
    run_cli(main)
