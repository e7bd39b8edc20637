"""Clip-consistent augmentation on the device the batch lives on (kornia).

Every frame of a clip gets the *same* random parameters (``same_on_frame=True``), so the
motion between frames, and the flow MotionNet must recover, is unchanged by colour jitter.
A horizontal flip mirrors the motion too: left-moving becomes right-moving. It is right for
classes that do not depend on direction, and must stay off for the synthetic action classes
that encode direction (e.g. "moves left" vs "moves right").
"""
from __future__ import annotations

import kornia.augmentation as K
from torch import nn



def clip_augmentation(train: bool = True, flip: bool = False, color_jitter: float = 0.1) -> nn.Module:
    """Module mapping clips ``(B, T, 3, H, W)`` in ``[0, 1]`` to augmented clips of the same shape.

    ``color_jitter`` is the brightness / contrast / saturation strength (hue gets half of it).
    ``train=False`` (or nothing enabled) returns the identity.
    """
    if color_jitter < 0:
        raise ValueError(f"color_jitter must be >= 0, got {color_jitter}")
    ops: list[nn.Module] = []
    if train and flip:
        ops.append(K.RandomHorizontalFlip(p=0.5))
    if train and color_jitter > 0:
        ops.append(K.ColorJitter(color_jitter, color_jitter, color_jitter, min(color_jitter / 2, 0.5), p=1.0))
    if not ops:
        return nn.Identity()
    return K.VideoSequential(*ops, data_format="BTCHW", same_on_frame=True)
