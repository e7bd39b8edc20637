"""ONNX export (experiments/export.py, hidden2stream.export) and the ONNX Runtime benchmark rows.

The exported graphs are checked against PyTorch on the same float32 inputs: flows within 1e-3 px
(plus the refinement's bound for a refined MotionNet) and logits within 1e-4 (why these bounds:
hidden2stream/pipeline/export.py, FLOW_TOLERANCE_PX; hidden2stream.export.refinement_tolerance). The
wrappers' eager equality with the models needs no ONNX package; everything else skips cleanly
without onnx / onnxruntime / onnxscript (``pip install -e ".[export]"``).
"""
from __future__ import annotations

import dataclasses

import json
from pathlib import Path

import pytest
import torch

from helpers import load, one_clip, positive, translated_pair

from hidden2stream_experiments.cli import run_cli
from hidden2stream.export import ExportableFlow, ExportableTwoStream
from hidden2stream.models.motionnet import MotionNetConfig, build_motionnet
from hidden2stream.models.motionnet import CorrLayers
from hidden2stream.models.two_stream import hidden_two_stream
from hidden2stream.checkpoint import save_atomic
from hidden2stream.pipeline.export import generated_clips

FLOW_TOLERANCE_PX = 1e-3
LOGIT_TOLERANCE = 1e-4
SMALL_CORR = CorrLayers(widths=(8, 8, 16, 16, 16), context=8, radius=1, decoder_widths=(16,))
FLOW_GAIN = 30.0  # predictor weights x30: random-init flows of ~0.4 px become ~12 px, real-motion sizes


@pytest.fixture
def onnx_packages() -> None:
    for package in ("onnx", "onnxruntime", "onnxscript"):
        pytest.importorskip(package)


def larger_flows(motionnet: torch.nn.Module) -> torch.nn.Module:
    """Scale MotionNet's flow predictors so that random weights give flows of several pixels."""
    with torch.no_grad():
        for conv in [motionnet.predict_coarsest] + [level.predict for level in motionnet.decoder]:
            conv.weight.mul_(FLOW_GAIN)
    return motionnet


@pytest.mark.parametrize("name", ["tiny", "paper", "corr"])
def test_exportable_flow_is_the_motionnet_forward(name):
    """The shape-generic wrapper computes exactly what ``motionnet(frames, all_scales=False)`` does,
    at sizes that need padding and at odd sizes."""
    model = build_motionnet(MotionNetConfig(name, 3)).eval()
    for height, width in [(64, 64), (50, 70), (33, 47)]:
        frames = torch.rand(2, 3, 3, height, width)
        with torch.no_grad():
            torch.testing.assert_close(ExportableFlow(model)(frames), model(frames, all_scales=False))


@pytest.mark.parametrize("options", [dict(), dict(hidden="branched"), dict(fusion="conv"),
                                     dict(motion="corr", fusion="sum", temporal_fusion="max3d")])
def test_exportable_two_stream_is_the_network(options):
    model = hidden_two_stream(4, frames=3, segments=2, spatial_arch="tiny", temporal_arch="tiny", **options).eval()
    for height, width in [(64, 64), (45, 70)]:
        frames = torch.rand(2, 2, 3, 3, height, width)
        with torch.no_grad():
            expected = model(frames)
            got = ExportableTwoStream(model)(frames)
        for name, value in zip(("spatial", "temporal", "fused"), got):
            torch.testing.assert_close(value, expected[name])
    assert model.hidden.__class__.__name__.endswith("HiddenStream")  # the network itself is left unchanged


def run_export(argv: list[str]) -> dict:
    return load("experiments", "export").main(argv)


def test_export_motionnets_on_clips(tmp_path, clips_dir, onnx_packages):
    import onnx

    from hidden2stream.export import export_opset

    out = tmp_path / "out"
    result = run_export(["--motion", "tiny", "--what", "motion", "--size", "32", "--clips",
                         str(one_clip(tmp_path, clips_dir)), "--out", str(out)])
    saved = json.loads((out / "export.json").read_text())
    assert saved == json.loads(json.dumps(result))
    assert saved["opset"] == export_opset() >= 16 and saved["exporter"] == "torch.onnx.export(dynamo=True)"
    assert [m["name"] for m in saved["models"]] == ["motionnet_tiny_w2", "motionnet_tiny_w11"]
    for model, frames in zip(saved["models"], (2, 11)):
        graph = onnx.load(model["file"])
        onnx.checker.check_model(graph)
        dims = graph.graph.input[0].type.tensor_type.shape.dim
        assert len(dims) == 5 and dims[1].dim_value == frames and dims[2].dim_value == 3
        assert all(dims[i].dim_param for i in (0, 3, 4))  # dynamic batch, height and width
        (at_32, native) = model["checks"]
        assert at_32["shape"] == [1, frames, 3, 32, 32] and native["shape"] == [1, frames, 3, 144, 176]
        assert "carphone_lowbitrate.mp4" in at_32["input"] and "(native)" in native["input"]
        for check in model["checks"]:
            assert check["ok"] and 0 <= check["max_abs_difference"]["flow"] <= FLOW_TOLERANCE_PX


