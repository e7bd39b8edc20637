"""Single-stream action CNNs: a convolutional backbone plus a pooled linear classifier.

A :class:`Stream` is the spatial (RGB frame) or temporal (stacked flow) network of the
two-stream architecture (Simonyan & Zisserman 2014; TSN, Wang et al. 2016). Its backbone is
kept apart from its head so that convolutional fusion (Feichtenhofer et al. 2016) can combine
the two streams' feature maps before classification.

Image backbones (``IMAGE_ARCHS``, input ``(N, C, H, W)``): torchvision ``resnet18``, ``resnet50``
and ``vgg16`` (convolutional part only; for VGG the head is global average pooling + dropout + one
linear layer in place of VGG's three fully connected layers, so all backbones share one head), and
``tiny`` (four conv-bn-relu blocks of 32/64/128/256 channels, each of stride 2, for CPU
experiments on 64x64 inputs).

Video backbones (``VIDEO_ARCHS``, input ``(N, C, T, H, W)``, feature map ``(N, C', T', h, w)``):
torchvision's Kinetics-400 models ``r3d_18``, ``mc3_18``, ``r2plus1d_18``, ``s3d`` and
``mvit_v2_s`` (its patch tokens as a map; it needs clips of exactly 16x224x224), and the I3D
inflations ``i3d_resnet18`` / ``i3d_resnet50`` of the ImageNet ResNets (:mod:`.inflate`).
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch
import torchvision
from torch import nn

from hidden2stream.errors import UserError
from hidden2stream.models.inflate import TimePadConv3d, inflate
from hidden2stream.checkpoint import read_torch_file

IMAGE_ARCHS = ("tiny", "resnet18", "resnet50", "vgg16")
KINETICS_ARCHS = ("r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v2_s")  # torchvision video models
INFLATED_ARCHS = ("i3d_resnet18", "i3d_resnet50")  # I3D: the ImageNet ResNet inflated to 3D
VIDEO_ARCHS = KINETICS_ARCHS + INFLATED_ARCHS
STREAM_ARCHS = IMAGE_ARCHS + VIDEO_ARCHS

# torchvision's ImageNet normalisation; the spatial stream applies it to [0, 1] RGB frames.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# torchvision's Kinetics-400 normalisation of its video models' weights (VideoClassification
# transforms of R3D_18_Weights, MC3_18_Weights, R2Plus1D_18_Weights, S3D_Weights), and MViT's.
KINETICS_MEAN = (0.43216, 0.394666, 0.37645)
KINETICS_STD = (0.22803, 0.22145, 0.216989)
MVIT_MEAN = (0.45, 0.45, 0.45)
MVIT_STD = (0.225, 0.225, 0.225)

# Prefix of the classifier parameters in each torchvision model's state_dict (replaced here).
_CLASSIFIER_KEYS = {"resnet18": "fc.", "resnet50": "fc.", "vgg16": "classifier.", "r3d_18": "fc.",
                    "mc3_18": "fc.", "r2plus1d_18": "fc.", "s3d": "classifier.", "mvit_v2_s": "head."}
# S3D's batch norms update their running statistics with PyTorch's default momentum 0.1, as every
# other backbone here; torchvision's S3D has 0.001 (TensorFlow's decay 0.999), with which a short
# run's running statistics hardly leave their initial values and evaluation-mode predictions
# collapse (measured: 50 steps from scratch, test top-1 0.083 = chance, train batches 0.29).
S3D_BN_MOMENTUM = 0.1
# Smallest clip (T, H, W) a video backbone runs on, where there is one: S3D's unpadded 2x2x2 max
# pool needs T >= 5 and H, W >= 17 (measured); the padded ResNets run on any clip; MViT's size is fixed.
MIN_CLIP = {"s3d": (5, 17, 17)}  # smallest (T, H, W) clip a video arch takes (s3d: its temporal kernels)


class Stream(nn.Module):
    """Backbone ``features`` plus ``head`` (global average pool, dropout, linear).

    Image streams (``dims=2``): input ``(N, in_channels, H, W)``; ``forward_features`` gives the
    map ``(N, C, h, w)`` with ``C = feature_channels`` (``h, w`` = H/16 for ``tiny``, H/32 for the
    torchvision backbones). Video streams (``dims=3``): input ``(N, in_channels, T, H, W)``, map
    ``(N, C, T', h, w)``, pooled over time and space by the head. ``forward`` gives logits
    ``(N, num_classes)``. When ``mean``/``std`` are given the input is normalised with them first
    (non-persistent buffers, so state_dicts hold only weights). ``min_clip`` = smallest
    ``(T, H, W)`` a video backbone accepts (smaller clips give a one-line :class:`UserError`).
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
        dims: int = 2,
        arch: str = "",
        min_clip: tuple[int, int, int] | None = None,
    ) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 (images) or 3 (clips), got {dims}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.features = features
        self.feature_channels = feature_channels
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.dims = dims
        self.arch = arch
        self.min_clip = min_clip
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1) if dims == 2 else nn.AdaptiveAvgPool3d(1),
            nn.Flatten(1),
            nn.Dropout(dropout),
            nn.Linear(feature_channels, num_classes),
        )
        if (mean is None) != (std is None):
            raise ValueError("give both mean and std for input normalisation, or neither")
        for name, value in (("mean", mean), ("std", std)):
            buffer = None if value is None else torch.tensor(value).view(1, -1, *[1] * dims)
            self.register_buffer(name, buffer, persistent=False)

    @property
    def is_video(self) -> bool:
        """True for a 3D stream on clips ``(N, C, T, H, W)``."""
        return self.dims == 3

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_channels, [T,] H, W)`` -> feature map ``(N, feature_channels, [T',] h, w)``."""
        if x.ndim != self.dims + 2 or x.shape[1] != self.in_channels:
            layout = "T, H, W" if self.is_video else "H, W"
            raise ValueError(f"stream expects (N, {self.in_channels}, {layout}) input, got {tuple(x.shape)}")
        if self.min_clip is not None and any(s < m for s, m in zip(x.shape[2:], self.min_clip)):
            t, h, w = self.min_clip
            raise ValueError(f"{self.arch} needs clips of at least {t}x{h}x{w} (T x H x W), "
                             f"got {'x'.join(map(str, x.shape[2:]))}")
        if self.mean is not None:
            x = (x - self.mean) / self.std
        return self.features(x)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        """Feature map ``(N, feature_channels, [T',] h, w)`` -> logits ``(N, num_classes)``."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.forward_features(x))


def cross_modality_conv(conv: nn.Conv2d | nn.Conv3d, in_channels: int) -> nn.Conv2d | nn.Conv3d:
    """A copy of ``conv`` taking ``in_channels`` inputs, each with the mean RGB filter.

    TSN's cross-modality initialisation: an RGB-pretrained first layer is turned into one for a
    stack of ``in_channels`` flow channels by averaging its weights over the input channels and
    replicating the average to every new channel; bias and hyper-parameters are kept. For a 3D
    conv (a video model's, or an inflated one) the same holds for each time tap: a first layer for
    the 2 flow channels u, v of a flow clip ``(N, 2, T, H, W)``; the conv's class (e.g.
    :class:`~hidden2stream.models.inflate.TimePadConv3d` with its time padding) is kept.
    """
    if isinstance(conv, nn.Conv3d):
        if conv.groups != 1:
            raise ValueError(f"cross-modality init needs an ungrouped first conv, got groups={conv.groups}")
        new3d = copy.deepcopy(conv)
        with torch.no_grad():
            mean = conv.weight.mean(dim=1, keepdim=True)
            new3d.weight = nn.Parameter(mean.expand(-1, in_channels, -1, -1, -1).clone())
        new3d.in_channels = in_channels
        return new3d
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


def _load_torchvision(arch: str, weights: str | None, label: str | None = None) -> nn.Module:
    """A torchvision classification model: random init, its pretrained weights, or a local state_dict.

    ``weights``: None, ``"imagenet"`` (image models) / ``"kinetics"`` (video models): torchvision's
    default weights, downloaded by torchvision; else a path to a state_dict of ``arch``. ``label``
    names the stream arch in messages (``i3d_resnet18`` loads a ``resnet18`` state_dict).
    """
    label = label or arch
    video = arch in KINETICS_ARCHS
    named = "kinetics" if video else "imagenet"
    if weights is None:
        return torchvision.models.get_model(arch, weights=None)
    if weights in ("imagenet", "kinetics"):
        if weights != named:
            raise UserError(f"{label} has no {weights!r} weights; use {named!r} or a local state_dict file")
        return torchvision.models.get_model(arch, weights="DEFAULT")
    path = Path(weights).expanduser()
    if not path.is_file():
        raise UserError(f"weights file {path} does not exist (use None, {named!r} or a state_dict path)")
    state = read_torch_file(path, "state_dict")
    if not isinstance(state, dict):
        raise UserError(f"weights file {path} does not hold a state_dict")
    head = _CLASSIFIER_KEYS[arch]
    state = {k: v for k, v in state.items() if not k.startswith(head)}
    model = torchvision.models.get_model(arch, weights=None)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise UserError(f"weights file {path} does not fit {label} (tensor shapes differ from {arch}'s)") from exc
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
    if arch not in IMAGE_ARCHS:
        raise ValueError(f"unknown stream arch {arch!r}; choose from {', '.join(STREAM_ARCHS)}")
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
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


class MViTFeatures(nn.Module):
    """A torchvision MViT up to its final norm, giving its patch tokens as a map ``(N, C, T', h, w)``.

    The class token is dropped (the stream's head pools the patch tokens instead of reading the
    class token, so all backbones share one head). MViT's positional embeddings fix the input
    size: ``clip_size`` ``(T, H, W)`` (16x224x224 for ``mvit_v2_s``); other sizes give a one-line
    :class:`UserError`. Attribute names match MViT's, so its state_dict loads as is.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.conv_proj, self.pos_encoding = model.conv_proj, model.pos_encoding
        self.blocks, self.norm = model.blocks, model.norm
        tokens = (self.pos_encoding.temporal_size, *self.pos_encoding.spatial_size)
        self.clip_size = tuple(n * s for n, s in zip(tokens, self.conv_proj.stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[2:]) != self.clip_size:
            raise ValueError(f"mvit_v2_s needs clips of exactly {'x'.join(map(str, self.clip_size))} (T x H x W), "
                             f"got {'x'.join(map(str, x.shape[2:]))}")
        x = self.pos_encoding(self.conv_proj(x).flatten(2).transpose(1, 2))  # (N, 1 + T'h'w', C)
        thw = (self.pos_encoding.temporal_size, *self.pos_encoding.spatial_size)
        for block in self.blocks:
            x, thw = block(x, thw)
        x = self.norm(x)[:, 1:]  # (N, T'h'w', C) without the class token
        return x.transpose(1, 2).unflatten(2, tuple(thw))


def _replace_first_conv(features: nn.Module, in_channels: int, pretrained: bool) -> None:
    """Give the first conv of ``features`` ``in_channels`` inputs: cross-modality init from its
    pretrained RGB filters, or a fresh He-initialised conv (as torchvision's) without weights."""
    name, conv = next((n, m) for n, m in features.named_modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)))
    if conv.in_channels == in_channels:
        return
    new = cross_modality_conv(conv, in_channels)
    if not pretrained:
        nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
        if new.bias is not None:
            nn.init.zeros_(new.bias)
    parent = features.get_submodule(name.rpartition(".")[0]) if "." in name else features
    setattr(parent, name.rpartition(".")[2], new)


def _inflated_resnet(arch: str, weights: str | None) -> tuple[nn.Module, int]:
    """I3D ResNet: ``resnet18/50`` (ImageNet weights or a local resnet state_dict) inflated to 3D.

    Filters of spatial size > 1 get a time kernel of 3, 1x1 filters stay 1 in time. Time strides
    follow R3D: 1 in the stem (conv1, max pool), equal to the spatial stride (2) at the first block
    of layers 2-4, so T' = ceil(T / 8), as in torchvision's ``r3d_18`` / ``r2plus1d_18``.
    """
    base = arch.removeprefix("i3d_")
    model = _load_torchvision(base, weights, label=arch)
    resnet = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool,
                           model.layer1, model.layer2, model.layer3, model.layer4)
    features = inflate(resnet, time_kernel=lambda name, conv: 3 if max(conv.kernel_size) > 1 else 1,
                       time_stride=lambda name, conv: 1 if name == "0" else conv.stride[0])
    return features, model.fc.in_features


def _pad_time_explicitly(features: nn.Module, min_time_kernel: int = 7) -> None:
    """Replace each Conv3d of time kernel >= ``min_time_kernel`` by a :class:`TimePadConv3d` that
    zero-pads time itself: the same function and state_dict.

    oneDNN's CPU Conv3d weight gradient (torch 2.14) corrupts the heap for S3D's first temporal
    conv (time kernel 7, stride 2, padding 3) on 5-step inputs (crash: segfault / ``free():
    invalid next size``); the same conv on an input padded beforehand is fine.
    """
    for name, conv in list(features.named_modules()):
        if (type(conv) is nn.Conv3d and conv.kernel_size[0] >= min_time_kernel and conv.padding[0] > 0
                and conv.dilation[0] == 1 and conv.padding_mode == "zeros"):
            new = TimePadConv3d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                                conv.padding[1:], conv.dilation[1:], conv.groups, conv.bias is not None,
                                time_padding=conv.padding[0], time_pad_mode="constant")
            new = new.to(device=conv.weight.device, dtype=conv.weight.dtype)
            new.load_state_dict(conv.state_dict())
            parent = features.get_submodule(name.rpartition(".")[0]) if "." in name else features
            setattr(parent, name.rpartition(".")[2], new)


