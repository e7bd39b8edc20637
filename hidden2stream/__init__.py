"""hidden2stream: hidden two-stream action recognition.

MotionNet learns optical flow from raw frames without labels; stacked onto (or branched from) a
temporal stream and fused with a spatial RGB stream, the whole network trains end to end.
See ``docs/architecture.md`` for the tensor conventions every module follows.
"""

__version__ = "0.1.0"
