"""Real ground truth: .flo / KITTI PNG readers, the pair-folder loader, pair_flow and scoring.

Every file is hand-made in the test with known values, so readers are checked for exact values.
"""
from __future__ import annotations

import pytest
import torch

from hidden2stream.data.flow_pairs import FlowPair, FlowPairFolder, find_flow_pairs, iter_flow_pairs
from hidden2stream.errors import UserError
from hidden2stream.evaluation.flow import FlowMethod, score_pairs, synthetic_pairs, zero_method
from hidden2stream.flow.io import read_flo, read_flow_with_valid, read_kitti_flow
from hidden2stream.flow.predict import pair_flow, window_flows
from hidden2stream.models.motionnet import motionnet_tiny

from helpers import make_kitti, make_middlebury, random_frame, write_flo_by_hand, write_frame_png, write_kitti_flow_png


def test_flo_unknown_pixel_is_invalid(tmp_path):
    path = tmp_path / "flow.flo"
    # 3x2 pixels, (u, v) row by row; pixel (row 1, col 0) has v = 1e10: "unknown" (|v| > 1e9)
    write_flo_by_hand(path, 3, 2, [0.5, -1.0, 2.0, 3.0, -4.25, 0.0,
                                   1.5, 1e10, 0.0, 0.125, 7.0, -7.0])
    raw = read_flo(path)  # the old API still gives the raw values
    assert raw.shape == (2, 2, 3) and raw[1, 1, 0].item() == 1e10
    flow, valid = read_flow_with_valid(path)
    assert flow.dtype == valid.dtype == torch.float32
    assert valid.tolist() == [[[1.0, 1.0, 1.0], [0.0, 1.0, 1.0]]]
    assert flow[0].tolist() == [[0.5, 2.0, -4.25], [0.0, 0.0, 7.0]]  # the unknown pixel's flow is zeroed
    assert flow[1].tolist() == [[-1.0, 3.0, 0.0], [0.0, 0.125, -7.0]]


def test_kitti_flow_png_exact_values(tmp_path):
    path = tmp_path / "000000_10.png"
    # values on KITTI's 1/64 px grid are stored exactly; the invalid pixel holds nonsense flow
    u = [[1.5, -2.25, 0.0], [100.0, -0.015625, 3.0]]
    v = [[-1.0, 0.5, 511.984375], [-512.0, 2.0, 0.0]]
    valid = [[1, 1, 1], [1, 0, 1]]
    write_kitti_flow_png(path, u, v, valid)
    for flow, mask in (read_kitti_flow(path), read_flow_with_valid(path)):
        assert flow.shape == (2, 2, 3) and mask.shape == (1, 2, 3)
        assert mask[0].tolist() == [[1.0, 1.0, 1.0], [1.0, 0.0, 1.0]]
        assert flow[0].tolist() == [[1.5, -2.25, 0.0], [100.0, 0.0, 3.0]]
        assert flow[1].tolist() == [[-1.0, 0.5, 511.984375], [-512.0, 0.0, 0.0]]


def test_flow_readers_reject_other_files(tmp_path):
    eight_bit = tmp_path / "frame.png"
    write_frame_png(eight_bit, torch.zeros(3, 4, 4, dtype=torch.uint8))
    with pytest.raises(UserError, match="16-bit"):
        read_kitti_flow(eight_bit)
    with pytest.raises(UserError, match="unknown flow file type"):
        read_flow_with_valid(tmp_path / "flow.pfm")
    with pytest.raises(UserError, match="no such file"):
        read_kitti_flow(tmp_path / "absent.png")


def test_loader_reads_middlebury_and_kitti_layouts(tmp_path):
    a, b = random_frame(6, 8, 1), random_frame(6, 8, 2)
    make_middlebury(tmp_path / "gt" / "Alpha", a, b, 3.0, -4.0)
    make_kitti(tmp_path / "gt" / "kitti", "000001", b, a, -6.0, 8.0)
    make_kitti(tmp_path / "gt" / "kitti", "000000", a, b, 0.5, 0.25)
    write_frame_png(tmp_path / "gt" / "kitti" / "image_2" / "000002_10.png", a)  # no flow: not a pair
    folder = FlowPairFolder(tmp_path / "gt")
    assert folder.names == ["Alpha", "kitti/000000", "kitti/000001"] and len(folder) == 3
    assert [f.layout for f in folder.files] == ["middlebury", "kitti", "kitti"]
    pairs = list(folder)
    assert all(isinstance(p, FlowPair) for p in pairs)
    name, frame1, frame2, flow, valid = pairs[0]
    assert frame1.shape == (3, 6, 8) and flow.shape == (2, 6, 8) and valid.shape == (1, 6, 8)
    assert torch.equal(frame1, a.float() / 255) and torch.equal(frame2, b.float() / 255)
    assert valid.sum() == 6 * 8 - 1 and valid[0, 0, 0] == 0 and flow[:, 0, 0].tolist() == [0.0, 0.0]
    assert flow[:, 1, 1].tolist() == [3.0, -4.0]
    kitti = pairs[2]
    assert torch.equal(kitti.frame1, b.float() / 255) and torch.equal(kitti.frame2, a.float() / 255)
    assert kitti.valid[0, -1, -1] == 0 and kitti.valid.sum() == 6 * 8 - 1
    assert kitti.flow[:, 0, 0].tolist() == [-6.0, 8.0]
    # a KITTI root given directly names pairs by their number; a Middlebury folder by its own name
    assert [p.name for p in iter_flow_pairs(tmp_path / "gt" / "kitti")] == ["000000", "000001"]
    assert [f.name for f in find_flow_pairs(tmp_path / "gt" / "Alpha")] == ["Alpha"]
    # KITTI 2012 keeps its colour frames in colored_0/
    (tmp_path / "gt" / "kitti" / "image_2").rename(tmp_path / "gt" / "kitti" / "colored_0")
    kitti2012 = FlowPairFolder(tmp_path / "gt" / "kitti")
    assert [f.frame2.relative_to(tmp_path).as_posix() for f in kitti2012.files] == [
        "gt/kitti/colored_0/000000_11.png", "gt/kitti/colored_0/000001_11.png"]
    assert torch.equal(kitti2012[1].frame1, b.float() / 255)