def two_stream_checkpoint(path: Path) -> Path:
    """A train_two_stream.py-style checkpoint: tiny network, 3-frame windows, 2 segments, with
    flows of several pixels and logits of a few units (scaled random weights)."""
    model = hidden_two_stream(5, motion="tiny", frames=3, spatial_arch="tiny", temporal_arch="tiny", segments=2)
    larger_flows(model.motionnet)
    with torch.no_grad():
        for head in (model.spatial.head[-1], model.hidden.temporal.head[-1]):
            head.weight.mul_(50.0)
    config = dataclasses.replace(model.config, size=(32, 32), class_names=tuple(f"class{i}" for i in range(5)))
    return save_atomic({"kind": "two_stream", "model_config": config.to_dict(), "model": model.state_dict()}, path)


def test_export_two_stream_checkpoint(tmp_path, clips_dir, onnx_packages):
    out = tmp_path / "out"
    checkpoint = two_stream_checkpoint(tmp_path / "ts" / "checkpoint.pt")
    result = run_export(["--checkpoint", str(checkpoint), "--clips", str(one_clip(tmp_path, clips_dir)),
                         "--out", str(out)])
    names = [m["name"] for m in result["models"]]
    assert names == ["motionnet_tiny_w3", "two_stream_tiny"] and result["weights"] == "checkpoint"
    flow, network = result["models"]
    for check in flow["checks"]:
        assert check["max_abs_value"]["flow"] > 2.0  # several pixels: the bound is tested at real sizes
        assert check["ok"] and check["max_abs_difference"]["flow"] <= FLOW_TOLERANCE_PX
    assert [c["shape"] for c in network["checks"]] == [[1, 2, 3, 3, 32, 32], [1, 2, 3, 3, 144, 176]]
    for check in network["checks"]:
        assert set(check["max_abs_difference"]) == {"spatial", "temporal", "fused"}
        assert max(check["max_abs_value"].values()) > 0.5
        assert check["ok"] and max(check["max_abs_difference"].values()) <= LOGIT_TOLERANCE


def test_export_motionnet_checkpoint_other_lengths_noted(tmp_path, onnx_packages):
    """A 2-frame MotionNet-tiny checkpoint fits the pair model only: the window model is noted, not
    exported; without clips the check inputs are generated action clips (two sizes)."""
    model = larger_flows(build_motionnet(MotionNetConfig("tiny", 2)))
    checkpoint = save_atomic({"kind": "motionnet", "model_config": model.config.to_dict(),
                              "model": model.state_dict()}, tmp_path / "m" / "checkpoint.pt")
    result = run_export(["--checkpoint", str(checkpoint), "--clips", str(tmp_path / "absent"), "--size", "32",
                         "--out", str(tmp_path / "out")])
    assert [m["name"] for m in result["models"]] == ["motionnet_tiny_w2"]
    assert "w11" in result["notes"] and "2-frame" in result["notes"]["w11"]
    checks = result["models"][0]["checks"]
    assert [c["shape"][-2:] for c in checks] == [[32, 32], [56, 72]] and "generated" in checks[0]["input"]
    assert all(c["ok"] for c in checks)


def test_export_corr_motionnet(tmp_path, onnx_packages):
    """MotionNet-corr (grid_sample warping, a cost volume, flows upsampled between levels) exports
    with free sizes too. Search radius 1 instead of 3 and narrower layers keep the graph small (the
    default's 49-offset cost volumes take minutes to export; experiments/export.py --motion corr
    checks that one on the shared clips)."""
    from hidden2stream.export import FLOW_OUTPUTS, export_onnx, max_abs_difference, ort_session
    from hidden2stream.models.motionnet import CorrMotionNet

    model = CorrMotionNet(MotionNetConfig("corr", 2, SMALL_CORR)).eval()
    path = export_onnx(ExportableFlow(model), torch.rand(1, 2, 3, 64, 64), tmp_path / "corr.onnx", FLOW_OUTPUTS)
    session = ort_session(path)
    for shape in [(2, 2, 3, 64, 64), (1, 2, 3, 50, 70)]:
        frames = torch.rand(*shape)
        with torch.no_grad():
            reference = model(frames, all_scales=False)
        assert max_abs_difference(session, [reference], frames)[0] <= FLOW_TOLERANCE_PX


