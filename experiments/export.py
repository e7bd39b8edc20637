"""Export MotionNet and the hidden two-stream network to ONNX, each checked against PyTorch.

    python experiments/export.py --motion tiny --out runs/export                      # random init (testing)
    python experiments/export.py --checkpoint runs/main/two_stream/checkpoint.pt --out runs/export
    python experiments/export.py --checkpoint runs/main/motion/checkpoint.pt --out runs/export

Writes, with a dynamic batch, height and width (``pip install -e ".[export]"`` first):

* ``motionnet_<name>_w2.onnx`` and ``motionnet_<name>_w11.onnx``: frames ``(B, T+1, 3, H, W)`` in
  [0, 1] -> ``flow (B, T, 2, H, W)`` in pixels (the pair model and the paper's 11-frame window
  model; ``--pair-frames`` / ``--window-frames``);
* ``two_stream_<name>.onnx``: frames ``(B, K, T+1, 3, H, W)`` -> ``spatial``, ``temporal`` and
  ``fused`` logits ``(B, classes)``.

Without ``--checkpoint``, random-init models of ``--motion`` size (tiny, paper, corr) are built
(tiny/resnet18 streams with ``--streams auto``). A MotionNet checkpoint (``pretrain_motion.py``
or shipped weights) gives the MotionNets its weights fit; a two-stream checkpoint
(``train_two_stream.py``) gives the network and its MotionNet. Each graph is run by ONNX Runtime
on the same inputs as the PyTorch model (float32): windows from the shared clips (``--clips``; at
``--size`` and, for the dynamic height and width, the smallest clip at its native size), or clips
of the embedded action generator when the folder is absent (a fresh clone). The max absolute
differences are printed and saved to ``export.json``; a difference above the tolerance (flow
1e-3 px, plus the refinement's bound for a refined MotionNet; logits 1e-4) fails the run.
"""
from __future__ import annotations

from hidden2stream.pipeline.export import ExportOptions, run
from hidden2stream_experiments.cli import run_cli
from hidden2stream_experiments.parsing import parse_options


def main(argv: list[str] | None = None) -> dict:
    result = run(parse_options(ExportOptions, argv, __doc__))
    if failed := result["failed"]:  # export.json is written; the run fails: this line, exit status 1
        raise SystemExit("error: ONNX Runtime differs from PyTorch beyond the tolerance: " + "; ".join(failed))
    return result


if __name__ == "__main__":
    run_cli(main)
