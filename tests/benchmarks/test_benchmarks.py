"""Smoke tests of the benchmark scripts on tiny settings: result files, keys, finite positive figures.

Speeds are never asserted (they depend on the machine); only that every figure was measured.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from helpers import assert_machine, load, one_clip, positive, translated_pair, write_counter_video



def test_flow_speed_smoke(tmp_path, clips_dir):
    bench = load("benchmarks", "flow_speed")
    out = tmp_path / "out"
    result = bench.main(["--clips", str(one_clip(tmp_path, clips_dir)), "--sizes", "32,native", "--pairs", "10",
                         "--repeats", "1", "--native-repeats", "1", "--warmup", "0", "--models", "tiny",
                         "--onnx", "off", "--device", "cpu", "--out", str(out)])  # ORT rows: tests/test_export.py
    saved = json.loads((out / "flow_speed.json").read_text())
    assert set(saved) == {"machine", "settings", "sizes", "compute"} and saved == json.loads(json.dumps(result))
    assert_machine(saved["machine"])
    assert set(saved["sizes"]) == {"32", "native"}
    classic = {"tvl1", "farneback", "dis"}
    # 10 pairs make one 10-flow stack: the 11-frame model is timed on them; 1 native pair does not.
    assert set(saved["sizes"]["32"]["pairs_per_s"]) == {"motionnet-tiny", "motionnet-tiny-w11"} | classic
    assert set(saved["sizes"]["native"]["pairs_per_s"]) == {"motionnet-tiny"} | classic
    for size in saved["sizes"].values():
        assert all(positive(v) for v in size["pairs_per_s"].values())
        assert {"tiny/tvl1", "tiny/dis"} <= set(size["ratios"]) and all(positive(v) for v in size["ratios"].values())
    assert saved["sizes"]["32"]["pairs"] == 10 and "tiny-w11/tvl1" in saved["sizes"]["32"]["ratios"]
    assert saved["sizes"]["native"]["clips"][0]["size"] == "176x144"
    compute = saved["compute"]["models"]
    assert set(compute) == {"tiny", "tiny-w11"} and all(positive(m["gflops_per_pair"]) for m in compute.values())
    assert all(m["peak_fraction"] is None for m in compute.values())  # CPU: no GPU peak
    # Per pair, the window model shares its encoder over 10 flows: fewer FLOPs than the pair model.
    assert compute["tiny-w11"]["gflops_per_pair"] < compute["tiny"]["gflops_per_pair"]
    assert "| tvl1 |" in (out / "flow_speed.md").read_text()


def test_flow_speed_rejects_bad_sizes(capsys):
    with pytest.raises(SystemExit) as exit_info:
        load("benchmarks", "flow_speed").main(["--sizes", "huge"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def tiny_checkpoint(path: Path, frames: int) -> Path:
    """A MotionNet-tiny checkpoint (random weights) as pretrain_motion.py writes it."""
    from hidden2stream.models.motionnet import motionnet_tiny
    from hidden2stream.checkpoint import save_atomic

    model = motionnet_tiny(frames)
    return save_atomic({"kind": "motionnet", "model_config": model.config.to_dict(), "model": model.state_dict()}, path)


def test_flow_quality_smoke(tmp_path, images_dir, clips_dir):
    from helpers import make_kitti, make_middlebury, random_frame

    from benchmarks.common import machine_line

    gt = tmp_path / "gt"  # hand-made ground truth: constant flow, one pixel without ground truth each
    make_middlebury(gt / "Alpha", random_frame(32, 32, 0), random_frame(32, 32, 1), 3.0, -4.0)
    make_kitti(gt / "kitti", "000000", random_frame(32, 32, 2), random_frame(32, 32, 3), -6.0, 8.0)
    checkpoints = [tiny_checkpoint(tmp_path / f"w{n}" / "checkpoint.pt", n) for n in (2, 3)]
    out = tmp_path / "out"
    bench = load("benchmarks", "flow_quality")
    result = bench.main(
        ["--checkpoint", str(checkpoints[0]), "--checkpoint", str(checkpoints[1]), "--real-root", str(gt),
         "--synthetic-sizes", "32", "--items", "2", "--grid-rows", "1", "--clips", str(one_clip(tmp_path, clips_dir)),
         "--clip-windows", "1", "--clip-frames", "3", "--clip-size", "32", "--device", "cpu", "--out", str(out)])
    saved = json.loads((out / "flow_quality.json").read_text())
    assert set(saved) == {"machine", "machine_line", "settings", "methods", "real", "synthetic", "clips", "grids",
                          "wall_s"} and saved == json.loads(json.dumps(result))
    assert_machine(saved["machine"])
    assert saved["machine_line"] == machine_line(saved["machine"])
    report = (out / "flow_quality.md").read_text()
    assert report.splitlines()[0] == f"# Flow quality ({saved['machine_line']})"
    methods = ["MotionNet w2 (T+1=2)", "MotionNet w3 (T+1=3)", "OpenCV TV-L1", "OpenCV DIS", "OpenCV Farneback",
               "zero flow"]
    assert list(saved["methods"]) == methods
    real = saved["real"]["methods"]
    for method in methods:
        pairs = real[method]["pairs"]
        assert set(pairs) == {"Alpha", "kitti/000000"}
        assert all(math.isfinite(p["epe"]) and p["epe"] >= 0 and 0 <= p["fl_all"] <= 1 for p in pairs.values())
        assert real[method]["mean_epe"] == pytest.approx((pairs["Alpha"]["epe"] + pairs["kitti/000000"]["epe"]) / 2)
        assert positive(saved["synthetic"]["32"]["methods"][method]["epe"])
        assert saved["clips"]["methods"][method]["pairs"] == 2  # one 3-frame window
    # zero flow's EPE is |GT| over the valid pixels: |(3, -4)| = 5 and |(-6, 8)| = 10, exactly in float32;
    # both exceed 3 px and 5 % of |GT|, so every valid pixel is an outlier
    zero = real["zero flow"]
    assert zero["pairs"]["Alpha"]["epe"] == 5.0 and zero["pairs"]["kitti/000000"]["epe"] == 10.0
    assert zero["mean_epe"] == 7.5 and zero["mean_fl_all"] == 1.0
    assert "| zero flow | 5.000 | 10.000 | 7.500 | 1.000 |" in report
    assert "| method | Alpha EPE | kitti/000000 EPE | real mean EPE | real mean Fl-all | synthetic 32x32 EPE |" in report
    syn = saved["synthetic"]["32"]  # motion scaled with the size: 30 px at 224, background half of it
    assert syn["max_translation"] == pytest.approx(30 * 32 / 224) == 2 * syn["background_translation"]
    assert saved["real"]["roots"][0]["sizes"] == {"Alpha": [32, 32], "kitti/000000": [32, 32]}
    for grid in saved["grids"].values():
        assert Path(grid).stat().st_size > 0
    saved["settings"]["max_pair_columns"] = 1  # a root with more pairs than that gets one mean column
    many = bench.markdown(saved)
    assert "| method | gt mean EPE (2 pairs) | real mean EPE |" in many and "| zero flow | 7.500 | 7.500 | 1.000 |" in many
    assert "`" + str(gt) + "`: 2 pairs (32x32), 99.9% valid on average, max |GT| 10.0 px" in many


def test_flow_quality_without_checkpoint_is_one_line(tmp_path, capsys):
    bench = load("benchmarks", "flow_quality")
    from hidden2stream_experiments.cli import run_cli
    with pytest.raises(SystemExit) as exit_info:
        run_cli(bench.main, ["--checkpoint", str(tmp_path / "absent.pt"), "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "absent.pt" in err and "neither a checkpoint file nor shipped weights" in err


def test_train_step_smoke(tmp_path):
    out = tmp_path / "out"
    result = load("benchmarks", "train_step").main(
        ["--size", "32", "--frames", "3", "--segments", "2", "--batch", "2", "--steps", "1", "--warmup", "1",
         "--hidden", "stacked,branched", "--fusion", "late", "--motion-mode", "trained,frozen", "--arch", "tiny",
         "--pretrain", "tiny", "--in-process", "--device", "cpu", "--out", str(out)])
    saved = json.loads((out / "train_step.json").read_text())
    assert set(saved) == {"machine", "settings", "rows"} and saved == json.loads(json.dumps(result))
    assert [r["config"] for r in saved["rows"]] == [
        "stacked/late/motion trained/tiny", "branched/late/motion trained/tiny", "stacked/late/motion frozen/tiny",
        "pretrain MotionNet-tiny"]
    for row in saved["rows"]:
        assert all(positive(row[k]) for k in ("clips_per_s", "step_ms", "peak_memory_mib", "params_m", "trainable_m"))
    frozen, trained = saved["rows"][2], saved["rows"][0]
    assert frozen["trainable_m"] < trained["trainable_m"] == trained["params_m"]
    assert "| pretrain MotionNet-tiny |" in (out / "train_step.md").read_text()


def test_train_step_measures_each_configuration_in_a_fresh_process(tmp_path):
    result = load("benchmarks", "train_step").main(
        ["--size", "32", "--frames", "3", "--segments", "1", "--batch", "1", "--steps", "1", "--warmup", "0",
         "--hidden", "stacked", "--fusion", "late", "--motion-mode", "trained", "--arch", "tiny", "--no-pretrain",
         "--device", "cpu", "--out", str(tmp_path)])
    (row,) = result["rows"]
    assert result["settings"]["subprocess_per_config"] and row["memory"] == "peak RSS of a fresh process"
    assert positive(row["peak_memory_mib"]) and positive(row["clips_per_s"])


def test_flow_refinement_smoke(tmp_path, images_dir):
    """Every setting refines the same CNN flow; the chosen one has the lowest validation EPE; on a
    texture moved by a known sub-pixel shift the default setting cuts the error of a random CNN's flow."""
    from helpers import make_middlebury

    frame1, frame2, _ = translated_pair((1.0, -0.5), 48, 64)
    as_uint8 = [(frame[0] * 255).round().to(torch.uint8) for frame in (frame1, frame2)]
    make_middlebury(tmp_path / "gt" / "Shift", *as_uint8, 1.0, -0.5)
    out = tmp_path / "out"
    bench = load("benchmarks", "flow_refinement")
    result = bench.main(["--weights", str(tiny_checkpoint(tmp_path / "w" / "checkpoint.pt", 2)),
                         "--real-root", str(tmp_path / "gt"), "--images", str(images_dir),
                         "--validation-items", "2", "--items", "2", "--out", str(out)])
    saved = json.loads((out / "flow_refinement.json").read_text())
    assert saved == json.loads(json.dumps(result)) and set(saved) >= {"machine", "rows", "chosen", "settings"}
    assert_machine(saved["machine"])
    rows = saved["rows"]
    assert rows[0]["setting"] is None and len(rows) == len(bench.settings_grid())
    assert saved["chosen"] == min(rows, key=lambda r: r["validation_320"])["label"]
    for row in rows:
        assert all(math.isfinite(row[k]) and row[k] >= 0 for k in ("validation_320", "synthetic_224", "real"))
        assert set(row["real_pairs"]) == {"Shift"}
    default = next(r for r in rows if r["setting"] == bench.LucasKanadeRefinement().to_dict())
    assert default["real"] < 0.5 * rows[0]["real"]
    assert saved["chosen"] in (out / "flow_refinement.md").read_text()


