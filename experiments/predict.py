"""Predict the action in a video with a trained hidden two-stream checkpoint.

    python experiments/predict.py --checkpoint runs/main/two_stream/checkpoint.pt --video clip.mp4
    python experiments/predict.py ... --write-video clip_flow.mp4      # frames with their hidden flow
    python experiments/predict.py ... --write-video frames_dir/        # the same as PNG frames

Prints the top-5 classes with their scores (the video score averages the softmax of
``--views`` evenly spaced K-segment samples, the fused head when the model has one).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import av
import torch
from tqdm import tqdm

from hidden2stream.cli import OneLineParser, existing_path, positive_int, run_cli
from hidden2stream.data.sampling import evenly_spaced_starts
from hidden2stream.data.video import probe_video, read_frames
from hidden2stream.errors import CheckpointError, UserError
from hidden2stream.flow.visualize import flow_to_rgb, save_png
from hidden2stream.pretrained import load_two_stream
from hidden2stream.train.runtime import add_runtime_args, evaluation, runtime_from_args


def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=existing_path, required=True, help="train_two_stream.py checkpoint")
    p.add_argument("--video", type=existing_path, required=True)
    p.add_argument("--views", type=positive_int, default=3, help="evenly spaced samples averaged")
    p.add_argument("--top", type=positive_int, default=5)
    p.add_argument("--write-video", type=Path, help="an .mp4 file or a folder for PNG frames")
    p.add_argument("--max-frames", type=positive_int, default=150, help="frames in --write-video")
    add_runtime_args(p)
    return p


def sample_views(path: Path, views: int, segments: int, frames: int, size: tuple[int, int]) -> torch.Tensor:
    """``(views, K, T+1, 3, H, W)``: each view takes K evenly spaced windows, shifted per view."""
    info = probe_video(path)
    starts = evenly_spaced_starts(info.num_frames, views * segments, frames)
    windows = [read_frames(path, s, frames, size=size) for s in starts]
    order = [windows[k * views + v] for v in range(views) for k in range(segments)]
    return torch.stack(order).reshape(views, segments, *order[0].shape)


def write_flow_video(model, path: Path, out: Path, frames: int, size: tuple[int, int],
                     max_frames: int, runtime) -> int:
    """Frames with their colour-coded hidden flow beside them, as an mp4 or PNG frames."""
    info = probe_video(path)
    total = min(info.num_frames, max_frames)
    tiles: list[torch.Tensor] = []
    for start in tqdm(range(0, total - 1, frames - 1), desc="flow video", disable=None):
        window = read_frames(path, start, min(frames, total - start), size=size)
        if window.shape[0] < frames:
            window = torch.cat([window, window[-1:].expand(frames - window.shape[0], -1, -1, -1)])
        with runtime.autocast():
            flow = model.motionnet(window[None].to(runtime.device), all_scales=False)[0].float().cpu()
        for i in range(min(frames - 1, total - 1 - start)):
            tiles.append(torch.cat([(window[i] * 255).round().byte(), flow_to_rgb(flow[i])], dim=2))
    if out.suffix.lower() == ".mp4":
        with av.open(str(out), mode="w") as container:
            stream = container.add_stream("mpeg4", rate=max(1, round(info.fps)))
            stream.height, stream.width = tiles[0].shape[1], tiles[0].shape[2]
            stream.pix_fmt = "yuv420p"
            for tile in tiles:
                frame = av.VideoFrame.from_ndarray(tile.permute(1, 2, 0).contiguous().numpy(), format="rgb24")
                container.mux(stream.encode(frame))
            container.mux(stream.encode())
    else:
        for i, tile in enumerate(tiles):
            save_png(tile, out / f"frame_{i:05d}.png")
    return len(tiles)


def main(argv: list[str] | None = None) -> list[tuple[str, float]]:
    args = build_parser().parse_args(argv)
    runtime = runtime_from_args(args)
    model = load_two_stream(args.checkpoint)
    config = model.config
    model = runtime.prepare(model)
    if config.size is None:
        raise CheckpointError(f"{args.checkpoint} does not record the input size it was trained on")
    frames, size = config.motion.frames, config.size
    clip = sample_views(args.video, args.views, config.segments, frames, size)
    with evaluation(model):
        with runtime.autocast():
            out = model(clip.to(runtime.device))
        head = "fused" if "fused" in out else next(h for h in ("temporal", "spatial") if h in out)
        scores = out[head].float().softmax(-1).mean(0).cpu()
        top = scores.topk(min(args.top, scores.numel()))
        names = config.class_names or tuple(f"class {i}" for i in range(config.num_classes))
        ranked = [(names[i], float(s)) for s, i in zip(top.values, top.indices)]
        print(f"{args.video.name}: top-{len(ranked)} ({head} head, {args.views} views)")
        for name, score in ranked:
            print(f"  {score:6.3f}  {name}")
        if args.write_video:
            if args.write_video.suffix and args.write_video.suffix.lower() != ".mp4":
                raise UserError(f"--write-video {args.write_video}: give an .mp4 file or a folder")
            count = write_flow_video(model, args.video, args.write_video, frames, size,
                                     args.max_frames, runtime)
            print(f"wrote {count} frames with their hidden flow to {args.write_video}")
    return ranked


if __name__ == "__main__":
    run_cli(main)
