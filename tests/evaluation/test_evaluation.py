"""Evaluation: flow metrics against zero flow, action accuracy per head, confusion matrix."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from hidden2stream.data.synthetic_flow import SyntheticFlowConfig, SyntheticFlowDataset
from hidden2stream.evaluation.actions import ActionReport, confusion_matrix, evaluate_actions
from hidden2stream.evaluation.flow import evaluate_classic_photometric, evaluate_flow, evaluate_photometric
from hidden2stream.evaluation.report import action_table, per_class_table, save_confusion_png
from hidden2stream.runtime import Runtime

CPU = Runtime(device=torch.device("cpu"))


class ExactFlow(nn.Module):
    """A stand-in flow model that returns a fixed flow (the ground truth of ``Shifted``)."""

    def forward(self, frames, all_scales=None):
        flow = torch.zeros(frames.shape[0], frames.shape[1] - 1, 2, *frames.shape[-2:])
        flow[:, :, 0] = 1.5
        return flow


class Shifted(Dataset):
    def __len__(self):
        return 3

    def __getitem__(self, i):
        flow = torch.zeros(1, 2, 8, 8)
        flow[:, 0] = 1.5
        return {"frames": torch.rand(2, 3, 8, 8), "flow": flow, "valid": torch.ones(1, 1, 8, 8)}


def test_flow_evaluation_compares_with_zero_flow():
    result = evaluate_flow(ExactFlow(), Shifted(), CPU, batch_size=2)
    assert result["epe"] == 0.0 and result["zero_epe"] == 1.5 and result["pairs"] == 3


class GroundTruthFlow(nn.Module):
    """A stand-in flow model that returns the exact flow of ``WINDOWS`` (looked up by frames)."""

    def forward(self, frames, all_scales=None):
        return torch.stack([next(w["flow"] for w in WINDOWS if torch.equal(w["frames"], f)) for f in frames])


WINDOWS = SyntheticFlowDataset(2, SyntheticFlowConfig(frames=3, height=32, width=32), seed=5)


def test_photometric_evaluation_of_true_and_classic_flow_beats_zero_flow():
    ours = evaluate_photometric(GroundTruthFlow(), WINDOWS, CPU, batch_size=2)
    assert ours["pairs"] == 4 and set(ours) == {"photometric_l1", "ssim", "zero_photometric_l1", "zero_ssim", "pairs"}
    assert ours["photometric_l1"] < 0.5 * ours["zero_photometric_l1"] and ours["ssim"] > ours["zero_ssim"]
    tvl1 = evaluate_classic_photometric("tvl1", WINDOWS)
    assert tvl1["pairs"] == 4 and tvl1["photometric_l1"] < ours["zero_photometric_l1"]


class Oracle(nn.Module):
    """Spatial head knows the class's first half, temporal the second; fused knows it all."""

    def forward(self, frames, streams=("spatial", "temporal")):
        labels = frames[:, 0, 0, 0, 0, 0].long()
        onehot = nn.functional.one_hot(labels, 4).float()
        return {"spatial": onehot * 2 + 1, "temporal": onehot.roll(1, dims=1), "fused": onehot * 5}


class Labelled(Dataset):
    def __len__(self):
        return 8

    def __getitem__(self, i):
        return {"frames": torch.full((2, 1, 2, 3, 4, 4), float(i % 4)), "label": torch.tensor(i % 4)}


def test_action_evaluation_scores_every_head_and_the_paper_rule(tmp_path):
    report = evaluate_actions(Oracle(), Labelled(), CPU, num_classes=4, batch_size=3)
    assert report.video_top1["fused"] == 1.0 and report.video_top1["spatial"] == 1.0
    assert report.video_top1["temporal"] == 0.0
    assert report.clip_top1["fused"] == 1.0 and "late" not in report.clip_top1
    assert torch.equal(report.confusion, torch.eye(4, dtype=torch.long) * 2)
    assert "| chance | 0.250 |" in action_table(report)
    assert save_confusion_png(report.confusion, tmp_path / "c.png").stat().st_size > 0