def test_export_motionnet_with_refinement(tmp_path, onnx_packages):
    """The Lucas-Kanade refinement (warps, image gradients, Gaussian windows, a 2x2 solve) exports
    with free batch and size, within 1e-3 px plus the refinement's bound (``refinement_tolerance``:
    its damped solves multiply rounding differences by their condition number where the motion is
    not observable, here where a random network's flow points out of the frame)."""
    from hidden2stream.export import FLOW_OUTPUTS, export_onnx, max_abs_difference, ort_session, refinement_tolerance
    from hidden2stream.flow.refine import LucasKanadeRefinement
    from hidden2stream.models.motionnet import CorrMotionNet

    model = CorrMotionNet(MotionNetConfig("corr", 2, SMALL_CORR, LucasKanadeRefinement())).eval()
    tolerance = FLOW_TOLERANCE_PX + refinement_tolerance(model.config.refinement)
    assert 0.01 < tolerance < 0.05  # well below a visible flow error (0.16 px bins of 8-bit flow storage)
    path = export_onnx(ExportableFlow(model), torch.rand(1, 2, 3, 64, 64), tmp_path / "refined.onnx", FLOW_OUTPUTS)
    session = ort_session(path)
    for batch, height, width in [(2, 64, 64), (1, 50, 70)]:
        pairs = [translated_pair((1.3 * (-1) ** i, 0.7), height, width, seed=i) for i in range(batch)]
        frames = torch.stack([torch.cat([frame1, frame2]) for frame1, frame2, _ in pairs])
        with torch.no_grad():
            reference = model(frames, all_scales=False)
        assert max_abs_difference(session, [reference], frames)[0] <= tolerance
    # what export.py checks on a fresh clone (no shared clips): generated action clips, one window each
    generated = generated_clips(2, 1, 2, 56, 72)[:, 0]
    with torch.no_grad():
        reference = model(generated, all_scales=False)
    assert max_abs_difference(session, [reference], generated)[0] <= tolerance


def test_export_without_onnx_is_one_line(tmp_path, monkeypatch, capsys):
    import hidden2stream.export as export

    monkeypatch.setattr(export, "missing_packages", lambda names=export.EXPORT_PACKAGES: list(names))
    with pytest.raises(SystemExit) as exit_info:
        run_cli(load("experiments", "export").main, ["--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "onnx" in err and 'pip install -e ".[export]"' in err


@pytest.mark.parametrize("argv", [["--what", "everything"], ["--motion", "huge"], ["--checkpoint", "absent.pt"],
                                  ["--pair-frames", "1"], ["--size", "0"]])
def test_export_bad_options_are_one_line(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(load("experiments", "export").main, argv + ["--out", str(tmp_path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")


def test_flow_speed_onnx_runtime_rows(tmp_path, clips_dir, onnx_packages):
    out = tmp_path / "out"
    load("benchmarks", "flow_speed").main(
        ["--clips", str(one_clip(tmp_path, clips_dir)), "--sizes", "32", "--pairs", "10", "--repeats", "1",
         "--warmup", "0", "--models", "tiny", "--methods", "tvl1", "--onnx", "on", "--device", "cpu",
         "--out", str(out)])
    saved = json.loads((out / "flow_speed.json").read_text())
    rates = saved["sizes"]["32"]["pairs_per_s"]
    assert set(rates) == {"motionnet-tiny", "motionnet-tiny-w11", "motionnet-tiny-ort", "motionnet-tiny-w11-ort",
                          "tvl1"}
    assert all(positive(v) for v in rates.values()) and positive(saved["sizes"]["32"]["ratios"]["tiny-ort/tvl1"])
    assert saved["settings"]["onnx"]["opset"] >= 16
    assert "| motionnet-tiny-w11-ort |" in (out / "flow_speed.md").read_text()


def test_export_reads_a_checkpoint_once(tmp_path, monkeypatch):
    """The models to export come from one read of the checkpoint file, of either kind."""
    from hidden2stream.checkpoint import Checkpoint
    from hidden2stream.pipeline.export import ExportOptions, models

    reads = []
    load = Checkpoint.load.__func__
    monkeypatch.setattr(Checkpoint, "load", classmethod(lambda cls, path, kind=None: reads.append(path)
                                                        or load(cls, path, kind)))
    two_stream = two_stream_checkpoint(tmp_path / "ts" / "checkpoint.pt")
    motionnets, (name, network, _), notes = models(ExportOptions(checkpoint=str(two_stream)))
    assert reads == [two_stream] and list(motionnets) == ["motionnet_tiny_w3"] and name == "two_stream_tiny"
    assert motionnets["motionnet_tiny_w3"] is network.motionnet and not notes
    corr = build_motionnet(MotionNetConfig("corr", 2, SMALL_CORR))
    motion = save_atomic({"kind": "motionnet", "model_config": corr.config.to_dict(), "model": corr.state_dict()},
                         tmp_path / "m" / "checkpoint.pt")
    reads.clear()
    motionnets, network, notes = models(ExportOptions(checkpoint=str(motion)))
    assert reads == [motion] and network is None and not notes  # window-free weights: both lengths
    assert {name: m.config.frames for name, m in motionnets.items()} == {"motionnet_corr_w2": 2, "motionnet_corr_w11": 11}
    for model in motionnets.values():
        assert all(torch.equal(value, corr.state_dict()[key]) for key, value in model.state_dict().items())


def test_export_what_is_a_comma_list_option():
    from hidden2stream.pipeline.export import ExportOptions
    from hidden2stream_experiments.parsing import parse_options

    assert parse_options(ExportOptions, [], None).what == ("motion", "two-stream") == ExportOptions().what
    assert parse_options(ExportOptions, ["--what", "two-stream, motion,two-stream"], None).what == ("two-stream",
                                                                                                     "motion")
