"""Run a trained MotionNet on a video or a frame pair; write ``.flo`` files and PNG pictures.

    python experiments/flow.py --pair a.png b.png --out flow/          # the shipped weights
    python experiments/flow.py --video clip.mp4 --out flow/
    python experiments/flow.py --video long.mp4 --max-side 480 --stride 2 --batch 16 --out flow/
    python experiments/flow.py --video clip.mp4 --write-video clip_flow.mp4   # frame | flow, to watch
    python experiments/flow.py --checkpoint runs/motion/checkpoint.pt --video clip.mp4 --out flow/

``flow_00012.flo`` (and ``.png``) is the forward flow from frame 12 to frame 12 + ``--stride``
(pixels, channel 0 = x). The model runs at a working size (``--size HxW``, or the native size with
its longer side capped by ``--max-side``); every ``.flo`` is rescaled to the source's native size
and pixels (see :mod:`hidden2stream.flow.runner`). A video is cut into windows of T+1 sampled
frames that share their end frames, ``--batch`` windows per forward pass. Without
``--checkpoint`` the shipped weights (``--weights default``) are used; they serve any window
length, so a pair runs through a 2-frame model and a video through 11-frame windows. A
checkpoint whose weights fit only its own window length gets a pair as a window whose later
frames repeat the second frame; its first flow is written.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from hidden2stream.cli import (OneLineParser, add_quiet_arg, existing_path, image_size, options_check,
                               positive_int, run_cli)
from hidden2stream.errors import UserError
from hidden2stream.flow.runner import write_pair_flow, write_video_flows
from hidden2stream.pretrained import load_flow_model
from hidden2stream.progress import set_quiet
from hidden2stream.runtime import add_runtime_args, runtime_from_args
from hidden2stream.video_writer import check_output


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.split("\n")[0])
    weights = p.add_mutually_exclusive_group()
    weights.add_argument("--checkpoint", type=existing_path,
                         help="pretrain_motion.py or train_two_stream.py checkpoint")
    weights.add_argument("--weights", default="default",
                         help="shipped MotionNet weights by name, used when no --checkpoint is given "
                              "(default: %(default)s)")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", type=existing_path)
    source.add_argument("--pair", type=existing_path, nargs=2, metavar=("FRAME0", "FRAME1"))
    p.add_argument("--out", type=Path, default=Path("flow_out"))
    work = p.add_mutually_exclusive_group()
    work.add_argument("--size", type=image_size, help="working size N or HxW (default: native)")
    work.add_argument("--max-side", type=positive_int,
                      help="working size: the longer side at most N pixels, aspect kept (default: native)")
    p.add_argument("--stride", type=positive_int, default=1, help="video: frames between the two frames of a flow")
    p.add_argument("--batch", type=positive_int, default=8, help="video: windows per forward pass")
    p.add_argument("--max-flows", type=positive_int, default=100, help="video: flows to write at most")
    p.add_argument("--no-png", action="store_true", help="write .flo files only")
    p.add_argument("--write-video", type=Path, metavar="OUT.mp4",
                   help="video: also write frame | flow side by side, 480 px on the longer side and at least "
                        "320 px tall (.mp4/.mkv/.mov, or a folder for PNG frames)")
    add_quiet_arg(p)
    add_runtime_args(p)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    set_quiet(args.quiet)
    if args.write_video:
        if args.pair:
            raise UserError("--write-video needs --video")
        options_check("--write-video", check_output, args.write_video)
    runtime = runtime_from_args(args)
    model = runtime.prepare(load_flow_model(args.checkpoint or args.weights, pair=bool(args.pair)))
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    if args.pair:
        written = write_pair_flow(model, tuple(args.pair), args.out, runtime, args.size, args.max_side,
                                  png=not args.no_png)
    else:
        written = write_video_flows(model, args.video, args.out, runtime, args.size, args.max_side, args.stride,
                                    args.batch, args.max_flows, png=not args.no_png, video=args.write_video)
    rate = written / (time.perf_counter() - began)
    print(f"wrote {written} flow{'s' if written != 1 else ''} to {args.out}/ ({rate:.3g} pairs/s)")
    if args.write_video:
        print(f"wrote {written} frames of frame | flow to {args.write_video}")
    return written


if __name__ == "__main__":
    run_cli(main)
