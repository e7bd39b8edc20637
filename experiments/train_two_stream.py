"""Train the hidden two-stream network end to end: no precomputed flow, MotionNet inside.

    python experiments/train_two_stream.py --motion-checkpoint runs/motion/checkpoint.pt
    python experiments/train_two_stream.py --streams spatial --out runs/spatial      # one stream alone
    python experiments/train_two_stream.py --spatial-arch r2plus1d_18 --spatial-weights r2plus1d_18.pth \
        --temporal-arch i3d_resnet18 --temporal-weights resnet18.pth     # 3D streams on clips / flow clips
    python experiments/train_two_stream.py --dataset ucf101 --video-root UCF-101 \
        --split-dir ucfTrainTestlist --split 1 --spatial-arch resnet50 --temporal-arch resnet50 \
        --spatial-weights imagenet --size 224 --frames 11 --optimizer sgd --lr 1e-3 --motion-lr 1e-6
    python experiments/train_two_stream.py --motion tvl1 --flow-cache runs/flow_cache  # two-stage baseline

With ``--motion tvl1|farneback|dis`` the temporal stream trains on classical flow instead of
MotionNet's: the paper's two-stage baseline. The flow is computed once per video (or synthetic
clip) into ``--flow-cache`` and reused by later epochs and runs; its size on disk ends the report.

The loss is the paper's multi-task loss: cross-entropy on every trained head (spatial, temporal,
fused) plus the unsupervised motion losses on MotionNet's pyramid (SSIM weights ten times smaller
than in pretraining). CPU defaults: embedded synthetic action data, tiny streams, 64x64,
T+1 = 6 frames (paper: 11), AdamW at 1e-3 (paper: SGD at 1e-3, MotionNet at 1e-6).
The stage itself lives in :mod:`hidden2stream.pipeline.two_stream`.
"""
from __future__ import annotations

from hidden2stream.pipeline.two_stream import TwoStreamOptions, run
from hidden2stream_experiments.cli import run_cli
from hidden2stream_experiments.parsing import parse_options


def main(argv: list[str] | None = None) -> dict:
    result = run(parse_options(TwoStreamOptions, argv, __doc__))
    if result.text:
        print(result.text)
    return result.summary


if __name__ == "__main__":
    run_cli(main)
