"""The training jobs as package code, shared by the scripts and the whole pipeline.

* :mod:`~hidden2stream.pipeline.pretrain`: unsupervised (or supervised warm-start) MotionNet
  pretraining, behind ``experiments/pretrain_motion.py``;
* :mod:`~hidden2stream.pipeline.two_stream`: end-to-end hidden two-stream training and its test
  evaluation, behind ``experiments/train_two_stream.py``;
* :mod:`~hidden2stream.pipeline.job`: the whole pipeline of ``experiments/main.py`` (optional
  pretraining, joint training, the starting MotionNet scored on real flow, the report).

The scripts only parse their command line and call these; the pipeline sets the same options in
code (:func:`stage_options`), so a stage gets the same defaults either way.
"""
from __future__ import annotations

import argparse


def stage_options(parser: argparse.ArgumentParser, **values: object) -> argparse.Namespace:
    """The options a stage gets from ``parser`` with ``values`` set as if typed on its command line
    (values as the parser's types make them: ``size=(64, 64)``, ``out=Path(...)``)."""
    parser.set_defaults(**values)
    return parser.parse_args([])
