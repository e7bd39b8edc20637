"""Run a trained MotionNet on a video or a frame pair; write ``.flo`` files and PNG pictures.

    python experiments/flow.py --pair a.png b.png --out flow/          # the shipped weights
    python experiments/flow.py --video clip.mp4 --out flow/
    python experiments/flow.py --checkpoint runs/motion/checkpoint.pt --video clip.mp4 --out flow/

A video is cut into consecutive windows of T+1 frames that share their end frames, so the files
``flow_00000.flo, flow_00001.flo, ...`` are the forward flows from frame i to frame i+1 (pixels,
channel 0 = x). Without ``--checkpoint`` the shipped weights (``--weights default``) are used; they
serve any window length, so a pair runs through a 2-frame model and a video through 11-frame
windows. A checkpoint whose weights fit only its own window length gets a pair as a window whose
later frames repeat the second frame; its first flow is written.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torchvision.io import ImageReadMode, decode_image
from tqdm import tqdm

from hidden2stream.cli import OneLineParser, existing_path, image_size, positive_int, run_cli
from hidden2stream.data.video import probe_video, read_frames
from hidden2stream.errors import UserError
from hidden2stream.flow.io import write_flo
from hidden2stream.flow.visualize import flow_to_rgb, save_png
from hidden2stream.pretrained import load_flow_model
from hidden2stream.train.runtime import add_runtime_args, evaluation, runtime_from_args


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
    p.add_argument("--size", type=image_size, help="resize frames to N or HxW (default: native)")
    p.add_argument("--max-flows", type=positive_int, default=100, help="video: flows to write at most")
    p.add_argument("--no-png", action="store_true", help="write .flo files only")
    add_runtime_args(p)
    return p


def _load_image(path: Path) -> torch.Tensor:
    try:
        return decode_image(str(path), mode=ImageReadMode.RGB).float() / 255
    except RuntimeError as err:
        raise UserError(f"{path} is not a readable image ({err})") from err


def _windows(args: argparse.Namespace, frames: int):
    """Yield ``(index of first flow, window (T+1, 3, H, W), number of flows to keep)``."""
    if args.pair:
        first, second = (_load_image(p) for p in args.pair)
        if first.shape != second.shape:
            raise UserError(f"{args.pair[0]} and {args.pair[1]} differ in size")
        if args.size:
            first, second = (torch.nn.functional.interpolate(f[None], size=args.size, mode="bilinear",
                                                             antialias=True)[0] for f in (first, second))
        yield 0, torch.stack([first] + [second] * (frames - 1)), 1
        return
    info = probe_video(args.video)
    if info.num_frames < 2:
        raise UserError(f"{args.video} has {info.num_frames} frame{'s' if info.num_frames != 1 else ''}: "
                        "a flow needs at least 2")
    total = min(info.num_frames - 1, args.max_flows)
    steps = frames - 1
    for start in range(0, total, steps):
        count = min(steps, total - start)
        window = read_frames(args.video, start, count + 1, size=args.size)
        if count < steps:  # pad the last window by repeating its final frame
            window = torch.cat([window, window[-1:].expand(steps - count, -1, -1, -1)])
        yield start, window, count


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    runtime = runtime_from_args(args)
    model = runtime.prepare(load_flow_model(args.checkpoint or args.weights, pair=bool(args.pair)))
    args.out.mkdir(parents=True, exist_ok=True)
    written = 0
    with evaluation(model):
        for start, window, keep in tqdm(list(_windows(args, model.config.frames)), desc="flow", disable=None):
            with runtime.autocast():
                flow = model(window[None].to(runtime.device), all_scales=False)[0].float().cpu()
            for i in range(keep):
                name = args.out / f"flow_{start + i:05d}"
                write_flo(name.with_suffix(".flo"), flow[i])
                if not args.no_png:
                    save_png(flow_to_rgb(flow[i]), name.with_suffix(".png"))
                written += 1
    print(f"wrote {written} flow{'s' if written != 1 else ''} to {args.out}/")
    return written


if __name__ == "__main__":
    run_cli(main)
