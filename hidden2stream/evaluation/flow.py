"""Flow scoring, in one place: every flow the project reports is scored here.

* On datasets with exact flow or real clips (MotionNet's pretraining and evaluation):
  :func:`evaluate_flow` / :func:`evaluate_classic_flow` (EPE, Fl-all beside zero flow) and
  :func:`evaluate_photometric` / :func:`evaluate_classic_photometric` (photometric L1 and SSIM of the
  warped frames where there is no ground truth).
* Methods side by side on the same frame pairs: a :class:`FlowMethod` turns a pair ``(frame1, frame2)``
  (``(3, H, W)`` in [0, 1]) into a forward flow ``(2, H, W)`` in pixels: MotionNet checkpoints of any
  window length (through :func:`hidden2stream.flow.predict.pair_flow`), the OpenCV methods and zero
  flow. :func:`score_pairs` runs every method on every pair and returns the per-pair EPE / Fl-all and
  their means; :func:`score_sequences` gives the photometric error on frame sequences without ground
  truth. Pictures are drawn elsewhere (the ``on_pair`` hook hands out the flows).

All return numbers (plain dicts of floats), so scripts save them as JSON; tables and pictures of them
live in :mod:`hidden2stream.evaluation.report`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from hidden2stream.data.flow_pairs import FlowPair
from hidden2stream.data.synthetic_flow import SyntheticFlowConfig
from hidden2stream.flow.classic import CLASSIC_METHODS, classic_flow, classic_flow_sequence
from hidden2stream.flow.metrics import endpoint_error, fl_all, photometric_l1, warped_ssim
from hidden2stream.flow.predict import pair_flow, window_flows
from hidden2stream.pretrained import load_motionnet
from hidden2stream.progress import progress
from hidden2stream.runtime import Runtime, evaluation

BENCHMARK_SIDE, BENCHMARK_MOTION, BENCHMARK_SEED = 224, 30.0, 20_000
CLASSIC_ORDER = ("tvl1", "dis", "farneback")  # table order of the OpenCV baselines
CLASSIC_LABELS = {"tvl1": "OpenCV TV-L1", "dis": "OpenCV DIS", "farneback": "OpenCV Farneback"}
ZERO_LABEL = "zero flow"


class _FlowTotals:
    """Valid-pixel-weighted running means of EPE and Fl-all."""

    def __init__(self) -> None:
        self.epe = self.fl = self.pixels = 0.0

    def add(self, pred: torch.Tensor, gt: torch.Tensor, valid: torch.Tensor) -> None:
        pixels = float(valid.sum())
        self.epe += float(endpoint_error(pred, gt, valid)) * pixels
        self.fl += float(fl_all(pred, gt, valid)) * pixels
        self.pixels += pixels

    def result(self, prefix: str = "") -> dict[str, float]:
        n = max(self.pixels, 1.0)
        return {f"{prefix}epe": self.epe / n, f"{prefix}fl_all": self.fl / n}


def _motion_flows(model: nn.Module, dataset: Dataset, runtime: Runtime,
                  batch_size: int) -> Iterator[tuple[dict, torch.Tensor, torch.Tensor]]:
    """Batches of ``dataset`` with their frames on the device and MotionNet's full-resolution
    float32 flow ``(B, T, 2, H, W)``, the model in eval mode under the runtime's autocast."""
    with evaluation(model):
        for batch in DataLoader(dataset, batch_size=batch_size):
            frames = batch["frames"].to(runtime.device)
            with runtime.autocast():
                flow = model(frames, all_scales=False)
            yield batch, frames, flow.float()


def evaluate_flow(model: nn.Module, dataset: Dataset, runtime: Runtime,
                  batch_size: int = 8) -> dict[str, float]:
    """EPE and Fl-all of MotionNet's full-resolution flow, beside the zero-flow baseline.

    ``dataset`` yields ``{"frames" (T+1,3,H,W), "flow" (T,2,H,W), "valid" (T,1,H,W)}``.
    """
    ours, zero = _FlowTotals(), _FlowTotals()
    pairs = 0
    for batch, _, pred in _motion_flows(model, dataset, runtime, batch_size):
        gt, valid = batch["flow"].flatten(0, 1), batch["valid"].flatten(0, 1)
        pred = pred.cpu().flatten(0, 1)
        ours.add(pred, gt, valid)
        zero.add(torch.zeros_like(gt), gt, valid)
        pairs += gt.shape[0]
    return {**ours.result(), **zero.result("zero_"), "pairs": float(pairs)}


