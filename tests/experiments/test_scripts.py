"""The command-line scripts end to end on tiny settings, their one-line errors, and exact resume."""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import av
import pytest
import torch
from torchvision.io import write_png

from helpers import REPO, load_script, run_script
from hidden2stream.data.synthetic_actions import SyntheticActionDataset
from hidden2stream.errors import CheckpointError, UserError
from hidden2stream.flow.io import read_flo
from hidden2stream.flow.refine import LucasKanadeRefinement
from hidden2stream.models.motionnet import MotionNetConfig, build_motionnet
from hidden2stream.pipeline import pretrain as pipeline_pretrain
from hidden2stream.pipeline.pretrain import RECIPES, PretrainOptions
from hidden2stream.pipeline.two_stream import TwoStreamOptions
from hidden2stream_experiments.parsing import parse_options
from hidden2stream.pretrained import load_motionnet, load_two_stream
from hidden2stream.checkpoint import Checkpoint, save_atomic

EXPERIMENTS = REPO / "experiments"
MOTION = ["--frames", "3", "--size", "32", "--device", "cpu", "--workers", "0", "--eval-items", "2",
          "--train-items", "64", "--warmup", "2"]
JOINT = ["--frames", "3", "--size", "64", "--segments", "2", "--device", "cpu", "--workers", "0",
         "--train-items", "48", "--test-items", "12", "--batch-size", "4", "--warmup", "2",
         "--appearances", "2", "--motions", "2"]


def script(name: str):
    return load_script("experiments", name)


@pytest.fixture(scope="module")
def motion_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("motion")
    report = script("pretrain_motion").main(["--out", str(out), "--steps", "6", *MOTION])
    assert set(report["synthetic"]) >= {"epe", "fl_all", "zero_epe", "zero_fl_all"}
    assert report["tvl1"]["epe"] > 0
    return out


@pytest.fixture(scope="module")
def joint_run(tmp_path_factory, motion_run) -> Path:
    out = tmp_path_factory.mktemp("joint")
    summary = script("train_two_stream").main(
        ["--out", str(out), "--steps", "4", "--motion-checkpoint", str(motion_run / "checkpoint.pt"), *JOINT])
    assert set(summary["video_top1"]) >= {"spatial", "temporal", "fused", "late"}
    return out


def test_pretraining_writes_checkpoint_report_and_pictures(motion_run):
    report = json.loads((motion_run / "eval.json").read_text())
    assert report["steps"] == 6
    assert (motion_run / "flow_synthetic.png").stat().st_size > 0
    assert Checkpoint.load(motion_run / "checkpoint.pt", kind="motionnet").step == 6


def pretrain_options(argv: list[str]) -> PretrainOptions:
    """``pretrain_motion.py``'s command line parsed as the script parses it."""
    return parse_options(PretrainOptions, argv, None, presets=("recipe", RECIPES.__getitem__))


def test_pretraining_recipes_set_defaults_that_options_override():
    paper = pretrain_options(["--recipe", "paper"])
    assert (paper.model, paper.frames, paper.size, paper.lr, paper.batch_size, paper.steps) == (
        "paper", 11, (224, 224), 3.2e-5, 16, 400_000)
    best = pretrain_options(["--recipe", "cpu-best", "--steps", "7"])
    assert (best.loss, best.steps, best.model) == ("paper", 7, "tiny")
    assert pretrain_options([]).loss == "improved"
    refine = pretrain_options(["--recipe", "corr-refine", "--init", __file__])
    assert (refine.model, refine.refine_half, refine.static_background, refine.supervised, refine.steps) == (
        "corr", True, 0.5, True, 300)
    assert pipeline_pretrain.motion_config(refine).layers.refine_half
    assert pipeline_pretrain.motion_config(refine).refinement == LucasKanadeRefinement()
    assert pipeline_pretrain.motion_config(pretrain_options(["--model", "corr"])).refinement is None
    with pytest.raises(SystemExit):
        pretrain_options(["--recipe", "fastest"])
    with pytest.raises(SystemExit):
        pretrain_options(["--static-background", "1.5"])
    with pytest.raises(UserError, match="--refine-half is an option of --model corr"):
        pipeline_pretrain.motion_config(pretrain_options(["--refine-half"]))


