"""The MotionNet weights the package ships: manifest, loading by name, quality on a real pair."""
from __future__ import annotations

import hashlib

import pytest
import torch

from helpers import run_script
from hidden2stream.data.flow_pairs import iter_flow_pairs
from hidden2stream.errors import UserError
from hidden2stream.evaluation.flow import pair_scores
from hidden2stream.flow.io import read_flo
from hidden2stream.flow.predict import pair_flow
from hidden2stream.models.motionnet import CorrMotionNet, motionnet_corr
from hidden2stream.paths import shared_data
from hidden2stream.pretrained import load_flow_model, load_motionnet
from hidden2stream.weights import WEIGHTS_DIR, shipped_weights

MAX_BYTES = 10 * 1024 * 1024


def test_manifest_lists_files_with_their_hashes_and_provenance():
    entries = shipped_weights()
    assert "default" in entries
    for entry in entries.values():
        path = WEIGHTS_DIR / entry["file"]
        assert path.stat().st_size <= MAX_BYTES
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        assert entry["command"].startswith("python experiments/make_weights.py")
        assert entry["steps"] > 0 and "real_dev_set" in entry["quality"]


def test_weights_load_by_name_for_any_window_length():
    pair = motionnet_corr(weights="default")
    window = motionnet_corr(frames=6, weights="default")
    assert isinstance(pair, CorrMotionNet) and pair.config.frames == 2 and window.config.frames == 6
    for key, value in pair.state_dict().items():
        assert torch.equal(value, window.state_dict()[key])
    assert load_flow_model("default", pair=True).config.frames == 2
    assert load_flow_model("default", pair=False).config.frames == 11


def test_unknown_weights_name_is_one_clear_line():
    with pytest.raises(UserError, match="unknown MotionNet weights 'nope'; shipped weights: default"):
        motionnet_corr(weights="nope")
    with pytest.raises(UserError, match="neither a checkpoint file nor shipped weights"):
        load_motionnet("nope")


@pytest.mark.parametrize("name", ["RubberWhale", "Grove2", "Urban2"])
def test_shipped_pair_model_halves_zero_flow_error_on_real_pairs(name):
    """Below half of zero flow's EPE on each real pair at its native size, sub-pixel motion
    (RubberWhale: 1.3 px mean) as well as motions of several pixels (Grove2: 3.1 px, Urban2: 8.4 px)."""
    root = shared_data("flow_gt")
    if not (root / name).is_dir():
        pytest.skip(f"shared ground-truth pairs are absent at {root} (set H2S_SHARED)")
    pair = next(p for p in iter_flow_pairs(root) if p.name == name)
    flow = pair_flow(load_flow_model("default", pair=True), pair.frame1, pair.frame2, "cpu")
    epe = pair_scores(flow, pair.flow, pair.valid)["epe"]
    zero = pair_scores(torch.zeros_like(pair.flow), pair.flow, pair.valid)["epe"]
    assert epe < 0.5 * zero, f"EPE {epe:.3f} px against zero flow's {zero:.3f}"


def test_flow_command_uses_the_shipped_weights_without_a_checkpoint(tmp_path, frame_pairs_dir):
    result = run_script("experiments", "flow", ["--pair", str(frame_pairs_dir / "rubberwhale1.png"),
                                                str(frame_pairs_dir / "rubberwhale2.png"), "--out", str(tmp_path),
                                                "--size", "96x128", "--device", "cpu"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert read_flo(tmp_path / "flow_00000.flo").shape == (2, 388, 584)  # computed at 96x128, written at native size


def test_two_stream_training_refuses_shipped_weights_of_another_motionnet(tmp_path):
    result = run_script("experiments", "train_two_stream", ["--motion", "tiny", "--motion-checkpoint", "default",
                                                            "--out", str(tmp_path / "o"), "--steps", "1"], cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--motion tiny builds" in lines[0], result.stderr


def test_make_weights_runs_the_two_recipes_in_turn(tmp_path):
    """make_weights.py's stages (nothing trained here): corr-supervised, then corr-refine from its checkpoint,
    with the step counts given and the command line the manifest records."""
    from hidden2stream.pipeline.pretrain import RECIPES
    from hidden2stream.pipeline.weights import WeightsOptions, command, stages
    from hidden2stream_experiments.parsing import parse_options

    options = parse_options(WeightsOptions, ["--out", str(tmp_path), "--steps", "7", "--workers", "0"], None)
    first, second = stages(options)
    assert (first.recipe, first.out, first.steps, first.lr) == ("corr-supervised", tmp_path / "supervised", 7,
                                                               RECIPES["corr-supervised"]["lr"])
    assert (second.recipe, second.out, second.steps, second.init) == ("corr-refine", tmp_path / "refine", 300,
                                                                      tmp_path / "supervised" / "checkpoint.pt")
    assert second.refine_half and second.refinement == "lk" and first.init is None
    assert all(s.no_tvl1 and s.workers == 0 and not s.resume for s in (first, second))
    assert command(options) == "python experiments/make_weights.py --steps 7"
    assert command(WeightsOptions()) == "python experiments/make_weights.py"
