"""Flow operations: warping, .flo I/O, metrics, visualisation and OpenCV baselines."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.io import decode_png, read_file

from hidden2stream.errors import UserError
from hidden2stream.flow.classic import CLASSIC_METHODS, classic_flow, classic_flow_sequence
from hidden2stream.flow.io import read_flo, write_flo
from hidden2stream.flow.metrics import endpoint_error, fl_all, photometric_l1, warped_ssim
from hidden2stream.flow.visualize import flow_to_rgb, make_grid_png, save_png
from hidden2stream.flow.warp import backward_warp, pixel_grid

from helpers import constant_flow, smooth_texture


def test_pixel_grid_is_x_then_y():
    grid = pixel_grid(2, 3)
    assert grid.shape == (2, 2, 3)
    assert torch.equal(grid[0], torch.tensor([[0.0, 1, 2], [0, 1, 2]]))
    assert torch.equal(grid[1], torch.tensor([[0.0, 0, 0], [1, 1, 1]]))


def test_backward_warp_integer_translation_is_exact():
    frame0 = torch.rand(2, 3, 16, 20)
    u, v = 3, 2
    frame1 = torch.zeros_like(frame0)
    frame1[..., v:, u:] = frame0[..., :-v, :-u]  # content moves right by u, down by v
    warped, valid = backward_warp(frame1, constant_flow(2, 16, 20, u, v))
    assert valid.shape == (2, 1, 16, 20)
    assert torch.all(valid[..., : 16 - v, : 20 - u] == 1)
    assert torch.all(valid[..., 16 - v :, :] == 0) and torch.all(valid[..., :, 20 - u :] == 0)
    inside = valid.bool().expand_as(warped)
    # Pixel -> grid -> pixel in float32 lands within a few ulps of 19 (~4e-6 px) of the integer
    # target, mixing in at most that much of a neighbour (values in [0, 1]); seen 1e-6 with
    # AVX-512, AVX2 and scalar kernels alike.
    torch.testing.assert_close(warped[inside], frame0[inside], atol=1e-5, rtol=0)


def test_backward_warp_subpixel_translation():
    u, v = 1.75, -0.75
    frame0 = smooth_texture(24, 32)[None]
    frame1 = smooth_texture(24, 32, dx=u, dy=v)[None]
    warped, valid = backward_warp(frame1, constant_flow(1, 24, 32, u, v))
    assert torch.all(valid[..., 0, :] == 0)  # y - 0.75 leaves the frame's area (y < -0.5)
    assert torch.all(valid[..., -2:] == 0) and torch.all(valid[..., 1:, :-2] == 1)  # x + 1.75 > 31.5
    inside = valid.bool().expand_as(warped)
    assert (warped[inside] - frame0[inside]).abs().max() < 0.02


def test_backward_warp_keeps_flow_dtype():
    flow = torch.zeros(1, 2, 8, 8, dtype=torch.float64)
    warped, valid = backward_warp(torch.rand(1, 3, 8, 8), flow)
    assert warped.dtype == valid.dtype == torch.float64


def test_backward_warp_half_precision_flow_addresses_wide_images():
    image = torch.rand(1, 1, 2, 300)
    warped, valid = backward_warp(image, torch.zeros(1, 2, 2, 300, dtype=torch.bfloat16))
    assert warped.dtype == torch.float32 and bool(valid.all())
    torch.testing.assert_close(warped, image)


def test_backward_warp_last_column_is_valid():
    # a flow of (W-1, 0) maps column 0 exactly onto the last column, still valid
    _, valid = backward_warp(torch.rand(1, 1, 3, 5), constant_flow(1, 3, 5, 4.0, 0.0))
    assert valid[0, 0, :, 0].tolist() == [1.0, 1.0, 1.0] and valid[0, 0, :, 1:].sum() == 0


def test_edge_pixels_with_a_small_outward_flow_stay_valid_and_read_the_edge():
    # Within half a pixel of the frame: still inside its area, sampled from the edge pixel.
    # (On a 2x2 pyramid level every pixel is an edge pixel; the loss must keep seeing them.)
    image = torch.arange(4.0).view(1, 1, 2, 2)
    warped, valid = backward_warp(image, constant_flow(1, 2, 2, 0.4, -0.4))
    assert bool(valid.all())
    torch.testing.assert_close(warped, torch.tensor([[[[0.4, 1.0], [1.6, 2.2]]]]))
    _, valid = backward_warp(image, constant_flow(1, 2, 2, 0.6, 0.0))
    assert valid[0, 0].tolist() == [[1.0, 0.0], [1.0, 0.0]]


def test_flo_round_trip_is_exact(tmp_path):
    flow = torch.randn(2, 5, 7) * 10
    path = tmp_path / "sub" / "flow.flo"
    write_flo(path, flow)
    assert path.stat().st_size == 12 + 5 * 7 * 2 * 4
    assert torch.equal(read_flo(path), flow)
    write_flo(path, flow.numpy().astype(np.float64))
    assert torch.equal(read_flo(path), flow)


def test_flo_bad_files_raise_user_error(tmp_path):
    bad = tmp_path / "bad.flo"
    bad.write_bytes(np.array([1.0, 0, 0], np.float32).tobytes())
    with pytest.raises(UserError, match="bad.flo"):
        read_flo(bad)
    short = tmp_path / "short.flo"
    write_flo(short, torch.zeros(2, 4, 4))
    short.write_bytes(short.read_bytes()[:-4])
    with pytest.raises(UserError, match="short.flo"):
        read_flo(short)


def test_endpoint_error_and_fl_all_hand_made():
    gt = torch.zeros(1, 2, 1, 4)
    gt[0, 0] = torch.tensor([10.0, 10.0, 100.0, 0.0])
    pred = gt.clone()
    pred[0, 0, 0, 0] += 3.0  # EPE 3: not an outlier (needs > 3)
    pred[0, 1, 0, 1] += 4.0  # EPE 4 > 3 and > 0.5: outlier
    pred[0, 0, 0, 2] += 4.0  # EPE 4 > 3 but < 5% of 100: not an outlier
    pred[0, 0, 0, 3] += 6.0  # EPE 6: outlier
    assert endpoint_error(pred, gt).item() == pytest.approx((3 + 4 + 4 + 6) / 4)
    assert fl_all(pred, gt).item() == pytest.approx(0.5)
    valid = torch.tensor([1.0, 1.0, 0.0, 0.0]).view(1, 1, 1, 4)
    assert endpoint_error(pred, gt, valid).item() == pytest.approx(3.5)
    assert fl_all(pred, gt, valid).item() == pytest.approx(0.5)
    assert endpoint_error(pred, gt).ndim == 0


def test_photometric_metrics_prefer_true_flow():
    frame0 = smooth_texture(32, 32)[None]
    frame1 = smooth_texture(32, 32, dx=2.0, dy=1.0)[None]
    true_flow, zero = constant_flow(1, 32, 32, 2.0, 1.0), torch.zeros(1, 2, 32, 32)
    assert photometric_l1(frame0, frame1, true_flow) < 1e-3 < photometric_l1(frame0, frame1, zero)
    assert warped_ssim(frame0, frame1, true_flow) > 0.99 > warped_ssim(frame0, frame1, zero)


def test_flow_to_rgb_shapes_and_common_scale():
    flow = torch.zeros(2, 2, 4, 6)
    flow[0, 0] = 1.0  # 1 px to the right
    flow[1, 0] = 4.0  # 4 px to the right
    own = flow_to_rgb(flow)
    assert own.shape == (2, 3, 4, 6) and own.dtype == torch.uint8
    assert torch.equal(own[0], own[1])  # each flow scaled by its own maximum
    common = flow_to_rgb(flow, max_magnitude=4.0)
    assert torch.equal(common[1], own[1])  # 4 px reaches the rim
    assert common[0].float().mean() > common[1].float().mean()  # 1 px is paler (closer to white)
    assert flow_to_rgb(flow[0], max_magnitude=2.0).shape == (3, 4, 6)
    assert torch.equal(flow_to_rgb(flow * 10, max_magnitude=4.0)[1], common[1])  # clamped


def test_save_png_and_grid(tmp_path):
    image = torch.rand(3, 8, 10)
    path = save_png(image, tmp_path / "a" / "img.png")
    decoded = decode_png(read_file(str(path)))
    assert torch.equal(decoded, (image * 255).round().to(torch.uint8))
    small = torch.zeros(3, 4, 5, dtype=torch.uint8)
    grid_path = make_grid_png([image, small, image], tmp_path / "g.png", ncol=2)
    grid = decode_png(read_file(str(grid_path)))
    assert grid.shape == (3, 2 + 2 * (8 + 2), 2 + 2 * (10 + 2))
    with pytest.raises(ValueError):
        make_grid_png([], tmp_path / "empty.png", ncol=2)


@pytest.mark.parametrize("method", ["tvl1", "dis"])
def test_classic_flow_recovers_translation(method):
    frame0 = smooth_texture(64, 64)
    frame1 = smooth_texture(64, 64, dx=2.0, dy=1.0)  # content moves by (+2, +1) px
    flow = classic_flow(method, frame0, frame1)
    assert flow.shape == (2, 64, 64) and flow.dtype == torch.float32
    centre = flow[:, 16:48, 16:48].mean(dim=(1, 2))
    assert abs(centre[0].item() - 2.0) < 0.5 and abs(centre[1].item() - 1.0) < 0.5


def test_classic_flow_sequence_and_errors():
    frames = torch.stack([smooth_texture(32, 32, dx=float(t)) for t in range(3)])
    flows = classic_flow_sequence("farneback", frames)
    assert flows.shape == (2, 2, 32, 32) and torch.isfinite(flows).all()
    assert "farneback" in CLASSIC_METHODS
    with pytest.raises(ValueError, match="tvl1"):
        classic_flow("lucas", frames[0], frames[1])
