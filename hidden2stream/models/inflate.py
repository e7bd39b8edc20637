"""I3D inflation: a 2D (ImageNet) CNN turned into a 3D CNN over clips (Carreira & Zisserman 2017).

Every ``k x k`` 2D filter becomes a ``kt x k x k`` 3D filter by repeating it ``kt`` times along
time and dividing by ``kt``; batch norms become 3D batch norms with the same statistics, max
pools get a time kernel of 1. On a "boring" clip of identical frames each inflated conv then
gives the 2D conv's response at every time step, so the inflated network starts where the
ImageNet network is: its response pooled over time is the 2D network's response to one frame.

Time is padded by repeating the edge frames (:class:`TimePadConv3d`), not with zeros, so that
this holds at the clip's ends too (with zero padding the first and last steps of a boring clip
would see only ``(kt - 1) / kt`` of the filter, and the deviation would spread inwards layer by
layer). Space is zero-padded exactly as in the 2D network.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn



class TimePadConv3d(nn.Conv3d):
    """``nn.Conv3d`` that pads its time axis itself, by ``time_padding`` frames on each side.

    ``time_pad_mode="replicate"`` repeats the edge frames (the inflated convs here);
    ``"constant"`` pads zeros, which is what ``nn.Conv3d``'s own padding does (used to route
    around a oneDNN CPU bug, see ``streams._pad_time_explicitly``). Space is zero-padded by the
    conv itself (``padding = (0, ph, pw)``). The state_dict is a plain Conv3d's.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int, int],
                 stride: tuple[int, int, int] = (1, 1, 1), padding: tuple[int, int] = (0, 0),
                 dilation: tuple[int, int] = (1, 1), groups: int = 1, bias: bool = True,
                 time_padding: int = 0, time_pad_mode: str = "replicate") -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=(0, *padding),
                         dilation=(1, *dilation), groups=groups, bias=bias)
        if time_pad_mode not in ("replicate", "constant"):
            raise ValueError(f"time_pad_mode must be 'replicate' or 'constant', got {time_pad_mode!r}")
        self.time_padding = time_padding
        self.time_pad_mode = time_pad_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_padding:
            x = F.pad(x, (0, 0, 0, 0, self.time_padding, self.time_padding), mode=self.time_pad_mode)
        return super().forward(x)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, time_padding={self.time_padding} ({self.time_pad_mode})"


def inflate_conv(conv: nn.Conv2d, time_kernel: int, time_stride: int = 1) -> TimePadConv3d:
    """``conv``'s filters repeated ``time_kernel`` times along time and divided by ``time_kernel``.

    Time is padded by ``time_kernel // 2`` edge frames on each side, so a clip of T frames gives
    ``floor((T - 1) / time_stride) + 1`` steps (T with stride 1), as a 'same'-padded conv would.
    """
    if time_kernel < 1 or time_kernel % 2 == 0:
        raise ValueError(f"time_kernel must be odd and >= 1, got {time_kernel}")
    if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise ValueError(f"cannot inflate a conv with padding {conv.padding!r} / mode {conv.padding_mode!r}")
    new = TimePadConv3d(conv.in_channels, conv.out_channels, (time_kernel, *conv.kernel_size),
                         stride=(time_stride, *conv.stride), padding=tuple(conv.padding),
                         dilation=tuple(conv.dilation), groups=conv.groups, bias=conv.bias is not None,
                         time_padding=time_kernel // 2, time_pad_mode="replicate")
    new = new.to(device=conv.weight.device, dtype=conv.weight.dtype)  # before copying: nothing rounded
    with torch.no_grad():
        new.weight.copy_(conv.weight.unsqueeze(2).expand(-1, -1, time_kernel, -1, -1) / time_kernel)
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def inflate_batchnorm(bn: nn.BatchNorm2d) -> nn.BatchNorm3d:
    """A BatchNorm3d with ``bn``'s affine parameters, running statistics and hyper-parameters."""
    new = nn.BatchNorm3d(bn.num_features, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                         track_running_stats=bn.track_running_stats)
    tensors = [t for t in (*bn.parameters(), *bn.buffers()) if t.is_floating_point()]
    if tensors:  # same device and dtype first, so that copying the statistics loses nothing
        new = new.to(device=tensors[0].device, dtype=tensors[0].dtype)
    new.load_state_dict(bn.state_dict())
    return new.train(bn.training)


def inflate_maxpool(pool: nn.MaxPool2d) -> nn.MaxPool3d:
    """Max pooling over space only: time kernel and stride 1."""
    pair = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v, v)  # noqa: E731
    return nn.MaxPool3d((1, *pair(pool.kernel_size)), stride=(1, *pair(pool.stride)),
                        padding=(0, *pair(pool.padding)), dilation=(1, *pair(pool.dilation)),
                        ceil_mode=pool.ceil_mode)


def inflate(module: nn.Module, time_kernel: Callable[[str, nn.Conv2d], int],
            time_stride: Callable[[str, nn.Conv2d], int]) -> nn.Module:
    """A 3D copy of ``module``: every Conv2d, BatchNorm2d and MaxPool2d inflated; ``module`` untouched.

    ``time_kernel(name, conv)`` and ``time_stride(name, conv)`` choose each conv's time kernel and
    stride (``name`` is its dotted name inside ``module``). Other modules (ReLU, containers) are
    kept, so the module must call its layers as modules (torchvision's ResNets do). Other 2D-only
    layers raise :class:`UserError`.
    """
    module = copy.deepcopy(module)

    def convert(parent: nn.Module, prefix: str) -> None:
        for name, child in parent.named_children():
            full = f"{prefix}{name}"
            if isinstance(child, nn.Conv2d):
                new: nn.Module = inflate_conv(child, time_kernel(full, child), time_stride(full, child))
            elif isinstance(child, nn.BatchNorm2d):
                new = inflate_batchnorm(child)
            elif isinstance(child, nn.MaxPool2d):
                new = inflate_maxpool(child)
            elif isinstance(child, (nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
                raise ValueError(f"cannot inflate {type(child).__name__} at {full!r}")
            else:
                convert(child, f"{full}.")
                continue
            setattr(parent, name, new)

    convert(module, "")
    return module
