"""Drawing and tables for the numbers :mod:`hidden2stream.evaluation` computes.

Scoring stays in :mod:`~hidden2stream.evaluation.flow` and :mod:`~hidden2stream.evaluation.actions`;
this module only turns their results into pictures (confusion heat map, colour-coded flow) and GitHub
Markdown tables, so scripts and benchmarks print and save them the same way.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hidden2stream.evaluation.actions import ActionReport
from hidden2stream.flow.visualize import flow_to_rgb, make_grid_png
from hidden2stream.runtime import Runtime, evaluation


def confusion_image(matrix: torch.Tensor, cell: int = 24) -> torch.Tensor:
    """Row-normalised confusion matrix as a float RGB heat map ``(3, C*cell, C*cell)`` in [0, 1]
    (white = 0, dark blue = 1, grey grid lines), for a PNG or TensorBoard."""
    rates = matrix.float() / matrix.sum(1, keepdim=True).clamp(min=1)
    white, blue = torch.tensor([1.0, 1.0, 1.0]), torch.tensor([0.03, 0.19, 0.42])
    image = white[:, None, None] + (blue - white)[:, None, None] * rates[None]
    image = F.interpolate(image[None], scale_factor=cell, mode="nearest")[0]
    image[:, ::cell, :] = 0.6  # grid lines
    image[:, :, ::cell] = 0.6
    return image


def save_confusion_png(matrix: torch.Tensor, path: str | Path, cell: int = 24) -> Path:
    """Row-normalised confusion matrix as a heat map (white = 0, dark blue = 1), one cell per pair."""
    return make_grid_png([confusion_image(matrix, cell)], path, ncol=1)


def save_flow_pictures(model: nn.Module, clips: Sequence[torch.Tensor], path: str | Path,
                       runtime: Runtime, max_magnitude: float | None = None) -> Path:
    """A PNG grid: per clip, its first frame and the colour-coded flow of its first pair.

    ``clips`` are windows ``(T+1, 3, H, W)`` in [0, 1].
    """
    tiles: list[torch.Tensor] = []
    with evaluation(model):
        for clip in clips:
            with runtime.autocast():
                flow = model(clip[None].to(runtime.device), all_scales=False)
            tiles += [clip[0], flow_to_rgb(flow[0, 0].float().cpu(), max_magnitude).float() / 255]
    return make_grid_png(tiles, path, ncol=2)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]], decimals: int = 3) -> str:
    """A GitHub Markdown table; floats printed with ``decimals`` decimals."""
    def cell(value: object) -> str:
        return f"{value:.{decimals}f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def video_counts(report: ActionReport) -> str:
    """How many test videos the numbers cover and how many were left out, e.g. ``scored 3 videos,
    skipped 7 (unreadable or too short: see the log)``: a skipped video is never stood in for."""
    scored = f"scored {report.videos} video{'' if report.videos == 1 else 's'}, skipped {len(report.skipped)}"
    return scored + (" (unreadable or too short: see the log)" if report.skipped else "")


def action_table(report: ActionReport) -> str:
    """The accuracy table the scripts print: one row per head, chance beside (clip top-5 when known)."""
    top5 = bool(report.clip_top5)
    rows = [[head, report.clip_top1.get(head, "-")] + ([report.clip_top5.get(head, "-")] if top5 else [])
            + [report.video_top1[head], report.video_top5[head]]
            for head in report.video_top1]  # "late" is a rule on video scores: no clip accuracy
    chance, chance5 = 1.0 / report.num_classes, min(5, report.num_classes) / report.num_classes
    rows.append(["chance", chance] + ([chance5] if top5 else []) + [chance, chance5])
    return markdown_table(["head", "clip top-1"] + (["clip top-5"] if top5 else []) + ["video top-1", "video top-5"],
                          rows)


def per_class_table(report: ActionReport, class_names: Sequence[str]) -> str:
    """Video top-1 per class (rows) and head (columns), with each class's number of test videos."""
    heads = list(report.video_top1)
    per_head = {head: report.per_class(head) for head in heads}
    counts = report.confusions[heads[0]].sum(1).tolist()
    rows = [[name, int(counts[c])] + [per_head[h][c] for h in heads] for c, name in enumerate(class_names)]
    return markdown_table(["class", "videos"] + heads, rows)


def factor_summary(report: ActionReport, names: tuple[str, str], minor: int) -> tuple[dict, str]:
    """Each head's accuracy on the two factors of classes numbered ``major * minor + minor_index`` (the
    synthetic set: appearance x motion; playback: speed x direction), named ``names``: the
    ``factor_accuracy`` summary ``{head: {name: accuracy}}`` and its Markdown table."""
    factors = {head: report.factor_accuracy(head, minor) for head in report.confusions}
    major_name, minor_name = names
    table = markdown_table(["head", f"{major_name} accuracy", f"{minor_name} accuracy"],
                           [[head, a, m] for head, (a, m) in factors.items()])
    return {head: {major_name: a, minor_name: m} for head, (a, m) in factors.items()}, table