def evaluate_classic_flow(method: str, dataset: Dataset, limit: int | None = None) -> dict[str, float]:
    """EPE and Fl-all of an OpenCV method (``tvl1``, ``farneback``, ``dis``) on the same pairs."""
    totals = _FlowTotals()
    count = len(dataset) if limit is None else min(limit, len(dataset))
    for i in progress(range(count), f"{method} flow", unit="pair"):
        item = dataset[i]
        pred = classic_flow_sequence(method, item["frames"])
        totals.add(pred, item["flow"], item["valid"])
    return totals.result()


class _PhotometricTotals:
    """Pair-weighted means of photometric L1 and SSIM per flow source, overall and per video."""

    def __init__(self, video_names: Sequence[str] | None) -> None:
        self.video_names = video_names
        self.sums: dict[str, float] = {}
        self.videos: dict[str, dict[str, float]] = {}

    @staticmethod
    def _add(sums: dict[str, float], frames: torch.Tensor, flow: torch.Tensor, prefix: str) -> None:
        first, second = frames[:, :-1].flatten(0, 1).float(), frames[:, 1:].flatten(0, 1).float()
        flow = flow.flatten(0, 1)
        n = first.shape[0]
        for name, metric in (("photometric_l1", photometric_l1), ("ssim", warped_ssim)):
            sums[prefix + name] = sums.get(prefix + name, 0.0) + float(metric(first, second, flow)) * n
        if not prefix:
            sums["pairs"] = sums.get("pairs", 0.0) + n

    def add(self, batch: dict, frames: torch.Tensor, flow: torch.Tensor, prefix: str = "") -> None:
        """``frames (N, T+1, 3, H, W)`` under ``flow (N, T, 2, H, W)``; ``prefix`` names the source."""
        self._add(self.sums, frames, flow, prefix)
        if self.video_names is not None and "video" in batch:
            for j, video in enumerate(batch["video"].tolist()):
                group = self.videos.setdefault(self.video_names[video], {})
                self._add(group, frames[j:j + 1], flow[j:j + 1], prefix)

    def result(self) -> dict:
        def means(sums: dict[str, float]) -> dict[str, float]:
            pairs = max(sums.get("pairs", 0.0), 1.0)
            return {k: v if k == "pairs" else v / pairs for k, v in sums.items()}

        out: dict = means(self.sums)
        if self.videos:
            out["videos"] = {name: means(sums) for name, sums in sorted(self.videos.items())}
        return out


def evaluate_photometric(model: nn.Module, dataset: Dataset, runtime: Runtime,
                         batch_size: int = 8) -> dict:
    """Photometric L1 and SSIM of frame t+1 warped by the predicted flow onto frame t, vs zero flow.

    For real clips with no ground truth: lower L1 / higher SSIM than zero flow means the flow
    explains the motion. When items carry ``"video"`` (an index into ``dataset.video_names``) the
    result also holds the same figures per video under ``"videos"``.
    """
    totals = _PhotometricTotals(getattr(dataset, "video_names", None))
    for batch, frames, flow in _motion_flows(model, dataset, runtime, batch_size):
        totals.add(batch, frames, flow)
        totals.add(batch, frames, torch.zeros_like(flow), "zero_")
    return totals.result()


def evaluate_classic_photometric(method: str, dataset: Dataset, limit: int | None = None) -> dict:
    """Photometric L1 and SSIM of an OpenCV method's flow (``tvl1``, ...) on the same windows
    (per video too, as :func:`evaluate_photometric`)."""
    totals = _PhotometricTotals(getattr(dataset, "video_names", None))
    count = len(dataset) if limit is None else min(limit, len(dataset))
    for i in progress(range(count), f"{method} flow", unit="pair"):
        item = dataset[i]
        batch = {k: torch.as_tensor(v)[None] for k, v in item.items()}
        totals.add(batch, batch["frames"], classic_flow_sequence(method, item["frames"])[None])
    return totals.result()


