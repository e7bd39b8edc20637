"""The action in one video, by a hidden two-stream network, and a video of what the network saw.

* :func:`predict_video`: the video-level scores (the softmax of ``views`` evenly spaced K-segment
  samples, averaged), from the fused head when the model has one.
* :func:`write_prediction_video`: the clip at a viewable size beside the hidden flow the network
  classified, with the video's top-3 in a header line and each window's own top-1 at the bottom.

The flow shown is the hidden stream's input (before its ±20 px clip): MotionNet's final flow,
``motionnet(frames, all_scales=False)`` (refined when its config says so), which is what
:class:`~hidden2stream.models.hidden.StackedHiddenStream` classifies and what ``experiments/flow.py``
writes (a branched hidden stream classifies MotionNet's encoder features instead; the flow shown is
then its decoder's final flow). It is computed at the model's input size (the checkpoint's ``config.size``, e.g. 64x64, aspect not
kept), colour-coded there and only then resized to the displayed frame: a flow computed at the
display size would not be what the network classified.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from hidden2stream.data.sampling import evenly_spaced_starts
from hidden2stream.data.video import probe_video, read_frames, read_frames_uint8
from hidden2stream.flow.predict import split_windows
from hidden2stream.flow.visualize import frame_and_flow
from hidden2stream.models.two_stream import HiddenTwoStream
from hidden2stream.progress import Progress
from hidden2stream.runtime import Runtime, evaluation
from hidden2stream.video_writer import DEFAULT_MAX_SIDE, VideoWriter, caption, display_size

#: Heads to report, in order of preference.
HEADS = ("fused", "temporal", "spatial")


@dataclass(frozen=True)
class Prediction:
    """Video-level scores ``(C,)`` (mean softmax) of ``head`` over ``views`` samples, with class names."""

    head: str
    scores: Tensor
    names: tuple[str, ...]
    views: int

    def top(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` best ``(class name, score)``, best first."""
        best = self.scores.topk(min(k, self.scores.numel()))
        return [(self.names[i], float(s)) for s, i in zip(best.values, best.indices)]


def class_names(model: HiddenTwoStream) -> tuple[str, ...]:
    config = model.config
    return config.class_names or tuple(f"class {i}" for i in range(config.num_classes))


def sample_views(path: Path, views: int, segments: int, frames: int, size: tuple[int, int]) -> Tensor:
    """``(views, K, T+1, 3, H, W)``: each view takes K evenly spaced windows, shifted per view."""
    info = probe_video(path)
    starts = evenly_spaced_starts(info.num_frames, views * segments, frames, video=path)
    windows = [read_frames(path, s, frames, size=size) for s in starts]
    order = [windows[k * views + v] for v in range(views) for k in range(segments)]
    return torch.stack(order).reshape(views, segments, *order[0].shape)


def predict_video(model: HiddenTwoStream, path: Path, views: int, runtime: Runtime) -> Prediction:
    """Score ``path`` with ``views`` K-segment samples at the model's input size (``config.size``)."""
    config = model.config
    clip = sample_views(path, views, config.segments, config.motion.frames, config.size)
    with evaluation(model), runtime.autocast():
        out = model(clip.to(runtime.device))
    head = next(h for h in HEADS if h in out)
    return Prediction(head, out[head].float().softmax(-1).mean(0).cpu(), class_names(model), views)


def window_outputs(model: HiddenTwoStream, windows: Tensor, head: str, runtime: Runtime) -> tuple[Tensor, Tensor]:
    """Each window ``(B, T+1, 3, H, W)`` scored alone (as a clip of one segment) -> (``head``'s
    softmax ``(B, C)``, the hidden stream's flows ``(B, T, 2, H, W)`` in pixels), on the CPU."""
    with evaluation(model), runtime.autocast():
        out = model(windows[:, None].to(runtime.device))
        flows = model.motionnet(windows.to(runtime.device), all_scales=False).float()
    return out[head].float().softmax(-1).cpu(), flows.cpu()


def labelled_tile(frame: Tensor, flow: Tensor, size: tuple[int, int], header: str, frame_note: str,
                  flow_note: str) -> Tensor:
    """uint8 ``(3, H, 2W)``: ``frame`` | colour-coded ``flow`` at ``size`` = ``(H, W)``
    (:func:`~hidden2stream.flow.visualize.frame_and_flow`), ``header`` along the top, the notes
    at the bottom of each half; the flow's note ends with its longest vector, the length that the
    colour wheel's rim stands for in this frame."""
    tile = caption(frame_and_flow(frame, flow, size), [header])
    longest = float(torch.linalg.vector_norm(flow, dim=0).max())
    width = size[1]
    tile[..., :width] = caption(tile[..., :width], [frame_note], top=False)
    tile[..., width:] = caption(tile[..., width:], [f"{flow_note}, longest {longest:.1f} px"], top=False)
    return tile


def write_prediction_video(model: HiddenTwoStream, path: Path, out: Path, prediction: Prediction,
                           runtime: Runtime, max_frames: int = 150, max_side: int = DEFAULT_MAX_SIDE,
                           batch: int = 8) -> int:
    """Write the first ``max_frames`` frames of ``path`` (one tile per flow: frame i | flow i -> i+1)
    to ``out`` (:class:`~hidden2stream.video_writer.VideoWriter`); returns the number of tiles.

    Consecutive windows of T+1 frames (sharing their end frames, the last one padded by repeating
    its final frame) run ``batch`` at a time; every tile of a window carries that window's top-1.
    Each half of a tile is :func:`~hidden2stream.video_writer.display_size` (``max_side``).
    """
    info = probe_video(path)
    length, size = model.config.motion.frames, model.config.size
    steps, total = length - 1, min(info.num_frames, max_frames) - 1
    shown = display_size(info.height, info.width, max_side)
    header = "video: " + "   ".join(f"{name} {score:.2f}" for name, score in prediction.top(3))
    header += f"   ({prediction.head} head, {prediction.views} views)"
    flow_note = f"hidden flow at {size[0]}x{size[1]} (model input)"
    with VideoWriter(out, info.fps) as writer, Progress(total, "predict video", unit="frame") as bar:
        for start in range(0, total, batch * steps):
            count = min(batch * steps, total - start)
            frames = torch.from_numpy(read_frames_uint8(path, start, count + 1, size=shown)).permute(0, 3, 1, 2)
            windows = split_windows(read_frames(path, start, count + 1, size=size), length)
            probs, flows = window_outputs(model, windows, prediction.head, runtime)
            for j in range(count):
                w, t = divmod(j, steps)
                first = start + w * steps
                score, best = probs[w].max(0)
                frame_note = (f"frame {start + j}   window {first}-{min(first + steps, total)}: "
                              f"{prediction.names[best]} {float(score):.2f}")
                writer.write(labelled_tile(frames[j], flows[w, t], shown, header, frame_note, flow_note))
                bar.update()
    return total
