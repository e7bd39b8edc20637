"""The jobs as package code: each takes one frozen options dataclass and returns its results.

* :mod:`~hidden2stream.pipeline.pretrain`: unsupervised (or supervised warm-start) MotionNet
  pretraining, behind ``experiments/pretrain_motion.py``;
* :mod:`~hidden2stream.pipeline.two_stream`: end-to-end hidden two-stream training and its test
  evaluation, behind ``experiments/train_two_stream.py``;
* :mod:`~hidden2stream.pipeline.evaluate`, :mod:`~.flow`, :mod:`~.predict`, :mod:`~.export`,
  :mod:`~.weights`: a checkpoint scored, flow files, a video's action, ONNX graphs, the shipped weights
  (``experiments/evaluate.py``, ``flow.py``, ``predict.py``, ``export.py``, ``make_weights.py``);
* :mod:`~hidden2stream.pipeline.job`: the whole pipeline of ``experiments/main.py`` (optional
  pretraining, joint training, the starting MotionNet scored on real flow, the report).

The scripts in ``experiments/`` only parse their command line into the options (the fields say how:
:func:`hidden2stream.options.option`) and call ``run``; code builds the same options directly, with
the same defaults.
"""
