"""Synthetic data: determinism, shapes, exactness of the flow ground truth, action classes, speed."""
from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.io import write_png

from hidden2stream.data.action_sets import TrainDataOptions, action_datasets
from hidden2stream.data.layers import Layer, affine, exact_flow, render, superellipse_mask
from hidden2stream.data.synthetic_actions import APPEARANCES, SyntheticActionConfig, SyntheticActionDataset
from hidden2stream.data.synthetic_flow import SyntheticFlowConfig, SyntheticFlowDataset
from hidden2stream.data.textures import ImageTextures, procedural_texture
from hidden2stream.errors import UserError


def backward_warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """Sample ``image (N, C, H, W)`` at ``x + flow(x)`` (pixels), bilinear, border padding."""
    _, _, height, width = image.shape
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij")
    grid = torch.stack([2 * (xs + flow[:, 0]) / (width - 1) - 1, 2 * (ys + flow[:, 1]) / (height - 1) - 1], dim=-1)
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


def masked_error(a: torch.Tensor, b: torch.Tensor, valid: torch.Tensor) -> float:
    return float(((a - b).abs().mean(dim=1, keepdim=True) * valid).sum() / valid.sum())


# --- textures ---------------------------------------------------------------------------------


def test_procedural_texture_is_rich_and_seeded() -> None:
    a = procedural_texture(torch.Generator().manual_seed(1), 40, 56)
    b = procedural_texture(torch.Generator().manual_seed(1), 40, 56)
    c = procedural_texture(torch.Generator().manual_seed(2), 40, 56)
    assert a.shape == (3, 40, 56)
    assert 0.0 <= a.min() and a.max() <= 1.0
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 0.05
    assert a.std(dim=(1, 2)).min() > 0.1  # contrast in every channel
    assert (a[:, :, 1:] - a[:, :, :-1]).abs().mean() > 0.01  # fine detail, not a flat gradient


def test_image_textures_from_folder(images_dir: Path) -> None:
    textures = ImageTextures(images_dir)
    assert len(textures) >= 1
    crop = textures.sample(torch.Generator().manual_seed(0), 32, 48)
    again = textures.sample(torch.Generator().manual_seed(0), 32, 48)
    big = textures.sample(torch.Generator().manual_seed(3), 2000, 1500)  # larger than every image
    assert crop.shape == (3, 32, 48) and crop.dtype == torch.float32
    assert torch.equal(crop, again)
    assert 0.0 <= crop.min() and crop.max() <= 1.0 and crop.std() > 0.01
    assert big.shape == (3, 2000, 1500)