def _video_backbone(arch: str, in_channels: int, weights: str | None) -> tuple[nn.Module, int]:
    """``(features, feature_channels)`` of a video arch with a first conv taking ``in_channels``."""
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    if arch in INFLATED_ARCHS:
        features, channels = _inflated_resnet(arch, weights)
    else:
        model = _load_torchvision(arch, weights)
        if arch == "s3d":
            features, channels = model.features, 1024
            _pad_time_explicitly(features)
            for bn in features.modules():
                if isinstance(bn, nn.BatchNorm3d):
                    bn.momentum = S3D_BN_MOMENTUM
        elif arch == "mvit_v2_s":
            features, channels = MViTFeatures(model), model.norm.normalized_shape[0]
        else:  # torchvision VideoResNet: r3d_18, mc3_18, r2plus1d_18
            features = nn.Sequential(model.stem, model.layer1, model.layer2, model.layer3, model.layer4)
            channels = model.fc.in_features
    _replace_first_conv(features, in_channels, pretrained=weights is not None)
    return features, channels


def _normalisation(arch: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The RGB mean and std that ``arch``'s pretrained weights expect."""
    if arch == "mvit_v2_s":
        return MVIT_MEAN, MVIT_STD
    if arch in KINETICS_ARCHS:
        return KINETICS_MEAN, KINETICS_STD
    return IMAGENET_MEAN, IMAGENET_STD


def video_stream(
    arch: str,
    num_classes: int,
    in_channels: int = 3,
    weights: str | None = None,
    dropout: float = 0.5,
    normalise: bool = True,
) -> Stream:
    """A 3D stream on clips ``(N, in_channels, T, H, W)``; ``arch`` one of ``VIDEO_ARCHS``.

    ``weights``: None, ``"kinetics"`` (torchvision video archs) / ``"imagenet"`` (``i3d_*``), or a
    local state_dict file of the torchvision model (``resnet18``/``resnet50`` for ``i3d_*``).
    ``in_channels != 3`` (2 for flow) adapts the first conv by cross-modality init (or a fresh conv
    without weights). ``normalise``: subtract the weights' RGB mean / divide by their std.
    """
    if arch not in VIDEO_ARCHS:
        raise ValueError(f"unknown video arch {arch!r}; choose from {', '.join(VIDEO_ARCHS)}")
    features, channels = _video_backbone(arch, in_channels, weights)
    mean, std = _normalisation(arch) if normalise else (None, None)
    return Stream(features, channels, num_classes, in_channels, dropout, mean, std, dims=3, arch=arch,
                  min_clip=MIN_CLIP.get(arch))


def spatial_stream(
    arch: str = "resnet18",
    num_classes: int = 101,
    weights: str | None = None,
    dropout: float = 0.5,
) -> Stream:
    """RGB stream on single frames ``(N, 3, H, W)`` in [0, 1] (ImageNet-normalised inside).

    ``weights``: None (random init), ``"imagenet"`` (torchvision's default ImageNet weights,
    downloaded by torchvision) or a path to a torchvision state_dict for ``arch``; the classifier
    keys (``fc.*`` / ``classifier.*`` / ``head.*``) are ignored because the head is replaced.

    A video ``arch`` (``VIDEO_ARCHS``) gives a 3D stream on clips ``(N, 3, T, H, W)`` in [0, 1],
    normalised with its weights' statistics (Kinetics; ImageNet for ``i3d_*``); ``"kinetics"``
    names torchvision's Kinetics-400 weights (see :func:`video_stream`).
    """
    if arch in VIDEO_ARCHS:
        return video_stream(arch, num_classes, 3, weights, dropout)
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

    A video ``arch`` gives a 3D stream on flow clips ``(N, in_channels = 2, T, H, W)`` (u, v as
    channels, time as the clip's time axis; ``hidden.flow_to_clip``), its RGB first conv turned
    into a 2-channel one by cross-modality init (for ``i3d_*`` after inflation).
    """
    if arch in VIDEO_ARCHS:
        return video_stream(arch, num_classes, in_channels, weights, dropout, normalise=False)
    features, channels = _backbone(arch, in_channels, weights)
    return Stream(features, channels, num_classes, in_channels, dropout)
