"""Single-stream action CNNs: a convolutional backbone plus a pooled linear classifier.

A :class:`Stream` is the spatial (RGB frame) or temporal (stacked flow) network of the
two-stream architecture (Simonyan & Zisserman 2014; TSN, Wang et al. 2016). Its backbone is
kept apart from its head so that convolutional fusion (Feichtenhofer et al. 2016) can combine
the two streams' feature maps before classification.

Backbones: torchvision ``resnet18``, ``resnet50`` and ``vgg16`` (convolutional part only; for
VGG the head is global average pooling + dropout + one linear layer in place of VGG's three fully
connected layers, so all backbones share one head), and ``tiny`` (four conv-bn-relu blocks of
32/64/128/256 channels, each of stride 2, for CPU experiments on 64x64 inputs).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from hidden2stream.errors import UserError

STREAM_ARCHS = ("tiny", "resnet18", "resnet50", "vgg16")

# torchvision's ImageNet normalisation; the spatial stream applies it to [0, 1] RGB frames.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Prefix of the classifier parameters in each torchvision model's state_dict (replaced here).
_CLASSIFIER_KEYS = {"resnet18": "fc.", "resnet50": "fc.", "vgg16": "classifier."}


class Stream(nn.Module):
    """Backbone ``features`` plus ``head`` (global average pool, dropout, linear).

    Input ``(N, in_channels, H, W)``; ``forward_features`` gives the map ``(N, C, h, w)`` with
    ``C = feature_channels`` (``h, w`` = H/16 for ``tiny``, H/32 for the torchvision backbones);
    ``forward`` gives logits ``(N, num_classes)``. When ``mean``/``std`` are given the input is
    normalised with them first (non-persistent buffers, so state_dicts hold only weights).
    """

    def __init__(
        self,
        features: nn.Module,
        feature_channels: int,
        num_classes: int,
        in_channels: int,
        dropout: float = 0.5,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise UserError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise UserError(f"dropout must be in [0, 1), got {dropout}")
        self.features = features
        self.feature_channels = feature_channels
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
            nn.Dropout(dropout),
            nn.Linear(feature_channels, num_classes),
        )
        if (mean is None) != (std is None):
            raise UserError("give both mean and std for input normalisation, or neither")
        for name, value in (("mean", mean), ("std", std)):
            buffer = None if value is None else torch.tensor(value).view(1, -1, 1, 1)
            self.register_buffer(name, buffer, persistent=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, H, W)`` -> feature map ``(N, feature_channels, h, w)``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise UserError(f"stream expects (N, {self.in_channels}, H, W) input, got {tuple(x.shape)}")
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return self.features(x)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Feature map ``(N, feature_channels, h, w)`` -> logits ``(N, num_classes)``."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.forward_features(x))


def cross_modality_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """A copy of ``conv`` taking ``in_channels`` inputs, each with the mean RGB filter.

    TSN's cross-modality initialisation: an RGB-pretrained first layer is turned into one for a
    stack of ``in_channels`` flow channels by averaging its weights over the input channels and
    replicating the average to every new channel; bias and hyper-parameters are kept.
    """
    new = nn.Conv2d(
        in_channels,
        conv.out_channels,
        conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    with torch.no_grad():
        mean = conv.weight.mean(dim=1, keepdim=True)
        new.weight.copy_(mean.expand(-1, in_channels, -1, -1))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new.to(device=conv.weight.device, dtype=conv.weight.dtype)


def _tiny_features() -> nn.Sequential:
    """Four conv3x3(stride 2)-BN-ReLU blocks, 32/64/128/256 channels: output stride 16."""
    layers: list[nn.Module] = []
    c_in = 3
    for c_out in (32, 64, 128, 256):
        layers += [
            nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        ]
        c_in = c_out
    return nn.Sequential(*layers)


def _load_torchvision(arch: str, weights: str | None) -> nn.Module:
    """A torchvision classification model: random init, ImageNet weights, or a local state_dict."""
    if weights is None:
        return torchvision.models.get_model(arch, weights=None)
    if weights == "imagenet":
        return torchvision.models.get_model(arch, weights="DEFAULT")
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist (use None, 'imagenet' or a state_dict path)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling errors come in many types
        raise UserError(f"cannot read weights file {path}: {type(exc).__name__}") from exc
    if not isinstance(state, dict):
        raise UserError(f"weights file {path} does not hold a state_dict")
    head = _CLASSIFIER_KEYS[arch]
    state = {k: v for k, v in state.items() if not k.startswith(head)}
    model = torchvision.models.get_model(arch, weights=None)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise UserError(f"weights file {path} does not fit {arch} (tensor shapes differ)") from exc
    missing = [k for k in missing if not k.startswith(head)]
    if missing or unexpected:
        raise UserError(
            f"weights file {path} is not a {arch} state_dict "
            f"({len(missing)} missing keys, {len(unexpected)} unexpected keys)"
        )
    return model


def _backbone(arch: str, in_channels: int, weights: str | None) -> tuple[nn.Sequential, int]:
    """``(features, feature_channels)`` for ``arch`` with a first conv taking ``in_channels``.

    With pretrained RGB weights and ``in_channels != 3`` the first conv is built by
    :func:`cross_modality_conv`; without weights it is a fresh random conv.
    """
    if arch not in STREAM_ARCHS:
        raise UserError(f"unknown stream arch {arch!r}; choose from {', '.join(STREAM_ARCHS)}")
    if in_channels < 1:
        raise UserError(f"in_channels must be >= 1, got {in_channels}")
    if arch == "tiny":
        if weights is not None:
            raise UserError("the 'tiny' stream arch has no pretrained weights; use weights=None")
        features, channels = _tiny_features(), 256
    else:
        model = _load_torchvision(arch, weights)
        if arch.startswith("resnet"):
            features = nn.Sequential(
                model.conv1, model.bn1, model.relu, model.maxpool,
                model.layer1, model.layer2, model.layer3, model.layer4,
            )
            channels = model.fc.in_features
        else:
            features, channels = model.features, 512
    first = features[0]
    if in_channels != first.in_channels:
        if weights is None:
            conv = nn.Conv2d(
                in_channels, first.out_channels, first.kernel_size,
                stride=first.stride, padding=first.padding, bias=first.bias is not None,
            )
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # as torchvision
            if conv.bias is not None:
                nn.init.zeros_(conv.bias)
            features[0] = conv
        else:
            features[0] = cross_modality_conv(first, in_channels)
    return features, channels


def spatial_stream(
    arch: str = "resnet18",
    num_classes: int = 101,
    weights: str | None = None,
    dropout: float = 0.5,
) -> Stream:
    """RGB stream on single frames ``(N, 3, H, W)`` in [0, 1] (ImageNet-normalised inside).

    ``weights``: None (random init), ``"imagenet"`` (torchvision's default ImageNet weights,
    downloaded by torchvision) or a path to a torchvision state_dict for ``arch``; the classifier
    keys (``fc.*`` / ``classifier.*``) are ignored because the head is replaced.
    """
    features, channels = _backbone(arch, 3, weights)
    return Stream(features, channels, num_classes, 3, dropout, IMAGENET_MEAN, IMAGENET_STD)


def temporal_stream(
    arch: str = "resnet18",
    num_classes: int = 101,
    in_channels: int = 20,
    weights: str | None = None,
    dropout: float = 0.7,
) -> Stream:
    """Flow stream on stacks ``(N, in_channels = 2L, H, W)`` of L flows, channels u0, v0, u1, ...

    ``weights`` as for :func:`spatial_stream`; RGB weights are adapted to ``in_channels`` by
    cross-modality initialisation of the first conv. The input is used as given (see
    ``hidden.flow_to_stack`` for the scaling to [-1, 1]).
    """
    features, channels = _backbone(arch, in_channels, weights)
    return Stream(features, channels, num_classes, in_channels, dropout)