def test_pretraining_starts_from_init_weights_and_refuses_another_architecture(tmp_path, motion_run):
    source = motion_run / "checkpoint.pt"
    out = tmp_path / "init"
    script("pretrain_motion").main(["--out", str(out), "--steps", "1", "--lr", "0", "--init", str(source),
                                    "--no-tvl1", *MOTION])
    before, after = load_motionnet(source).state_dict(), load_motionnet(out / "checkpoint.pt").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # lr 0: the run kept the --init weights
    with pytest.raises(CheckpointError, match="frames"):
        script("pretrain_motion").main(["--out", str(tmp_path / "other"), "--steps", "1", "--init", str(source),
                                        "--no-tvl1", *MOTION[2:], "--frames", "4"])


def test_pretraining_on_videos_reports_photometric_error(tmp_path, clips_dir, capsys):
    report = script("pretrain_motion").main(["--out", str(tmp_path), "--steps", "2", "--videos",
                                             str(clips_dir), *MOTION])
    assert report["clips"]["pairs"] > 0 and report["clips_tvl1"]["pairs"] == report["clips"]["pairs"]
    assert 0 < report["clips"]["zero_photometric_l1"] < 1
    assert report["clips_tvl1"]["photometric_l1"] < report["clips"]["zero_photometric_l1"]
    assert capsys.readouterr().out.count("| OpenCV TV-L1 |") == 3  # synthetic, clip and per-video tables
    videos = report["clips"]["videos"]
    assert set(videos) == set(report["clips_tvl1"]["videos"]) and "bikes.mp4" in videos
    assert sum(v["pairs"] for v in videos.values()) == report["clips"]["pairs"]


def test_flow_command_on_a_frame_pair(tmp_path, motion_run, frame_pairs_dir):
    count = script("flow").main(["--checkpoint", str(motion_run / "checkpoint.pt"), "--pair",
                                 str(frame_pairs_dir / "rubberwhale1.png"),
                                 str(frame_pairs_dir / "rubberwhale2.png"), "--out", str(tmp_path),
                                 "--size", "64x96", "--device", "cpu"])
    assert count == 1
    assert read_flo(tmp_path / "flow_00000.flo").shape == (2, 388, 584)  # computed at 64x96, written native
    assert (tmp_path / "flow_00000.png").exists()


def test_flow_command_on_a_video(tmp_path, motion_run, clips_dir):
    count = script("flow").main(["--checkpoint", str(motion_run / "checkpoint.pt"), "--video",
                                 str(clips_dir / "carphone.mp4"), "--out", str(tmp_path), "--size", "32",
                                 "--max-flows", "5", "--no-png", "--device", "cpu"])
    assert count == 5
    assert sorted(p.name for p in tmp_path.glob("*.flo"))[-1] == "flow_00004.flo"


def test_flow_command_batches_strides_and_writes_a_video(tmp_path, motion_run, clips_dir, capsys):
    """--max-side 64 on the 176x144 clip: computed at 52x64, written at 144x176 in native pixels;
    --stride 2 names the flows by their first frame; the batch size does not change the flows."""
    args = ["--checkpoint", str(motion_run / "checkpoint.pt"), "--video", str(clips_dir / "carphone.mp4"),
            "--max-side", "64", "--stride", "2", "--max-flows", "5", "--no-png", "--device", "cpu", "--quiet"]
    assert script("flow").main([*args, "--batch", "1", "--out", str(tmp_path / "a"),
                                "--write-video", str(tmp_path / "flow.mp4")]) == 5
    assert re.search(r"wrote 5 flows to .*/a/ \([0-9.]+ pairs/s\)", capsys.readouterr().out)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == [f"flow_{i:05d}.flo" for i in (0, 2, 4, 6, 8)]
    assert script("flow").main([*args, "--batch", "3", "--out", str(tmp_path / "b")]) == 5
    for name in names:
        flow = read_flo(tmp_path / "a" / name)
        assert flow.shape == (2, 144, 176)
        assert torch.allclose(flow, read_flo(tmp_path / "b" / name), atol=1e-4)
    with av.open(str(tmp_path / "flow.mp4")) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 5 and (frames[0].width, frames[0].height) == (2 * 394, 320)  # 52x64 shown 320 tall