@dataclass
class FlowMethod:
    """A named flow method: ``pair(frame1, frame2) -> (2, H, W)`` and ``sequence(frames (N, 3, H, W))
    -> (N-1, 2, H, W)``; ``info`` describes it (JSON-ready)."""

    name: str
    pair: Callable[[Tensor, Tensor], Tensor]
    sequence: Callable[[Tensor], Tensor]
    info: dict = field(default_factory=dict)


def motionnet_method(model: nn.Module, runtime: Runtime | torch.device | str, name: str = "MotionNet",
                     info: dict | None = None) -> FlowMethod:
    """A MotionNet as a flow method: pairs through :func:`pair_flow`, sequences as a video."""
    info = {"kind": "motionnet", "frames": int(model.config.frames), **(info or {})}
    return FlowMethod(name, partial(pair_flow, model, runtime_or_device=runtime),
                      partial(window_flows, model, runtime_or_device=runtime), info)


def classic_method(method: str) -> FlowMethod:
    """An OpenCV method (``tvl1``, ``dis``, ``farneback``) with OpenCV's default parameters."""
    if method not in CLASSIC_METHODS:
        raise ValueError(f"unknown classic flow method {method!r}; choose one of {', '.join(CLASSIC_METHODS)}")
    return FlowMethod(CLASSIC_LABELS.get(method, method), partial(classic_flow, method),
                      partial(classic_flow_sequence, method), {"kind": "classic", "method": method})


def _zero_pair(frame1: Tensor, frame2: Tensor) -> Tensor:
    return torch.zeros(2, *frame1.shape[-2:])


def _zero_sequence(frames: Tensor) -> Tensor:
    return torch.zeros(frames.shape[0] - 1, 2, *frames.shape[-2:])


def zero_method() -> FlowMethod:
    """Zero flow: the floor every method should beat."""
    return FlowMethod(ZERO_LABEL, _zero_pair, _zero_sequence, {"kind": "zero"})


def checkpoint_label(path: Path) -> str:
    """A short name for a checkpoint: its folder's name (``runs/motion/checkpoint.pt`` -> ``motion``),
    or its file name without suffix when that says more."""
    path = Path(path)
    return path.parent.name if path.stem == "checkpoint" and path.parent.name else path.stem


def flow_methods(checkpoints: Sequence[Path], runtime: Runtime, classic: Sequence[str] = CLASSIC_ORDER,
                 zero: bool = True) -> list[FlowMethod]:
    """The methods to compare: each MotionNet checkpoint (loaded with
    :func:`hidden2stream.pretrained.load_motionnet`, placed on ``runtime``), then ``classic``, then
    zero flow. Checkpoint rows are named ``MotionNet <folder> (T+1=N)``, made unique."""
    methods: list[FlowMethod] = []
    for path in checkpoints:
        model = runtime.prepare(load_motionnet(path))
        name = f"MotionNet {checkpoint_label(path)} (T+1={model.config.frames})"
        taken = {m.name for m in methods}
        unique, n = name, 2
        while unique in taken:
            unique, n = f"{name} #{n}", n + 1
        methods.append(motionnet_method(model, runtime, unique, {"checkpoint": str(path)}))
    methods += [classic_method(m) for m in classic]
    if zero:
        methods.append(zero_method())
    return methods


@torch.no_grad()
def pair_scores(pred: Tensor, gt: Tensor, valid: Tensor) -> dict[str, float]:
    """EPE (px) and Fl-all of one flow ``(2, H, W)`` over the valid pixels of ``valid (1, H, W)``."""
    pred, gt, valid = pred[None].float(), gt[None].float(), valid[None].float()
    return {"epe": float(endpoint_error(pred, gt, valid)), "fl_all": float(fl_all(pred, gt, valid))}


