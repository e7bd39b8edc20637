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

from hidden2stream.pipeline.evaluate import EvaluateOptions, run
from hidden2stream_experiments.cli import run_cli
from hidden2stream_experiments.parsing import parse_options


def main(argv: list[str] | None = None) -> dict:
    return run(parse_options(EvaluateOptions, argv, __doc__))


if __name__ == "__main__":
    run_cli(main)
