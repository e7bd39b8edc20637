"""The whole pipeline on the embedded data: optional MotionNet pretraining, joint training, real-flow
scores of the MotionNet the hidden stream starts from, and the report (``experiments/main.py``).

By default the hidden stream starts from the shipped MotionNet weights (``default``:
MotionNet-corr); with ``pretrain_motion`` a tiny MotionNet is pretrained first and the joint
training starts from its checkpoint. Each stage resumes from its own checkpoint with ``resume``.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from hidden2stream.data.flow_pairs import iter_flow_pairs
from hidden2stream.evaluation.flow import classic_method, motionnet_method, score_pairs, zero_method
from hidden2stream.paths import shared_data
from hidden2stream.options import Options, option
from hidden2stream.pipeline import pretrain, two_stream
from hidden2stream.pretrained import load_flow_model
from hidden2stream.weights import motion_source
from hidden2stream.progress import stage
from hidden2stream.evaluation.report import markdown_table

FRAMES, SIZE = 6, (64, 64)  # both stages: T+1 and the crop


def real_flow_scores(motion: str | Path) -> dict | None:
    """EPE of the MotionNet that the hidden stream starts from, TV-L1 and zero flow on the shared
    real ground-truth pairs (as :func:`load_flow_model` shapes it for a pair); None when the shared
    data is absent."""
    root = shared_data("flow_gt")
    if not root.is_dir():
        return None
    model = load_flow_model(motion, pair=True)
    methods = [motionnet_method(model, "cpu", "MotionNet (hidden stream start)"),
               classic_method("tvl1"), zero_method()]
    return score_pairs(methods, iter_flow_pairs(root), desc="real flow pairs")


def resumed_real_flow_scores(motion: str | Path, record: Path, resume: bool) -> dict | None:
    """:func:`real_flow_scores`, kept in ``record`` with the sha256 of the weights they score: a
    resumed job reuses the scores of the same weights instead of recomputing TV-L1."""
    digest = hashlib.sha256(motion_source(motion).read_bytes()).hexdigest()
    if resume and record.is_file():
        saved = json.loads(record.read_text())
        if saved.get("weights_sha256") == digest:
            return saved["scores"]
    scores = real_flow_scores(motion)
    if scores is not None:
        record.write_text(json.dumps({"weights_sha256": digest, "scores": scores}, indent=2))
    return scores


def real_flow_table(scores: dict) -> str:
    """Markdown: one row per method, EPE per real pair and the mean."""
    pairs = list(next(iter(scores.values()))["pairs"])
    rows = [[name] + [row["pairs"][p]["epe"] for p in pairs] + [row["mean_epe"]]
            for name, row in scores.items()]
    return markdown_table(["method (EPE px)"] + pairs + ["mean"], rows)


def skipped_real_flow() -> str:
    """The line that says the real-flow table is left out, and how to get it."""
    return (f"real ground-truth flow table skipped: no pairs in {shared_data('flow_gt')} "
            "(set H2S_SHARED to the shared data folder to get it)")


@dataclass(frozen=True)
class MainOptions(Options):
    """The options of ``experiments/main.py``."""

    out: Path = option(Path("runs/main"), parse=Path)
    quick: bool = option(False, "tiny budgets: checks the pipeline, not accuracy")
    resume: bool = option(False, "continue each stage from its checkpoint")
    pretrain_motion: bool = option(False, "pretrain a tiny MotionNet without labels first, instead of the shipped "
                                   "weights")
    device: str = option("auto")


def run_pipeline(options: MainOptions) -> dict:
    """Run the stages into ``options.out`` (``motion/``, ``two_stream/``, ``summary.json``), print the
    report and return the summary (``motion``: pretraining report, ``two_stream``: test accuracy,
    ``real_flow``: the starting MotionNet's real-flow scores when the shared data is there).
    Each stage is named on stderr as it starts (:func:`~hidden2stream.progress.stage`, silent after
    ``set_quiet(True)``)."""
    out, quick, resume = options.out, options.quick, options.resume
    common = dict(frames=FRAMES, size=SIZE, device=options.device, resume=resume)
    summary: dict = {}
    if options.pretrain_motion:
        stage(f"MotionNet pretraining without labels -> {out / 'motion'}")
        summary["motion"] = pretrain.run(pretrain.PretrainOptions.from_recipe(
            "cpu", out=out / "motion", steps=60 if quick else 1500, eval_items=8 if quick else 32, **common))
        motion = dict(motion="tiny", motion_checkpoint=str(out / "motion" / "checkpoint.pt"))
    else:
        motion = dict(motion="corr", motion_checkpoint="default")
    data = dict(train_items=400, test_items=48) if quick else {}
    stage(f"hidden two-stream training end to end, then its test evaluation -> {out / 'two_stream'}")
    joint = two_stream.run(two_stream.TwoStreamOptions(out=out / "two_stream", steps=20 if quick else 300,
                                                       **motion, **data, **common))
    summary["two_stream"] = joint.summary
    if shared_data("flow_gt").is_dir():
        stage("real ground-truth flow: the starting MotionNet beside TV-L1 and zero flow")
    scores = resumed_real_flow_scores(motion["motion_checkpoint"], out / "real_flow.json", resume)
    if scores is not None:
        summary["real_flow"] = scores
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(report_text(summary, joint.text) + f"\nresults in {out}/")
    return summary


def report_text(summary: dict, accuracy_text: str) -> str:
    """The closing report: real-flow EPE table (or the line saying why it is left out),
    pretraining EPE, and the joint stage's accuracy tables."""
    text = "\n== hidden two-stream on the embedded action data ==\n"
    if "real_flow" in summary:
        text += ("MotionNet the hidden stream starts from, on real ground-truth flow:\n"
                 + real_flow_table(summary["real_flow"]) + "\n")
    else:
        text += skipped_real_flow() + "\n"
    if "motion" in summary:
        motion = summary["motion"]
        text += (f"pretrained MotionNet held-out synthetic EPE {motion['synthetic']['epe']:.3f} px "
                 f"(zero flow {motion['synthetic']['zero_epe']:.3f}"
                 + (f", TV-L1 {motion['tvl1']['epe']:.3f})" if "tvl1" in motion else ")") + "\n")
    return text + accuracy_text
