"""FLOP counting with PyTorch's own counter, for reporting cost per forward and % of GPU peak."""
from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def forward_flops(model: nn.Module, example_input: torch.Tensor | tuple[torch.Tensor, ...]) -> int:
    """FLOPs of one inference forward of ``model`` on ``example_input`` (tensor or tuple of args).

    Counts matmuls/convolutions as 2 FLOPs per multiply-add (``FlopCounterMode``); the model runs in
    eval mode under ``no_grad`` and its training mode is restored afterwards.
    """
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    was_training = model.training
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(*args)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())