def test_loss_landscape_smoke(tmp_path, images_dir):
    """Each loss preset at the exact, half and zero flow of synthetic pairs: the intensity presets
    are lowest at the exact flow; a census weight scales the census term's pull linearly."""
    out = tmp_path / "out"
    result = load("benchmarks", "loss_landscape").main(
        ["--items", "2", "--size", "64", "--census-weights", "1,6.5", "--images", str(images_dir), "--out", str(out)])
    saved = json.loads((out / "loss_landscape.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert_machine(saved["machine"])
    rows = {r["loss"]: r for r in saved["rows"]}
    assert set(rows) == {"paper", "occlusion", "edge", "improved", "census", "census x1", "census x6.5"}
    for name in ("paper", "improved"):
        assert rows[name]["exact"]["total"] < rows[name]["half"]["total"] < rows[name]["zero"]["total"]
    for row in rows.values():
        assert row["margin"] == pytest.approx(row["zero"]["total"] - row["exact"]["total"])
        assert row["margin_terms"]["smoothness"] <= 0  # zero flow is the smoothest: smoothness pulls toward it
    x1, weighted = rows["census x1"]["margin_terms"], rows["census x6.5"]["margin_terms"]
    assert weighted["photometric"] == pytest.approx(6.5 * x1["photometric"], rel=1e-4)
    assert rows["census"]["margin"] == pytest.approx(rows["census x6.5"]["margin"], rel=1e-6)
    assert "| improved |" in (out / "loss_landscape.md").read_text()


def test_real_motion_smoke(tmp_path):
    """--train/--test folders (class subfolders ignored): one fold of each run, the JSON's stable keys."""
    for i in range(2):
        write_counter_video(tmp_path / "train" / f"class{i}" / f"v{i}.mp4", 20 + i)
    write_counter_video(tmp_path / "test" / "someclass" / "t.mp4", 24)
    bench = load("benchmarks", "real_motion")
    out, json_path = tmp_path / "out", tmp_path / "results.json"
    result = bench.main(["--train", str(tmp_path / "train"), "--test", str(tmp_path / "test"), "--steps", "2",
                         "--batch-size", "4", "--size", "32", "--frames", "3", "--test-windows", "1",
                         "--workers", "0", "--out", str(out), "--json", str(json_path), "--quiet"])
    saved = json.loads(json_path.read_text())
    assert saved == json.loads((out / "real_motion.json").read_text())
    assert set(saved["streams"]) == {"spatial", "hidden", "dis", "fused"}
    for name, stream in saved["streams"].items():
        for factor in ("speed", "direction", "both"):
            assert 0.0 <= stream[factor] <= 1.0, (name, factor)
        assert stream["test_items"] == 6 and positive(stream["train_minutes"])
    assert saved["folds"] == ["given"] and result["chance"]["speed"] == pytest.approx(1 / 3)
    assert "| hidden |" in (out / "real_motion.md").read_text()


def test_real_motion_folds_leave_one_video_out(tmp_path):
    for i in range(3):
        write_counter_video(tmp_path / "clips" / f"v{i}.mp4", 20 + i)
    (tmp_path / "clips" / "broken.mp4").write_text("not a video")
    bench = load("benchmarks", "real_motion")
    args = bench.build_parser().parse_args(["--clips", str(tmp_path / "clips"), "--out", str(tmp_path / "out")])
    folds = bench.folds(args)
    assert [name for name, _, _ in folds] == ["v0.mp4", "v1.mp4", "v2.mp4"]
    for name, train, test in folds:
        assert [p.name for p in test.iterdir()] == [name]
        assert sorted(p.name for p in train.iterdir()) == sorted({"v0.mp4", "v1.mp4", "v2.mp4"} - {name})


def test_two_stage_accuracy_smoke(tmp_path):
    bench = load("benchmarks", "two_stage_accuracy")
    out = tmp_path / "out"
    result = bench.main(["--flows", "motionnet,dis", "--refinements", "none", "--steps", "2", "--batch-size", "4",
                         "--train-items", "8", "--test-items", "12", "--workers", "0", "--out", str(out), "--quiet"])
    assert [r["flow"] for r in result["rows"]] == ["motionnet-none", "dis"]
    for row in result["rows"]:
        assert 0 <= row["temporal"] <= 1 and 0 <= row["fused"] <= 1 and positive(row["train_seconds"])
    assert result["rows"][0]["flow_cache"] is None and "per hour" not in (result["rows"][1]["flow_cache"] or "x")
    assert json.loads((out / "two_stage_accuracy.json").read_text())["rows"] == result["rows"]


def test_pretext_few_labels_smoke(tmp_path):
    for i in range(3):
        write_counter_video(tmp_path / "videos" / f"v{i}.mp4", 40 + i, size=64)
    bench = load("benchmarks", "pretext_few_labels")
    result = bench.main(["--videos", str(tmp_path / "videos"), "--per-class", "1", "--pretext-steps", "2",
                         "--steps", "2", "--batch-size", "4", "--test-items", "12", "--workers", "0",
                         "--out", str(tmp_path / "out"), "--quiet"])
    assert [(r["per_class"], r["pretext"]) for r in result["rows"]] == [(1, False), (1, True)]
    assert all(0 <= r["fused"] <= 1 for r in result["rows"])
    assert (tmp_path / "out" / "pretext_few_labels.md").is_file()
