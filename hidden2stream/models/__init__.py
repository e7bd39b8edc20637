"""The networks: the MotionNet family (:mod:`.motionnet`), the spatial and temporal streams, fusion and
the hidden two-stream network (:mod:`.two_stream`).

Importing this package registers both families' configs with the checkpoint format
(:func:`hidden2stream.checkpoint.register_family`), so any checkpoint read after an import of a model
rebuilds its typed config.
"""
from hidden2stream.models import motionnet, two_stream

__all__ = ["motionnet", "two_stream"]
