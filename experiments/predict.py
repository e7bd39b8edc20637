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

from hidden2stream.pipeline.predict import PredictOptions, run
from hidden2stream_experiments.cli import run_cli
from hidden2stream_experiments.parsing import parse_options


def main(argv: list[str] | None = None) -> list[tuple[str, float]]:
    return run(parse_options(PredictOptions, argv, __doc__))


if __name__ == "__main__":
    run_cli(main)
