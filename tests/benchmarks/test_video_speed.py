"""benchmarks/video_speed.py on tiny settings: the JSON written, broken videos skipped, bad options.

Speeds are never asserted (they depend on the machine); only that every figure was measured and
that the figures agree with each other.
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import cv2
import pytest
import torch

from helpers import assert_machine, load, positive

from hidden2stream_experiments.cli import run_cli

TINY = ["--frames", "6", "--segments", "2", "--motion", "tiny", "--repeats", "1", "--warmup", "1",
        "--workers", "1", "--device", "cpu"]


def clip_folder(tmp_path: Path, clips_dir: Path, bad_videos_dir: Path) -> Path:
    """One good clip (176x144, 120 frames) beside a text file and a 5-frame video."""
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "carphone_lowbitrate.mp4").symlink_to(clips_dir / "carphone_lowbitrate.mp4")
    for name in ("not_a_video.mp4", "too_short_5_frames.mp4"):
        (folder / name).symlink_to(bad_videos_dir / name)
    return folder


def test_video_speed_smoke(tmp_path, clips_dir, bad_videos_dir, caplog):
    bench = load("benchmarks", "video_speed")
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="video_speed"):
        result = bench.main(["--clips", str(clip_folder(tmp_path, clips_dir, bad_videos_dir)), "--sizes", "32,native",
                             "--onnx", "off", "--out", str(out)] + TINY)
    skipped = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipping")]
    # each broken video: one log line per size, and the run goes on with the good one
    assert sum("not_a_video.mp4" in m for m in skipped) == 2
    assert sum("too_short_5_frames.mp4" in m and "5 frames, a window needs 6" in m for m in skipped) == 2
    saved = json.loads((out / "video_speed.json").read_text())
    assert set(saved) == {"machine", "settings", "sizes"} and saved == json.loads(json.dumps(result))
    assert_machine(saved["machine"])
    assert set(saved["sizes"]) == {"32", "native"}
    for size in saved["sizes"].values():
        assert size["videos"] == 1 and size["repeats"] == 1
        rows = size["rows"]
        assert set(rows) == {"two-stage/tvl1/tiny", "hidden/stacked/tiny", "hidden/branched/tiny"}
        base = rows["two-stage/tvl1/tiny"]
        for row in rows.values():
            for key in ("decode_s_per_video", "compute_s_per_video", "latency_s_per_video", "videos_per_s"):
                assert positive(row[key])
            assert row["decode_s_per_video"] == base["decode_s_per_video"]  # one decode, in every row
            assert row["latency_s_per_video"] == pytest.approx(row["decode_s_per_video"] + row["compute_s_per_video"])
            assert row["videos_per_s"] == pytest.approx(1 / row["latency_s_per_video"])  # one video
        assert 0 < base["flow_s_per_video"] < base["compute_s_per_video"]  # TV-L1, then the CNNs
        for key in ("hidden/stacked/tiny", "hidden/branched/tiny"):
            assert rows[key]["baseline"] == "two-stage/tvl1/tiny"
            assert rows[key]["speedup"] == pytest.approx(rows[key]["videos_per_s"] / base["videos_per_s"])
        (clip,) = size["storage"]["clips"]
        assert clip["clip"] == "carphone_lowbitrate.mp4" and clip["flows_written"] == 2 * 5
        assert clip["gb_per_hour"] == pytest.approx(clip["bytes_per_flow"] * clip["fps"] * 3600 / 1e9)
        assert clip["bytes_per_flow"] > 0 and size["storage"]["hidden_gb_per_hour"] == 0.0
    assert saved["sizes"]["32"]["storage"]["clips"][0]["size"] == "32x32"
    assert saved["sizes"]["native"]["storage"]["clips"][0]["size"] == "176x144"
    assert saved["settings"]["onnx"] is False and "--onnx off" in saved["settings"]["onnx_note"]
    report = (out / "video_speed.md").read_text()
    assert report.splitlines()[0].startswith("# Video to label speed (")
    assert "| two-stage: TV-L1 (1 process) + tiny streams |" in report and "hidden GB/hour" in report


def test_two_stage_cnn_is_the_hidden_networks_cnn():
    """Given MotionNet's own flow, the two-stage CNN half gives the hidden network's fused logits:
    the baseline differs only in where the flow comes from."""
    from hidden2stream.models.two_stream import hidden_two_stream

    bench = load("benchmarks", "video_speed")
    model = hidden_two_stream(5, motion="tiny", frames=3, spatial_arch="tiny", temporal_arch="tiny").eval()
    frames = torch.rand(2, 3, 3, 3, 40, 56)
    with torch.no_grad():
        expected = model(frames)["fused"]
        flows = model.motionnet(frames.flatten(0, 1), all_scales=False)  # the flow the hidden stream classifies
        got = bench.TwoStageCNN(model)(frames, flows.unflatten(0, (2, 3)))
    torch.testing.assert_close(got, expected)


def test_flow_jpegs_are_tsn_quantised(tmp_path):
    """u, v clipped to [-20, 20] px and mapped to 0..255: -30 -> 0, 0 -> 128, 7 -> 172, 25 -> 255."""
    bench = load("benchmarks", "video_speed")
    folder = tmp_path / "jpeg"
    folder.mkdir()
    flows = torch.empty(4, 2, 16, 16)
    for i, (u, v) in enumerate([(-30.0, 0.0), (7.0, 25.0), (0.0, 0.0), (20.0, -20.0)]):
        flows[i, 0], flows[i, 1] = u, v
    total = bench.flow_jpeg_bytes(flows, folder)
    assert total > 0 and not any(folder.iterdir())  # sizes summed, files removed
    kept = tmp_path / "kept"
    kept.mkdir()
    assert bench.flow_jpeg_bytes(flows, kept, keep=True) == total
    expected = {0: (0, 128), 1: (172, 255), 2: (128, 128), 3: (255, 0)}
    for i, (u, v) in expected.items():
        for axis, value in (("x", u), ("y", v)):
            image = cv2.imread(str(kept / f"flow_{axis}_{i:05d}.jpg"), cv2.IMREAD_GRAYSCALE)
            assert image.shape == (16, 16) and abs(int(image.mean().round()) - value) <= 1


@pytest.mark.parametrize("argv", [["--sizes", "huge"], ["--motion", "giant"], ["--hidden", "sideways"],
                                  ["--frames", "2"], ["--workers", "0"], ["--warmup", "-1"]])
def test_video_speed_bad_options_are_one_line(argv, capsys):
    bench = load("benchmarks", "video_speed")
    with pytest.raises(SystemExit) as exit_info:
        run_cli(bench.main, argv + ["--clips", "."])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")


def test_video_speed_without_readable_video_is_one_line(tmp_path, bad_videos_dir, capsys, caplog):
    bench = load("benchmarks", "video_speed")
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "empty.mp4").symlink_to(bad_videos_dir / "empty.mp4")
    with pytest.raises(SystemExit) as exit_info, caplog.at_level(logging.WARNING, logger="video_speed"):
        run_cli(bench.main, ["--clips", str(folder), "--sizes", "32", "--onnx", "off", "--out", str(tmp_path)] + TINY)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no video in")
    assert any("skipping empty.mp4" in r.getMessage() for r in caplog.records)


def test_video_speed_onnx_runtime_rows(tmp_path, clips_dir, bad_videos_dir):
    for package in ("onnx", "onnxruntime", "onnxscript"):
        pytest.importorskip(package)
    bench = load("benchmarks", "video_speed")
    out = tmp_path / "out"
    bench.main(["--clips", str(clip_folder(tmp_path, clips_dir, bad_videos_dir)), "--sizes", "32", "--hidden",
                "stacked", "--onnx", "on", "--out", str(out)] + TINY)
    saved = json.loads((out / "video_speed.json").read_text())
    rows = saved["sizes"]["32"]["rows"]
    assert set(rows) == {"two-stage/tvl1/tiny", "hidden/stacked/tiny", "hidden/stacked/tiny/ort"}
    ort = rows["hidden/stacked/tiny/ort"]
    assert ort["engine"] == "onnxruntime" and positive(ort["videos_per_s"]) and positive(ort["speedup"])
    # float32 logits of the same graph, see experiments/export.py's LOGIT_TOLERANCE
    assert math.isfinite(ort["max_abs_logit_difference_vs_pytorch"]) and ort["max_abs_logit_difference_vs_pytorch"] <= 1e-4
    assert saved["settings"]["onnx"] is True and saved["settings"]["onnx_opset"] >= 16
    assert "(ONNX Runtime)" in (out / "video_speed.md").read_text()
