"""Smoke tests of the benchmark scripts on tiny settings: result files, keys, finite positive figures.

Speeds are never asserted (they depend on the machine); only that every figure was measured.
"""
from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def load(folder: str, name: str):
    spec = importlib.util.spec_from_file_location(f"{folder}_{name}", REPO / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(REPO / folder))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(REPO / folder))
    return module


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def one_clip(tmp_path: Path, clips_dir: Path) -> Path:
    folder = tmp_path / "clips"
    folder.mkdir()
    (folder / "carphone_lowbitrate.mp4").symlink_to(clips_dir / "carphone_lowbitrate.mp4")
    return folder


def assert_machine(machine: dict) -> None:
    assert machine["cores"] >= 1 and machine["torch_threads"] >= 1 and machine["cpu"]


def test_flow_speed_smoke(tmp_path, clips_dir):
    bench = load("benchmarks", "flow_speed")
    out = tmp_path / "out"
    result = bench.main(["--clips", str(one_clip(tmp_path, clips_dir)), "--sizes", "32,native", "--pairs", "10",
                         "--repeats", "1", "--native-repeats", "1", "--warmup", "0", "--models", "tiny",
                         "--device", "cpu", "--out", str(out)])
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


def test_flow_quality_smoke(tmp_path, images_dir, frame_pairs_dir, clips_dir):
    motion = tmp_path / "motion"
    load("experiments", "pretrain_motion").main(
        ["--out", str(motion), "--steps", "2", "--frames", "3", "--size", "32", "--device", "cpu", "--workers", "0",
         "--eval-items", "1", "--train-items", "8", "--warmup", "1", "--no-tvl1"])
    out = tmp_path / "out"
    result = load("benchmarks", "flow_quality").main(
        ["--checkpoint", str(motion / "checkpoint.pt"), "--size", "32", "--items", "2", "--grid-rows", "2", "--pair-size", "48x64",
         "--clips", str(one_clip(tmp_path, clips_dir)), "--clip-windows", "1", "--device", "cpu", "--out", str(out)])
    saved = json.loads((out / "flow_quality.json").read_text())
    assert set(saved) == {"machine", "settings", "synthetic", "frame_pairs", "clips", "grid"}
    assert saved["settings"]["model"]["frames"] == 3 and saved["synthetic"]["pairs"] == 4
    methods = {"motionnet", "tvl1", "farneback", "dis", "zero"}
    assert set(saved["synthetic"]["methods"]) == methods
    assert all(positive(r["epe"]) and 0 <= r["fl_all"] <= 1 for r in saved["synthetic"]["methods"].values())
    for part, pairs in (("frame_pairs", 2), ("clips", 2)):
        rows = saved[part]["methods"]
        assert set(rows) == methods and all(r["pairs"] == pairs for r in rows.values())
        assert all(positive(r["photometric_l1"]) and 0 < r["ssim"] <= 1 for r in rows.values())
    pairs = saved["frame_pairs"]["methods"]  # OpenCV flow explains real motion better than no flow at all
    assert pairs["tvl1"]["photometric_l1"] < pairs["zero"]["photometric_l1"]
    assert (out / "flow_methods.png").stat().st_size > 0 and result["grid"] == str(out / "flow_methods.png")


def test_flow_quality_without_checkpoint_is_one_line(tmp_path, capsys):
    bench = load("benchmarks", "flow_quality")
    from hidden2stream.cli import run_cli
    with pytest.raises(SystemExit) as exit_info:
        run_cli(bench.main, ["--checkpoint", str(tmp_path / "absent.pt"), "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "experiments/pretrain_motion.py" in err and "--train-steps" in err


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