def test_image_textures_bad_folders(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(UserError):
        ImageTextures(tmp_path)
    with pytest.raises(UserError):
        ImageTextures(tmp_path / "missing")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    with pytest.raises(UserError):
        ImageTextures(tmp_path)
    write_png((torch.rand(3, 20, 30) * 255).to(torch.uint8), str(tmp_path / "good.png"))
    with caplog.at_level(logging.WARNING):
        textures = ImageTextures(tmp_path)
    assert len(textures) == 1
    assert "broken.jpg" in caplog.text


# --- layers -----------------------------------------------------------------------------------


def test_render_and_exact_flow_of_a_translating_square() -> None:
    """Static background, a 10x10 square moving 3 px right per frame: exact flow and occlusion."""
    background = Layer(torch.full((3, 40, 40), 0.2), torch.ones(1, 40, 40), affine((0.0, 0.0)), affine((0.0, 0.0)))
    square = Layer(
        torch.full((3, 10, 10), 0.9),
        torch.ones(1, 10, 10),
        affine((0.0, 0.0), translation=(10.0, 12.0)),  # texture pixel (0, 0) at image (10, 12)
        affine((0.0, 0.0), translation=(3.0, 0.0)),
    )
    layers = [background, square]
    image, layer_index = render(layers, 1, 32, 32)
    assert image.shape == (3, 32, 32) and layer_index.shape == (32, 32)
    assert layer_index[12:22, 13:23].eq(1).all() and layer_index.sum() == 100
    assert torch.allclose(image[:, 12:22, 13:23], torch.tensor(0.9))
    flow, valid = exact_flow(layers, 1, 32, 32)
    assert flow.shape == (2, 32, 32) and valid.shape == (1, 32, 32)
    on_square = layer_index.eq(1)
    assert torch.allclose(flow[0][on_square], torch.tensor(3.0), atol=1e-4)
    assert flow[1].abs().max() < 1e-4 and flow[0][~on_square].abs().max() < 1e-4
    # background just right of the square is covered at t+1; the square's right columns leave nothing
    assert valid[0, 12:22, 23:26].eq(0).all()
    assert valid[0, 12:22, 13:23].eq(1).all()
    assert valid.sum() == 32 * 32 - 30


def test_superellipse_mask_area() -> None:
    ellipse = superellipse_mask(41, 61, 20.0, 10.0, 2.0)
    assert ellipse.shape == (1, 41, 61)
    assert abs(float(ellipse.sum()) - math.pi * 20 * 10) / (math.pi * 20 * 10) < 0.03


# --- synthetic flow ---------------------------------------------------------------------------


def test_flow_dataset_is_deterministic_per_index_and_seed() -> None:
    config = SyntheticFlowConfig(frames=3)
    a, b = SyntheticFlowDataset(10, config, seed=0), SyntheticFlowDataset(10, config, seed=0)
    other = SyntheticFlowDataset(10, config, seed=1)
    for key in ("frames", "flow", "valid"):
        assert torch.equal(a[4][key], b[4][key])
    assert not torch.equal(a[4]["frames"], other[4]["frames"])
    assert not torch.equal(a[4]["frames"], a[5]["frames"])


def test_flow_dataset_shapes_and_ranges() -> None:
    item = SyntheticFlowDataset(4, SyntheticFlowConfig(frames=4, height=48, width=40))[2]
    assert item["frames"].shape == (4, 3, 48, 40)
    assert item["flow"].shape == (3, 2, 48, 40)
    assert item["valid"].shape == (3, 1, 48, 40)
    assert 0.0 <= item["frames"].min() and item["frames"].max() <= 1.0
    assert set(item["valid"].unique().tolist()) <= {0.0, 1.0}
    assert all(v.dtype == torch.float32 for v in item.values())


@pytest.mark.parametrize("frames", [2, 4])
def test_flow_ground_truth_reconstructs_frames(frames: int) -> None:
    """Backward-warping frame t+1 by flow t gives frame t where valid (measured ~0.005-0.012 per
    item; the residual is bilinear resampling of the texture), zero flow does far worse."""
    dataset = SyntheticFlowDataset(6, SyntheticFlowConfig(frames=frames), seed=7)
    warped_errors, zero_errors = [], []
    for index in range(len(dataset)):
        item = dataset[index]
        current, following = item["frames"][:-1], item["frames"][1:]
        warped_errors.append(masked_error(backward_warp(following, item["flow"]), current, item["valid"]))
        zero_errors.append(masked_error(following, current, item["valid"]))
    assert max(warped_errors) < 0.02
    assert sum(zero_errors) > 4 * sum(warped_errors)


def test_valid_marks_occlusions_and_is_mostly_one() -> None:
    dataset = SyntheticFlowDataset(6, SyntheticFlowConfig(frames=2), seed=3)
    for index in range(len(dataset)):
        valid = dataset[index]["valid"]
        assert 0.7 < valid.mean() < 1.0  # foreground layers move, so something is occluded


def test_flow_magnitude_within_configured_bounds() -> None:
    translation_only = SyntheticFlowConfig(
        frames=3, max_rotation_deg=0.0, max_scale=0.0, max_shear=0.0, background_rotation_deg=0.0, background_scale=0.0
    )
    flows = torch.stack([SyntheticFlowDataset(6, translation_only)[i]["flow"] for i in range(6)])
    assert flows.norm(dim=2).max() <= translation_only.max_translation + 1e-4
    assert flows.norm(dim=2).mean() > 0.3

    config = SyntheticFlowConfig(frames=3)
    reach = math.hypot(config.height, config.width)  # farthest a pixel can be from a motion centre
    linear = math.radians(config.max_rotation_deg) + config.max_scale + config.max_shear
    flows = torch.stack([SyntheticFlowDataset(6, config)[i]["flow"] for i in range(6)])
    assert flows.norm(dim=2).max() <= config.max_translation + linear * reach

    still = SyntheticFlowConfig(
        max_translation=0.0, max_rotation_deg=0.0, max_scale=0.0, max_shear=0.0,
        background_translation=0.0, background_rotation_deg=0.0, background_scale=0.0,
    )
    item = SyntheticFlowDataset(2, still)[0]
    assert item["flow"].abs().max() < 1e-4 and item["valid"].eq(1).all()
    assert torch.equal(item["frames"][0], item["frames"][1])


def test_photometric_noise_changes_frames_not_flow() -> None:
    clean = SyntheticFlowDataset(3, SyntheticFlowConfig())[1]
    noisy = SyntheticFlowDataset(3, SyntheticFlowConfig(photometric_noise=0.05))[1]
    assert torch.equal(clean["flow"], noisy["flow"])
    difference = (clean["frames"] - noisy["frames"]).abs().mean()
    assert 0.01 < difference < 0.06


def test_flow_dataset_with_photos(images_dir: Path) -> None:
    item = SyntheticFlowDataset(2, SyntheticFlowConfig(image_dir=str(images_dir)))[0]
    assert item["frames"].shape == (2, 3, 64, 64)
    error = masked_error(backward_warp(item["frames"][1:], item["flow"]), item["frames"][:-1], item["valid"])
    assert error < 0.03


def test_flow_config_rejects_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        SyntheticFlowConfig(frames=1)
    with pytest.raises(ValueError):
        SyntheticFlowConfig(foreground=(3, 1))
    with pytest.raises(UserError):
        SyntheticFlowDataset(5, SyntheticFlowConfig(image_dir=str(tmp_path)))


# --- synthetic actions ------------------------------------------------------------------------


def saturated_centroid(frame: torch.Tensor) -> torch.Tensor:
    """Centroid (x, y) of the saturated (object) pixels of a frame (3, H, W); the background is grey-ish."""
    mask = ((frame.amax(0) - frame.amin(0)) > 0.15).float()
    ys, xs = torch.meshgrid(torch.arange(frame.shape[1]), torch.arange(frame.shape[2]), indexing="ij")
    return torch.stack([(mask * xs).sum(), (mask * ys).sum()]) / mask.sum()


def test_action_dataset_shapes_labels_and_determinism() -> None:
    dataset = SyntheticActionDataset(24)
    assert dataset.num_classes == 12 and len(dataset.class_names) == 12
    assert dataset.class_names[0] == "red-stripes/right" and dataset.class_names[-1] == "blue-checker/down"
    labels = [int(dataset[i]["label"]) for i in range(len(dataset))]
    assert sorted(labels) == sorted(list(range(12)) * 2)
    item = dataset[5]
    assert item["frames"].shape == (3, 6, 3, 64, 64)
    assert item["label"].dtype == torch.long and item["label"].dim() == 0
    assert 0.0 <= item["frames"].min() and item["frames"].max() <= 1.0
    assert torch.equal(item["frames"], SyntheticActionDataset(24)[5]["frames"])
    assert not torch.equal(item["frames"], SyntheticActionDataset(24, seed=1)[5]["frames"])


def test_action_object_moves_in_the_class_direction_and_shows_its_colour() -> None:
    dataset = SyntheticActionDataset(24, seed=2)
    expected = {"right": (1, 0), "left": (-1, 0), "up": (0, -1), "down": (0, 1)}
    for index in range(len(dataset)):
        item = dataset[index]
        appearance, motion = dataset.class_names[int(item["label"])].split("/")
        for window in item["frames"]:
            shift = saturated_centroid(window[-1]) - saturated_centroid(window[0])
            along = float(shift @ torch.tensor(expected[motion], dtype=torch.float32))
            assert along > 2.0, (index, motion, shift)
            assert float(shift.abs().sum()) - abs(along) < 0.5 * along
        centre = item["frames"][0, item["frames"].shape[1] // 2]
        mask = (centre.amax(0) - centre.amin(0)) > 0.15
        colour = dict(APPEARANCES)[appearance]
        assert int(centre[:, mask].mean(dim=1).argmax()) == max(range(3), key=lambda c: colour[c])


def test_action_rotation_and_zoom_classes_render() -> None:
    dataset = SyntheticActionDataset(8, SyntheticActionConfig(appearances=1, motions=8))
    assert dataset.class_names[4:] == ["red-stripes/rotate_cw", "red-stripes/rotate_ccw", "red-stripes/zoom_in", "red-stripes/zoom_out"]
    areas = {}
    for index in range(4, 8):
        frames = dataset[index]["frames"]
        saturated = ((frames.amax(2) - frames.amin(2)) > 0.15).float().sum(dim=(2, 3))  # (K, T+1)
        areas[dataset.class_names[index].split("/")[1]] = saturated[-1, -1] / saturated[0, 0]
        assert not torch.equal(frames[0, 0], frames[0, -1])
    assert areas["zoom_in"] > 1.2 and areas["zoom_out"] < 0.8


def test_action_config_rejects_paths_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="lower speed or clip_frames"):
        SyntheticActionConfig(clip_frames=32)
    with pytest.raises(ValueError):
        SyntheticActionConfig(motions=9)



def test_synthetic_action_options_that_cannot_work_are_one_line_user_errors() -> None:
    """The library refuses with ValueError; the options layer names the options in one UserError line."""
    with pytest.raises(UserError, match=r"--motions: motions must be in 1\.\.8, got 9") as err:
        action_datasets(TrainDataOptions(motions=9), seed=0)
    assert "\n" not in str(err.value)


def test_static_background_keeps_the_camera_still() -> None:
    """``static_background``: the probability that the background does not move; with no foreground
    layers a still background means zero flow everywhere and two identical frames."""
    moving = SyntheticFlowConfig(frames=2, height=32, width=32, foreground=(0, 0), background_translation=3.0)
    still = dataclasses.replace(moving, static_background=1.0)
    for index in range(4):
        assert SyntheticFlowDataset(4, moving, seed=1)[index]["flow"].abs().amax() > 0.1
        item = SyntheticFlowDataset(4, still, seed=1)[index]
        assert item["flow"].abs().amax() == 0 and torch.equal(item["frames"][0], item["frames"][1])
    half = dataclasses.replace(moving, static_background=0.5)
    still_items = [SyntheticFlowDataset(40, half, seed=2)[i]["flow"].abs().amax() == 0 for i in range(40)]
    assert 5 < sum(still_items) < 35
    with pytest.raises(ValueError, match="probability"):
        dataclasses.replace(moving, static_background=1.5)
