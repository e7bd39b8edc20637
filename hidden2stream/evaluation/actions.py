"""Action scoring: accuracies per head, confusion matrices and per-video scores of a hidden two-stream
network on a test set (:func:`evaluate_actions` -> :class:`ActionReport`); every rank's shard is
gathered, so torchrun gives the same numbers as one process.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, default_collate

from hidden2stream.errors import UserError, VideoError
from hidden2stream.models.fusion import late_fusion
from hidden2stream.progress import Progress
from hidden2stream.runtime import Runtime, evaluation
from hidden2stream.train.distributed import all_gather_objects
from hidden2stream.train.sampler import ShardSampler

log = logging.getLogger(__name__)


HEADS = ("spatial", "temporal", "fused")


@dataclass
class ActionReport:
    """Accuracies per head (``spatial``, ``temporal``, ``fused``, ``late``) and a confusion matrix.

    ``scores`` holds the video scores per head ``(N, C)`` (mean softmax over the views; ``late``:
    the paper's rule) and ``labels`` the true classes ``(N,)``, both in dataset order, for the
    ``videos`` scored; ``skipped`` says why each other test video was not (one line naming the file:
    dropped when the dataset was built, or failed to decode in the evaluation).
    """

    num_classes: int
    clip_top1: dict[str, float] = field(default_factory=dict)
    video_top1: dict[str, float] = field(default_factory=dict)
    video_top5: dict[str, float] = field(default_factory=dict)
    confusions: dict[str, torch.Tensor] = field(default_factory=dict)  # (C, C): rows true, cols predicted
    confusion_head: str = ""
    clip_top5: dict[str, float] = field(default_factory=dict)
    scores: dict[str, torch.Tensor] = field(default_factory=dict)
    labels: torch.Tensor | None = None
    videos: int = 0
    clips: int = 0
    seconds: float = 0.0
    skipped: list[str] = field(default_factory=list)

    @property
    def confusion(self) -> torch.Tensor:
        """The confusion matrix of the main head (fused when there is one)."""
        return self.confusions[self.confusion_head]

    def per_class(self, head: str) -> list[float]:
        """Video top-1 accuracy of ``head`` for each class (0 for a class without test videos)."""
        matrix = self.confusions[head].float()
        return (matrix.diagonal() / matrix.sum(1).clamp(min=1)).tolist()

    def factor_accuracy(self, head: str, factor: int) -> tuple[float, float]:
        """:func:`factor_accuracy` of ``head``'s confusion matrix."""
        return factor_accuracy(self.confusions[head], factor)

    def as_dict(self) -> dict:
        return {"num_classes": self.num_classes, "chance": 1.0 / self.num_classes,
                "clip_top1": self.clip_top1, "clip_top5": self.clip_top5, "video_top1": self.video_top1,
                "video_top5": self.video_top5, "videos": self.videos, "clips": self.clips,
                "skipped": len(self.skipped), "skipped_videos": self.skipped, "eval_seconds": self.seconds,
                "confusion_head": self.confusion_head,
                "confusions": {head: m.tolist() for head, m in self.confusions.items()}}


def factor_accuracy(confusion: torch.Tensor, factor: int) -> tuple[float, float]:
    """For labels ``major * factor + minor``: accuracy of the predicted major and minor parts, from a
    confusion matrix ``(C, C)`` (rows true, columns predicted).

    The synthetic action classes are ``appearance * motions + motion`` (``factor = motions``: how well
    a head tells the appearance and the motion apart); the playback classes ``speed * 2 + direction``.
    """
    matrix = confusion.double()
    classes = torch.arange(matrix.shape[0])
    true, pred = torch.meshgrid(classes, classes, indexing="ij")
    total = matrix.sum().clamp(min=1)
    major = matrix[(true // factor) == (pred // factor)].sum() / total
    minor = matrix[(true % factor) == (pred % factor)].sum() / total
    return float(major), float(minor)


def _topk(scores: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    k = min(k, scores.shape[1])
    return float((scores.topk(k, dim=1).indices == labels[:, None]).any(1).float().mean())


class _WithIndex(Dataset):
    """A dataset whose items also carry their ``index``, so shards can be put back in order; an item
    whose video fails to decode becomes ``{"index", "skipped": reason}`` (logged), never another video."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict:
        try:
            return {**self.dataset[index], "index": index}
        except VideoError as exc:
            log.warning("skipped in the evaluation: %s", exc)
            return {"index": index, "skipped": str(exc)}


def _collate(items: list[dict]) -> tuple[dict | None, dict[int, str]]:
    """A batch of the scorable items (None if there is none) and ``{index: reason}`` of the skipped ones."""
    scorable = [item for item in items if "skipped" not in item]
    return (default_collate(scorable) if scorable else None,
            {item["index"]: item["skipped"] for item in items if "skipped" in item})


def _forward_views(model: nn.Module, clips: torch.Tensor, runtime: Runtime, streams: tuple[str, ...],
                   max_windows: int, flows: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Logits per head ``(N, C)`` (float32, CPU) of clips ``(N, K, T+1, 3, H, W)`` (and, for a
    two-stage model, their flows ``(N, K, T, 2, H, W)``), run in chunks of at most ``max_windows``
    windows (at least one clip): in eval mode each clip is scored alone, so chunking changes
    nothing but the memory."""
    per = max(1, max_windows // clips.shape[1])
    parts: list[dict[str, torch.Tensor]] = []
    for start in range(0, clips.shape[0], per):
        given = {} if flows is None else {"flows": flows[start:start + per].to(runtime.device)}
        with runtime.autocast():
            out = model(clips[start:start + per].to(runtime.device), streams=streams, **given)
        parts.append({head: out[head].float().cpu() for head in HEADS if head in out})
    return {head: torch.cat([p[head] for p in parts]) for head in parts[0]}


def _video_record(logits: dict[str, torch.Tensor], label: int) -> dict:
    """One video's views ``{head: (V, C)}`` -> its score (mean softmax) and clip hits per head."""
    record: dict = {"label": label, "views": 0, "scores": {}, "clip_top1": {}, "clip_top5": {}}
    for head, views in logits.items():
        top = views.topk(min(5, views.shape[1]), dim=1).indices
        record["views"] = views.shape[0]
        record["scores"][head] = views.softmax(-1).mean(0)
        record["clip_top1"][head] = int((top[:, 0] == label).sum())
        record["clip_top5"][head] = int((top == label).any(1).sum())
    return record


def _score_shard(model: nn.Module, loader: DataLoader, runtime: Runtime, streams: tuple[str, ...],
                 max_windows: int, description: str) -> dict[int, dict]:
    """``{dataset index: video record}`` for the videos of this rank's shard (``{"skipped": reason}``
    for a video that failed to decode)."""
    records: dict[int, dict] = {}
    bar = Progress(len(loader.sampler), description, unit="video", enabled=runtime.is_main)  # type: ignore[arg-type]
    with evaluation(model):
        for batch, skipped in loader:
            records.update({index: {"skipped": reason} for index, reason in skipped.items()})
            bar.update(len(skipped))
            if batch is None:
                continue
            frames, flows = batch["frames"], batch.get("flows")
            if frames.ndim == 6:  # one view per video
                frames, flows = frames[:, None], None if flows is None else flows[:, None]
            b, v = frames.shape[:2]
            logits = _forward_views(model, frames.flatten(0, 1), runtime, streams, max_windows,
                                    None if flows is None else flows.flatten(0, 1))
            for j, (index, label) in enumerate(zip(batch["index"].tolist(), batch["label"].tolist())):
                records[index] = _video_record({h: s[j * v:(j + 1) * v] for h, s in logits.items()}, label)
            bar.update(b)
    bar.close()
    return records


def action_report(records: dict[int, dict], num_classes: int, dropped: Sequence[str] = ()) -> ActionReport:
    """Accuracies from the video records of :func:`evaluate_actions`, in dataset order; the videos
    ``dropped`` when the dataset was built and those that failed to decode count as skipped."""
    skipped = list(dropped) + [records[i]["skipped"] for i in sorted(records) if "skipped" in records[i]]
    order = sorted(i for i in records if "skipped" not in records[i])
    if not order:
        raise UserError(f"no test video could be scored: all {len(skipped)} were skipped (see the log)")
    labels = torch.tensor([records[i]["label"] for i in order])
    heads = list(records[order[0]]["scores"])
    scores = {head: torch.stack([records[i]["scores"][head] for i in order]) for head in heads}
    if "spatial" in scores and "temporal" in scores:
        scores["late"] = late_fusion(scores["spatial"], scores["temporal"])
    clips = sum(records[i]["views"] for i in order)
    report = ActionReport(num_classes=num_classes, scores=scores, labels=labels, videos=len(order), clips=clips,
                          skipped=skipped)
    for head, value in scores.items():
        if head in heads:  # "late" is a rule on video scores: no clip accuracy
            report.clip_top1[head] = sum(records[i]["clip_top1"][head] for i in order) / clips
            report.clip_top5[head] = sum(records[i]["clip_top5"][head] for i in order) / clips
        report.video_top1[head] = _topk(value, labels, 1)
        report.video_top5[head] = _topk(value, labels, 5)
        report.confusions[head] = confusion_matrix(value.argmax(1), labels, num_classes)
    report.confusion_head = "fused" if "fused" in scores else heads[0]
    return report


def evaluate_actions(model: nn.Module, dataset: Dataset, runtime: Runtime, num_classes: int,
                     streams: Sequence[str] = ("spatial", "temporal"), batch_size: int = 4,
                     num_workers: int = 0, max_windows: int = 256,
                     description: str = "evaluate") -> ActionReport:
    """Clip and video top-1/top-5 of each stream head and the fused head, on every rank.

    Items hold ``frames`` of shape ``(V, K, T+1, 3, H, W)`` (V test views: crops x flips) or
    ``(K, T+1, 3, H, W)`` (one view), and for a two-stage model their ``flows`` ``(V, K, T, 2, H, W)``
    or ``(K, T, 2, H, W)``. A clip is one view (its K windows averaged by the model); a
    video's score is the mean softmax over its views. With both streams, ``late`` is the paper's
    test-time rule (negative scores clipped, each stream L1-normalised, spatial + 1.5 x temporal)
    on the video scores.

    Under ``torchrun`` each rank scores the videos ``rank, rank + W, ...`` (each video once, no
    padding), the per-video records are gathered, and every rank returns the same report, equal
    to one process's up to float rounding. ``max_windows`` bounds the windows per forward pass.

    No video stands in for another: the report's ``skipped`` lists the videos the dataset dropped
    when it was built (its ``dropped`` attribute, if any) and those that fail to decode here.
    """
    began = time.perf_counter()
    sampler = ShardSampler(len(dataset), runtime.rank, runtime.world_size)  # type: ignore[arg-type]
    loader = DataLoader(_WithIndex(dataset), batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        collate_fn=_collate)
    records: dict[int, dict] = {}
    for part in all_gather_objects(_score_shard(model, loader, runtime, tuple(streams), max_windows,
                                                description)):
        records.update(part)
    report = action_report(records, num_classes, getattr(dataset, "dropped", ()))
    report.seconds = time.perf_counter() - began
    return report


def confusion_matrix(predicted: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts ``(C, C)``: row = true class, column = predicted class."""
    index = labels.long() * num_classes + predicted.long()
    return torch.bincount(index, minlength=num_classes ** 2).reshape(num_classes, num_classes)