def test_flow_command_on_a_text_file_pair_is_one_line(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    result = run_script("experiments", "flow", ["--pair", str(text), str(text), "--out", str(tmp_path / "o"),
                                                "--device", "cpu"], cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {text} is not a readable image (not a PNG, JPEG, WebP or GIF file)"], result.stderr


def _one_frame_video(path: Path) -> Path:
    """An mp4 that holds a single 32x32 frame."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        frame = av.VideoFrame.from_ndarray(torch.full((32, 32, 3), 128, dtype=torch.uint8).numpy(), format="rgb24")
        container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return path


def _png_named_mp4(path: Path) -> Path:
    """A PNG image renamed .mp4: FFmpeg reads it as a one-frame video."""
    write_png(torch.full((3, 32, 32), 128, dtype=torch.uint8), str(path))
    return path


@pytest.mark.parametrize("make_video", [_one_frame_video, _png_named_mp4])
def test_flow_command_refuses_a_video_without_two_frames(tmp_path, make_video):
    """Fewer than 2 frames: one ``error:`` line and exit 2 (as predict.py), not "wrote 0 flows"."""
    video = make_video(tmp_path / "short.mp4")
    checkpoint = tmp_path / "motion.pt"  # untrained weights: the video is refused before they matter
    config = MotionNetConfig("tiny", 3)
    save_atomic({"kind": "motionnet", "model_config": config.to_dict(),
                 "model": build_motionnet(config).state_dict()}, checkpoint)
    result = run_script("experiments", "flow", ["--checkpoint", str(checkpoint), "--video", str(video),
                                                "--out", str(tmp_path / "flow"), "--device", "cpu"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "1 frame: a flow needs at least 2" in lines[0], \
        result.stderr
    assert "wrote" not in result.stdout and not list(tmp_path.rglob("*.flo"))


def test_checkpoints_rebuild_from_their_config_alone(motion_run, joint_run):
    """Both kinds store their family's tagged config; loading reads nothing else to rebuild the net."""
    motion = Checkpoint.load(motion_run / "checkpoint.pt").model_config
    assert motion == MotionNetConfig("tiny", 3).to_dict()
    model = load_two_stream(joint_run / "checkpoint.pt")
    assert model.config.to_dict() == Checkpoint.load(joint_run / "checkpoint.pt").model_config
    assert (model.config.motion, model.config.segments, model.config.size) == (MotionNetConfig("tiny", 3), 2, (64, 64))
    assert len(model.config.class_names) == model.config.num_classes == 4
    trained = load_motionnet(joint_run / "checkpoint.pt")  # a two-stream checkpoint's MotionNet, the same path
    assert all(torch.equal(v, model.motionnet.state_dict()[k]) for k, v in trained.state_dict().items())


@pytest.mark.parametrize("kind, name, rerun", [("motionnet", "flow", "pretrain_motion.py"),
                                               ("two_stream", "predict", "train_two_stream.py")])
def test_checkpoints_of_the_old_format_are_refused_in_one_line(tmp_path, kind, name, rerun):
    """An untagged ``model_config`` (before one config per model family): the script to rerun."""
    checkpoint = tmp_path / "old.pt"
    save_atomic({"kind": kind, "model_config": {"model": "tiny", "frames": 3},
                 "model": build_motionnet(MotionNetConfig("tiny", 3)).state_dict()}, checkpoint)
    with pytest.raises(CheckpointError, match=f"rerun experiments/{rerun}"):
        (load_motionnet if kind == "motionnet" else load_two_stream)(checkpoint)
    result = run_script("experiments", name, ["--checkpoint", str(checkpoint), "--video", str(checkpoint)]
                        + (["--out", str(tmp_path / "flow")] if name == "flow" else []), cwd=tmp_path)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and f"rerun experiments/{rerun}" in lines[0], result.stderr


def test_resuming_from_an_old_format_checkpoint_names_what_to_rerun(tmp_path):
    save_atomic({"kind": "motionnet", "model_config": {"model": "tiny", "frames": 3},
                 "model": build_motionnet(MotionNetConfig("tiny", 3)).state_dict()}, tmp_path / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="rerun experiments/pretrain_motion.py"):
        script("pretrain_motion").main(["--out", str(tmp_path), "--steps", "1", "--resume", "--no-tvl1", *MOTION])


def test_pipeline_stage_options_equal_the_command_lines():
    """main.py's stages get exactly what the scripts' command lines give (same defaults, same types)."""
    assert PretrainOptions.from_recipe("cpu", out=Path("m"), steps=60, frames=6, size=(64, 64), resume=True) \
        == pretrain_options(["--out", "m", "--steps", "60", "--frames", "6", "--size", "64", "--resume"])
    assert PretrainOptions.from_recipe("corr-refine", out=Path("m"), steps=7) \
        == pretrain_options(["--recipe", "corr-refine", "--out", "m", "--steps", "7"])
    assert TwoStreamOptions(out=Path("j"), motion="corr", motion_checkpoint="default", train_items=400,
                            size=(64, 64)) \
        == parse_options(TwoStreamOptions, ["--out", "j", "--motion", "corr", "--motion-checkpoint", "default",
                                            "--train-items", "400", "--size", "64"], None)


def test_joint_training_evaluates_every_head(joint_run):
    summary = json.loads((joint_run / "eval.json").read_text())
    assert summary["num_classes"] == 4
    assert all(0.0 <= v <= 1.0 for v in summary["video_top1"].values())
    assert (joint_run / "confusion.png").exists() and (joint_run / "flow_test_clips.png").exists()


def test_predict_prints_top_classes_and_writes_flow_video(tmp_path, joint_run, clips_dir, capsys):
    ranked = script("predict").main(["--checkpoint", str(joint_run / "checkpoint.pt"), "--video",
                                     str(clips_dir / "carphone.mp4"), "--device", "cpu", "--views", "2",
                                     "--write-video", str(tmp_path / "flow.mp4"), "--max-frames", "9"])
    assert len(ranked) == 4 and sum(score for _, score in ranked) == pytest.approx(1.0, abs=1e-4)
    assert "top-4" in capsys.readouterr().out
    with av.open(str(tmp_path / "flow.mp4")) as container:
        frames = list(container.decode(video=0))
    # the 176x144 clip shown 320 px tall (392 wide), its hidden flow beside it at the same size
    assert len(frames) == 8 and (frames[0].width, frames[0].height) == (2 * 392, 320)


def test_resumed_joint_training_ends_with_the_same_weights(tmp_path, monkeypatch):
    train_two_stream = script("train_two_stream")
    args = [*JOINT, "--steps", "6", "--checkpoint-every", "2", "--no-eval"]
    train_two_stream.main(["--out", str(tmp_path / "full"), *args])

    original = SyntheticActionDataset.__getitem__
    calls = {"n": 0}

    def interrupted(self, index):
        calls["n"] += 1
        if calls["n"] == 4 * 4 + 1:  # first item of step 5, after the checkpoint at step 4
            raise KeyboardInterrupt
        return original(self, index)

    monkeypatch.setattr(SyntheticActionDataset, "__getitem__", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_two_stream.main(["--out", str(tmp_path / "cut"), *args])
    monkeypatch.setattr(SyntheticActionDataset, "__getitem__", original)
    assert Checkpoint.load(tmp_path / "cut" / "checkpoint.pt").step == 4
    train_two_stream.main(["--out", str(tmp_path / "cut"), *args, "--resume"])
    full = Checkpoint.load(tmp_path / "full" / "checkpoint.pt").model
    cut = Checkpoint.load(tmp_path / "cut" / "checkpoint.pt").model
    assert full.keys() == cut.keys()
    for key in full:
        assert torch.equal(full[key], cut[key]), key


def test_joint_training_takes_a_stream_from_another_run(tmp_path, joint_run):
    """--init-spatial rebuilds the other run from its checkpoint and copies its spatial stream (lr 0 keeps it)."""
    script("train_two_stream").main(["--out", str(tmp_path), *JOINT, "--steps", "1", "--lr", "0", "--no-eval",
                                     "--init-spatial", str(joint_run / "checkpoint.pt")])
    before, after = (load_two_stream(run / "checkpoint.pt").spatial for run in (joint_run, tmp_path))
    assert all(torch.equal(p, q) for p, q in zip(before.parameters(), after.parameters()))


def test_frozen_motionnet_stays_fixed(tmp_path, motion_run):
    pretrained = motion_run / "checkpoint.pt"
    script("train_two_stream").main(["--out", str(tmp_path), *JOINT, "--steps", "2", "--freeze-motion",
                                     "--motion-checkpoint", str(pretrained), "--no-eval"])
    before = Checkpoint.load(pretrained).model
    after = Checkpoint.load(tmp_path / "checkpoint.pt").model
    motion = {k.split("motionnet.", 1)[1]: v for k, v in after.items() if "motionnet." in k}
    assert motion.keys() == before.keys()
    assert all(torch.equal(before[k], motion[k]) for k in before)


@pytest.mark.parametrize("name, args, message", [
    ("pretrain_motion", ["--frames", "2"], "T >= 2"),
    ("pretrain_motion", ["--videos", "/no/such/folder"], "does not exist"),
    ("pretrain_motion", ["--size", "50"], "multiples of 8"),
    ("pretrain_motion", ["--batch-size", "6", "--accumulation", "4", "--steps", "1"], "not divisible"),
    ("train_two_stream", ["--fusion", "nope"], "invalid choice"),
    ("train_two_stream", ["--fusion", "bilinear", "--temporal-fusion", "conv3d"], "bilinear fusion has Cs*Ct channels"),
    ("train_two_stream", ["--dataset", "ucf101"], "--video-root"),
    ("flow", ["--checkpoint", "/no/such.pt", "--pair", "a.png", "b.png"], "does not exist"),
    ("predict", ["--checkpoint", __file__, "--video", __file__], "is not a hidden2stream checkpoint (not a PyTorch file)"),
])
def test_bad_arguments_give_one_line(tmp_path, name, args, message):
    argv = [*args, "--out", str(tmp_path / "o")] if name not in ("flow", "predict") else args
    result = run_script("experiments", name, argv, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr


@pytest.mark.parametrize("name, args, message", [
    ("train_two_stream", ["--fusion", "nope"], "invalid choice"),  # argparse
    ("flow", ["--checkpoint", "/no/such.pt", "--pair", "a.png", "b.png"], "does not exist"),  # UserError
])
def test_script_entry_points_give_one_line(tmp_path, name, args, message):
    """The same through ``python script.py``: imports, warnings and logging print nothing more."""
    result = subprocess.run([sys.executable, str(EXPERIMENTS / f"{name}.py"), *args],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], result.stderr


def test_main_job_quick_starts_from_shipped_weights_scores_real_flow_and_resumes(tmp_path, capsys):
    out = tmp_path / "main"
    first = script("main").main(["--quick", "--out", str(out), "--device", "cpu"])
    assert not (out / "motion").exists() and (out / "two_stream" / "checkpoint.pt").exists()
    assert first["two_stream"]["num_classes"] == 12
    printed = capsys.readouterr().out
    assert "== hidden two-stream on the embedded action data ==" in printed
    if "real_flow" in first:  # the shared ground-truth pairs are present
        rows = first["real_flow"]
        assert set(rows) == {"MotionNet (hidden stream start)", "OpenCV TV-L1", "zero flow"}
        assert rows["MotionNet (hidden stream start)"]["mean_epe"] < rows["zero flow"]["mean_epe"]
        assert "RubberWhale" in printed
    again = script("main").main(["--quick", "--out", str(out), "--device", "cpu", "--resume"])
    assert again["two_stream"]["video_top1"] == first["two_stream"]["video_top1"]
    if "real_flow" in first:  # kept with the weights' sha256, so the resumed job does not recompute them
        assert again["real_flow"] == first["real_flow"] and (out / "real_flow.json").is_file()


def test_main_job_quick_with_pretraining_runs_both_stages(tmp_path):
    out = tmp_path / "main"
    summary = script("main").main(["--quick", "--pretrain-motion", "--out", str(out), "--device", "cpu"])
    assert (out / "motion" / "checkpoint.pt").exists() and (out / "two_stream" / "checkpoint.pt").exists()
    assert summary["motion"]["synthetic"]["zero_epe"] > 0 and summary["two_stream"]["num_classes"] == 12


def test_resumed_job_reuses_real_flow_scores_of_the_same_weights_only(tmp_path, monkeypatch):
    from hidden2stream.pipeline import job

    calls: list = []
    monkeypatch.setattr(job, "real_flow_scores", lambda motion: calls.append(motion) or {"run": len(calls)})
    first, other, record = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "real_flow.json"
    first.write_bytes(b"weights a")
    other.write_bytes(b"weights b")
    assert job.resumed_real_flow_scores(first, record, resume=False) == {"run": 1}
    assert job.resumed_real_flow_scores(first, record, resume=True) == {"run": 1} and len(calls) == 1
    assert job.resumed_real_flow_scores(other, record, resume=True) == {"run": 2}  # other weights: scored
    assert job.resumed_real_flow_scores(other, record, resume=False) == {"run": 3}  # a fresh job scores again
