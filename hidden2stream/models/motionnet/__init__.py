"""The MotionNet family, in one home: the config and every variant's widths (:mod:`.config`), what the
variants share (:mod:`.base`), the variants (:mod:`.paper`: MotionNet paper / tiny, :mod:`.corr`:
MotionNet-C, :mod:`.recurrent`: MotionNet-R) and the family's one factory, :func:`build_motionnet`.

Every variant maps frames ``(B, T+1, 3, H, W)`` in [0, 1] to ``T`` forward flows (frame t -> t+1) at
five scales 1/32 ... 1/2 (``all_scales=True``), or the final full-resolution flow.
"""
from __future__ import annotations

from hidden2stream.models.motionnet.base import MotionNetBase, PaddedFlows, upsample_flow
from hidden2stream.models.motionnet.config import (LEVELS, MOTIONNETS, TINY_LAYERS, CorrLayers, MotionNetConfig,
                                                   MotionNetLayers, RecurrentLayers)
from hidden2stream.models.motionnet.corr import CorrMotionNet, motionnet_corr
from hidden2stream.models.motionnet.paper import MotionNet, motionnet, motionnet_tiny
from hidden2stream.models.motionnet.recurrent import RecurrentMotionNet, motionnet_recurrent

VARIANTS = {"paper": MotionNet, "tiny": MotionNet, "corr": CorrMotionNet, "recurrent": RecurrentMotionNet}

__all__ = ["LEVELS", "MOTIONNETS", "TINY_LAYERS", "VARIANTS", "CorrLayers", "CorrMotionNet", "MotionNet",
           "MotionNetBase", "MotionNetConfig", "MotionNetLayers", "PaddedFlows", "RecurrentLayers",
           "RecurrentMotionNet", "build_motionnet", "motionnet", "motionnet_corr", "motionnet_recurrent",
           "motionnet_tiny", "upsample_flow"]


def build_motionnet(config: MotionNetConfig) -> MotionNetBase:
    """The MotionNet ``config`` describes, with fresh weights: the family's one factory."""
    return VARIANTS[config.variant](config)
