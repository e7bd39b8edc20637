"""Input speed: windows/s for random T+1-frame windows, seek vs. decode-from-start vs. frame cache,
and items/s of the embedded generators (synthetic flow windows, synthetic action clips).

    python benchmarks/decode_speed.py [--clips DIR] [--frames 11] [--size 112] [--windows 20]
                                      [--repeats 3] [--out benchmarks/results]

``--windows`` random windows are drawn over the clips (round robin, fixed seed); every mode
reads the same windows, shorter side resized to ``--size``. Each mode is timed ``--repeats``
times and the median is reported. The frame cache is extracted once (its time is reported
separately), then windows are read from the memory-mapped ``.npy``. The generators make
``--windows`` items each at 64x64 (the CPU training size), median of the repeats too. Writes
``decode_speed.json`` and ``decode_speed.md`` to ``--out``.
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without install

from benchmarks.common import machine_info, machine_line, median, publish, timed
from hidden2stream.data.frame_cache import extract_frames, read_cached_frames
from hidden2stream.data.synthetic_actions import SyntheticActionConfig, SyntheticActionDataset
from hidden2stream.data.synthetic_flow import SyntheticFlowConfig, SyntheticFlowDataset
from hidden2stream.data.video import probe_video, read_frames, scaled_size
from hidden2stream.errors import UserError, VideoError
from hidden2stream.paths import shared_data

MODES = ("seek", "no_seek", "cache")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=Path, default=shared_data("clips"), help="folder of videos")
    parser.add_argument("--frames", type=int, default=11, help="frames per window (T+1)")
    parser.add_argument("--size", type=int, default=112, help="shorter side after resizing")
    parser.add_argument("--windows", type=int, default=20, help="random windows in all")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats per mode (median)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="output folder")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def _windows(clips: list[tuple[Path, int]], count: int, frames: int, seed: int) -> list[tuple[int, int]]:
    """``count`` windows ``(clip index, start)``, round robin over the clips."""
    rng = random.Random(seed)
    out = []
    for k in range(count):
        c = k % len(clips)
        out.append((c, rng.randrange(clips[c][1] - frames + 1)))
    return out


def _generation_rates(frames: int, items: int, repeats: int) -> dict[str, float]:
    """Items/s of the embedded generators at 64x64 (median over ``repeats`` passes of ``items``)."""
    datasets = {"synthetic_flow": SyntheticFlowDataset(items, SyntheticFlowConfig(frames=frames)),
                "synthetic_actions": SyntheticActionDataset(items, SyntheticActionConfig(frames=frames))}
    cpu = torch.device("cpu")
    rates = {}
    for name, dataset in datasets.items():
        seconds = [timed(lambda: [dataset[index] for index in range(items)], cpu) for _ in range(repeats)]
        rates[name] = items / max(median(seconds), 1e-9)
    return rates


def _markdown(result: dict) -> str:
    rows = ["| clip | frames | size | windows | seek win/s | no-seek win/s | cache win/s | seek speedup |",
            "|---|---|---|---|---|---|---|---|"]
    for r in result["clips"] + [dict(result["total"], clip="**all**", frames="", size="")]:
        rows.append(f"| {r['clip']} | {r['frames']} | {r['size']} | {r['windows']} | "
                    f"{r['seek']:.1f} | {r['no_seek']:.1f} | {r['cache']:.1f} | {r['seek'] / r['no_seek']:.2f}x |")
    m = result["machine"]
    return (f"Decode speed, windows of {result['settings']['frames']} frames, shorter side "
            f"{result['settings']['size']}, median of {result['settings']['repeats']} repeats "
            f"({machine_line(m)})\n\n" + "\n".join(rows) + "\n\n"
            + "| generator (64x64, no files) | items/s |\n|---|---|\n"
            + "".join(f"| {name} | {rate:.1f} |\n" for name, rate in result["generators"].items()))


def run(args: argparse.Namespace) -> dict:
    """Time every mode on the same windows; returns the result dictionary."""
    clips: list[tuple[Path, int]] = []
    sizes: list[tuple[int, int]] = []  # (H, W) after resizing, per clip
    for path in sorted(p for p in args.clips.iterdir() if p.is_file()):
        try:
            info = probe_video(path)
        except VideoError as exc:
            print(f"skipping {path.name}: {exc}", file=sys.stderr)
            continue
        if info.num_frames >= args.frames:
            clips.append((path, info.num_frames))
            sizes.append(scaled_size(info.width, info.height, args.size))
    if not clips:
        raise UserError(f"no readable video with >= {args.frames} frames in {args.clips}")
    windows = _windows(clips, args.windows, args.frames, args.seed)
    seconds = {mode: [[0.0] * len(clips) for _ in range(args.repeats)] for mode in MODES}
    with tempfile.TemporaryDirectory() as cache_dir:
        extract_s = {}
        for c, (path, _) in enumerate(clips):
            t0 = time.perf_counter()
            extract_s[c] = (extract_frames(path, cache_dir, args.size), time.perf_counter() - t0)
        with tqdm(total=len(MODES) * args.repeats * len(windows), desc="decode", unit="win") as bar:
            for mode in MODES:
                for rep in range(args.repeats):
                    for c, start in windows:
                        t0 = time.perf_counter()
                        if mode == "cache":
                            read_cached_frames(extract_s[c][0], start, args.frames)
                        else:
                            read_frames(clips[c][0], start, args.frames, sizes[c], seek=mode == "seek")
                        seconds[mode][rep][c] += time.perf_counter() - t0
                        bar.update()
    rows = []
    for c, (path, num_frames) in enumerate(clips):
        n = sum(1 for w, _ in windows if w == c)
        if n == 0:
            continue
        row = {"clip": path.name, "frames": num_frames, "size": f"{sizes[c][1]}x{sizes[c][0]}", "windows": n,
               "cache_extract_s": round(extract_s[c][1], 3)}
        for mode in MODES:
            row[mode] = n / max(median([rep[c] for rep in seconds[mode]]), 1e-9)
        rows.append(row)
    total = {"windows": len(windows), "cache_extract_s": round(sum(s for _, s in extract_s.values()), 3)}
    for mode in MODES:
        total[mode] = len(windows) / max(median([sum(rep) for rep in seconds[mode]]), 1e-9)
    return {
        "machine": machine_info(),
        "settings": {"clips": str(args.clips), "frames": args.frames, "size": args.size,
                     "windows": args.windows, "repeats": args.repeats, "seed": args.seed},
        "clips": rows,
        "total": total,
        "generators": _generation_rates(args.frames, args.windows, args.repeats),
    }


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if not args.clips.is_dir():
        print(f"clips folder {args.clips} not found", file=sys.stderr)
        return 2
    if args.windows < 1 or args.repeats < 1 or args.frames < 1 or args.size < 1:
        print("--windows, --repeats, --frames and --size must be >= 1", file=sys.stderr)
        return 2
    try:
        result = run(args)
    except UserError as exc:
        print(exc, file=sys.stderr)
        return 2
    publish(args.out, "decode_speed", result, _markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