def score_pairs(methods: Sequence[FlowMethod], pairs: Iterable[FlowPair],
                on_pair: Callable[[FlowPair, dict[str, Tensor]], None] | None = None,
                desc: str = "pairs") -> dict[str, dict]:
    """Every method on every pair: ``{method: {"pairs": {pair: {"epe", "fl_all", "seconds"}},
    "mean_epe", "mean_fl_all", "seconds_per_pair", "count"}}``.

    Means are over pairs (each pair counts once, whatever its size); pairs without a valid pixel are
    left out of them. ``on_pair(pair, {method: flow})`` sees every pair's flows (for pictures).
    """
    names = [m.name for m in methods]
    if len(set(names)) != len(names):
        raise ValueError(f"flow method names must be unique, got {names}")
    results: dict[str, dict] = {m.name: {"pairs": {}} for m in methods}
    for pair in progress(pairs, desc, unit="pair"):
        if pair.name in results[names[0]]["pairs"]:
            raise ValueError(f"two pairs are named {pair.name!r}")
        counted = bool(pair.valid.sum() > 0)
        flows = {}
        for method in methods:
            start = time.perf_counter()
            flow = method.pair(pair.frame1, pair.frame2)
            seconds = time.perf_counter() - start
            if flow.shape != pair.flow.shape:
                raise ValueError(f"{method.name} gave flow {tuple(flow.shape)} for pair {pair.name} of "
                                 f"ground truth {tuple(pair.flow.shape)}")
            flows[method.name] = flow
            results[method.name]["pairs"][pair.name] = {**pair_scores(flow, pair.flow, pair.valid),
                                                        "seconds": seconds, "counted": counted}
        if on_pair is not None:
            on_pair(pair, flows)
    return {name: summarize_pairs(row["pairs"]) for name, row in results.items()}


def summarize_pairs(pairs: dict[str, dict]) -> dict:
    """One method's per-pair scores (as :func:`score_pairs` gives them) with their means over the
    pairs that have ground truth: ``{"pairs", "mean_epe", "mean_fl_all", "seconds_per_pair", "count"}``."""
    counted = [s for s in pairs.values() if s["counted"]]
    n = max(len(counted), 1)
    return {"pairs": pairs, "mean_epe": sum(s["epe"] for s in counted) / n,
            "mean_fl_all": sum(s["fl_all"] for s in counted) / n,
            "seconds_per_pair": sum(s["seconds"] for s in pairs.values()) / max(len(pairs), 1),
            "count": len(counted)}


def benchmark_synthetic_config(side: int, image_dir: str | Path, max_motion: float = BENCHMARK_MOTION
                               ) -> SyntheticFlowConfig:
    """The synthetic benchmark's two-frame scenes at ``side`` x ``side``: photo layers whose
    foreground translation reaches ``max_motion * side / 224`` px, uniformly (background: half of
    it); rotation, scale and shear keep their defaults (relative), so one seed gives the same
    scenes at every size. Training uses other seeds (and ``realistic`` motions), never 20000+."""
    foreground = max_motion * side / BENCHMARK_SIDE
    return SyntheticFlowConfig(frames=2, height=side, width=side, max_translation=foreground,
                               background_translation=foreground / 2, image_dir=str(image_dir))


def synthetic_pairs(dataset: Dataset) -> Iterator[FlowPair]:
    """The first pair of each synthetic window (``{"frames", "flow", "valid"}`` items) as a
    :class:`FlowPair` named by its index."""
    width = len(str(len(dataset) - 1))
    for i in range(len(dataset)):
        item = dataset[i]
        yield FlowPair(f"{i:0{width}d}", item["frames"][0], item["frames"][1], item["flow"][0], item["valid"][0])


def score_sequences(methods: Sequence[FlowMethod], sequences: Iterable[Tensor],
                    desc: str = "sequences") -> dict[str, dict[str, float]]:
    """Photometric L1 and SSIM between frame t and frame t+1 backward-warped by each method's flow,
    for sequences ``(N, 3, H, W)`` without ground truth: ``{method: {"photometric_l1", "ssim",
    "pairs"}}``, means over all consecutive pairs. MotionNet runs on a sequence as on a video."""
    sums = {m.name: {"photometric_l1": 0.0, "ssim": 0.0} for m in methods}
    pairs = 0
    for frames in progress(sequences, desc, unit="sequence"):
        first, second = frames[:-1].float(), frames[1:].float()
        n = first.shape[0]
        for method in methods:
            flow = method.sequence(frames)
            sums[method.name]["photometric_l1"] += float(photometric_l1(first, second, flow)) * n
            sums[method.name]["ssim"] += float(warped_ssim(first, second, flow)) * n
        pairs += n
    return {name: {k: v / max(pairs, 1) for k, v in s.items()} | {"pairs": pairs} for name, s in sums.items()}
