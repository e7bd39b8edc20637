"""Run a trained MotionNet on a video or a frame pair; write ``.flo`` files and PNG pictures.

    python experiments/flow.py --pair a.png b.png --out flow/          # the shipped weights
    python experiments/flow.py --video clip.mp4 --out flow/
    python experiments/flow.py --video long.mp4 --max-side 480 --stride 2 --batch 16 --out flow/
    python experiments/flow.py --video clip.mp4 --write-video clip_flow.mp4   # frame | flow, to watch
    python experiments/flow.py --checkpoint runs/motion/checkpoint.pt --video clip.mp4 --out flow/

``flow_00012.flo`` (and ``.png``) is the forward flow from frame 12 to frame 12 + ``--stride``
(pixels, channel 0 = x). The model runs at a working size (``--size HxW``, or the native size with
its longer side capped by ``--max-side``); every ``.flo`` is rescaled to the source's native size
and pixels (see :mod:`hidden2stream.pipeline.flow`). A video is cut into windows of T+1 sampled
frames that share their end frames, ``--batch`` windows per forward pass. Without
``--checkpoint`` the shipped weights (``--weights default``) are used; they serve any window
length, so a pair runs through a 2-frame model and a video through 11-frame windows. A
checkpoint whose weights fit only its own window length gets a pair as a window whose later
frames repeat the second frame; its first flow is written.
"""
from __future__ import annotations

from hidden2stream.pipeline.flow import FlowOptions, run
from hidden2stream_experiments.cli import run_cli
from hidden2stream_experiments.parsing import parse_options


def main(argv: list[str] | None = None) -> int:
    return run(parse_options(FlowOptions, argv, __doc__))


if __name__ == "__main__":
    run_cli(main)