def test_confusion_matrix_rows_are_true_classes():
    matrix = confusion_matrix(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 0, 1, 2]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_factor_accuracy_splits_appearance_and_motion():
    # 2 appearances x 2 motions: labels a*2+m; the head gets the motion right, the appearance wrong
    labels = torch.tensor([0, 1, 2, 3])
    predicted = torch.tensor([2, 3, 0, 1])
    report = ActionReport(4, confusions={"temporal": confusion_matrix(predicted, labels, 4)})
    assert report.factor_accuracy("temporal", 2) == (0.0, 1.0)


def test_shard_sampler_gives_every_index_to_exactly_one_rank():
    from hidden2stream.train.sampler import ShardSampler

    for n, world in ((11, 2), (7, 3), (2, 4)):
        shards = [list(ShardSampler(n, rank, world)) for rank in range(world)]
        assert sorted(i for shard in shards for i in shard) == list(range(n))  # once each, no padding
        assert [len(ShardSampler(n, rank, world)) for rank in range(world)] == [len(s) for s in shards]


class Views(Dataset):
    """Items of V = 3 views x K = 2 windows, label i % 4; view 0's first frame encodes the label."""

    def __len__(self):
        return 7

    def __getitem__(self, i):
        frames = torch.full((3, 2, 2, 3, 4, 4), float(i % 4))
        frames[1:] = float((i + 1) % 4)  # two of the three views point at the next class
        return {"frames": frames, "label": torch.tensor(i % 4)}


class WindowOracle(nn.Module):
    """Per clip: one-hot of the class its first window encodes, for every head."""

    def forward(self, frames, streams=("spatial", "temporal")):
        onehot = nn.functional.one_hot(frames[:, 0, 0, 0, 0, 0].long(), 4).float() * 3
        return {"spatial": onehot, "temporal": onehot.roll(1, dims=1), "fused": onehot}


def test_action_evaluation_in_chunks_clip_top5_and_per_class():
    whole = evaluate_actions(WindowOracle(), Views(), CPU, num_classes=4, batch_size=3, max_windows=1000)
    chunked = evaluate_actions(WindowOracle(), Views(), CPU, num_classes=4, batch_size=3, max_windows=2)
    for head in whole.scores:
        assert torch.equal(whole.scores[head], chunked.scores[head])
    assert whole.videos == 7 and whole.clips == 21 and whole.labels.tolist() == [i % 4 for i in range(7)]
    assert whole.clip_top1["spatial"] == pytest.approx(1 / 3)  # one view of three is right
    assert whole.video_top1["spatial"] == 0.0  # the video mean follows the two wrong views
    assert whole.clip_top5["spatial"] == 1.0 and whole.video_top5["spatial"] == 1.0  # 4 classes: top-4 holds all
    assert whole.per_class("fused") == [0.0, 0.0, 0.0, 0.0]
    assert "| clip top-5 |" in action_table(whole)
    assert "| class | videos | spatial | temporal | fused | late |" in per_class_table(whole, list("abcd"))


def test_synthetic_test_protocols_give_windows_and_views():
    from hidden2stream.data.synthetic_actions import SyntheticActionConfig, SyntheticActionDataset

    config = SyntheticActionConfig(segments=3, frames=4, height=32, width=32, speed=(0.5, 1.0))
    plain = SyntheticActionDataset(2, config, seed=3)
    assert plain[1]["frames"].shape == (3, 4, 3, 32, 32)
    windows = SyntheticActionDataset(2, config, seed=3, test_windows=5)
    assert windows[1]["frames"].shape == (5, 4, 3, 32, 32)
    paper = SyntheticActionDataset(2, config, seed=3, test_windows=25, test_crops="multi", test_flip=True)
    views = paper[1]["frames"]
    assert views.shape == (10, 25, 4, 3, 32, 32) and paper[1]["label"] == plain[1]["label"]
    assert torch.equal(views[5:], views[:5].flip(-1))  # the flipped crops follow the others
    flipped = SyntheticActionDataset(2, config, seed=3, test_flip=True)[1]["frames"]
    assert torch.equal(flipped[0], plain[1]["frames"]) and torch.equal(flipped[1], plain[1]["frames"].flip(-1))