def test_loader_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="does not exist") as missing:
        iter_flow_pairs(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no frame pairs with ground-truth flow") as empty:
        FlowPairFolder(tmp_path / "empty")
    broken = tmp_path / "broken" / "Beta"
    make_middlebury(broken, random_frame(4, 4, 0), random_frame(4, 4, 1), 1.0, 1.0)
    (broken / "frame2.png").unlink()
    with pytest.raises(UserError, match="frame2.png") as lacking:
        find_flow_pairs(tmp_path / "broken")
    kitti = tmp_path / "kitti"
    make_kitti(kitti, "000000", random_frame(4, 4, 0), random_frame(4, 4, 1), 1.0, 1.0)
    (kitti / "image_2" / "000000_11.png").unlink()
    with pytest.raises(UserError, match="000000_11.png") as no_second:
        find_flow_pairs(kitti)
    assert all("\n" not in str(e.value) for e in (missing, empty, lacking, no_second))


@pytest.mark.parametrize("frames", [2, 3])
def test_pair_flow_any_window_length(frames):
    model = motionnet_tiny(frames=frames)
    model.train()
    frame1, frame2 = torch.rand(3, 20, 36), torch.rand(3, 20, 36)  # not multiples of 32
    flow = pair_flow(model, frame1, frame2, "cpu")
    assert flow.shape == (2, 20, 36) and flow.dtype == torch.float32 and not flow.requires_grad
    assert model.training  # the model's mode is restored
    window = torch.stack([frame1] + [frame2] * (frames - 1))[None]  # [frame1, frame2, frame2, ...]
    model.eval()
    with torch.no_grad():
        expected = model(window, all_scales=False)[0, 0]
    # the same forward pass on the same input: identical up to float32 rounding (default tolerances)
    torch.testing.assert_close(flow, expected)


def test_window_flows_cover_a_sequence_like_a_video():
    model = motionnet_tiny(frames=3).eval()
    frames = torch.rand(4, 3, 16, 16)  # 3 flows: one full window (flows 0, 1), one padded (flow 2)
    flows = window_flows(model, frames, torch.device("cpu"))
    assert flows.shape == (3, 2, 16, 16)
    with torch.no_grad():
        first = model(frames[None, 0:3], all_scales=False)[0]
        last = model(torch.stack([frames[2], frames[3], frames[3]])[None], all_scales=False)[0, 0]
    # batched (2 windows) vs one window at a time: same arithmetic up to float32 rounding
    torch.testing.assert_close(flows[:2], first)
    torch.testing.assert_close(flows[2], last)
    assert window_flows(motionnet_tiny(frames=2), frames[:2], "cpu").shape == (1, 2, 16, 16)


def test_score_pairs_hand_made():
    flow = torch.zeros(2, 2, 3)
    flow[0], flow[1] = 3.0, 4.0  # |flow| = 5 everywhere
    valid = torch.ones(1, 2, 3)
    frame = torch.zeros(3, 2, 3)
    pairs = [FlowPair("a", frame, frame, flow, valid), FlowPair("b", frame, frame, 2 * flow, valid),
             FlowPair("empty", frame, frame, flow, torch.zeros(1, 2, 3))]
    truth = FlowMethod("truth", lambda f1, f2: flow.clone(), lambda frames: None)
    seen = []
    scores = score_pairs([zero_method(), truth], pairs, on_pair=lambda pair, flows: seen.append(sorted(flows)))
    zero = scores["zero flow"]
    # zero flow: EPE = |GT| exactly (5 and 10); both exceed 3 px and 5 % of |GT|: all outliers
    assert zero["pairs"]["a"]["epe"] == 5.0 and zero["pairs"]["b"]["epe"] == 10.0
    assert zero["mean_epe"] == 7.5 and zero["mean_fl_all"] == 1.0 and zero["count"] == 2  # "empty" left out
    # "truth" always returns pair a's flow: exact on a, off by 5 on b (an outlier: 5 > 3 and > 0.5)
    assert scores["truth"]["pairs"]["a"]["epe"] == 0.0 and scores["truth"]["mean_epe"] == 2.5
    assert scores["truth"]["mean_fl_all"] == 0.5
    assert seen == [["truth", "zero flow"]] * 3
    with pytest.raises(ValueError, match="unique"):
        score_pairs([zero_method(), zero_method()], pairs)


def test_synthetic_pairs_are_first_pairs_of_windows():
    items = [{"frames": torch.rand(3, 3, 4, 4), "flow": torch.rand(2, 2, 4, 4), "valid": torch.ones(2, 1, 4, 4)}
             for _ in range(11)]
    pairs = list(synthetic_pairs(items))
    assert [p.name for p in pairs][:2] == ["00", "01"] and len(pairs) == 11
    assert torch.equal(pairs[3].frame2, items[3]["frames"][1]) and torch.equal(pairs[3].flow, items[3]["flow"][0])
