"""ONNX export of MotionNet and of the hidden two-stream network, with dynamic batch, height and width.

``torch.onnx.export(..., dynamo=True)`` (the ``torch.export`` based exporter; it needs
``onnxscript``) is the exporter used: torch 2.14's default, opset up to 23. The TorchScript exporter
(``dynamo=False``) is deprecated and stops at opset 20; with the wrappers below it gives the same
graphs. The models' own forward passes cannot be exported with a free height and width as they
are: MotionNet pads to a multiple of 32 only ``if`` the size needs it and turns sizes into Python
``int`` (``upsample_flow``), so both exporters bake the example's size into the graph (the
TorchScript exporter silently: its graph fails at any other size with a Concat shape error;
``torch.export`` specialises the dimensions). The wrappers here run the same modules, with the
same weights and the same arithmetic, in a shape-generic form: the padding is always applied
(zero rows when the size is a multiple of 32 already) and flows are resized with symbolic sizes.
:func:`max_abs_difference` compares an ONNX Runtime session with the unwrapped PyTorch model on
the same inputs (``experiments/export.py`` does it on the shared clips).

* :class:`ExportableFlow`: ``frames (B, T+1, 3, H, W)`` -> ``flow (B, T, 2, H, W)``, what
  ``motionnet(frames, all_scales=False)`` returns (every MotionNet variant: tiny, paper, corr).
* :class:`ExportableTwoStream`: ``frames (B, K, T+1, 3, H, W)`` -> the ``spatial``, ``temporal``
  and ``fused`` logits ``(B, classes)`` of :class:`~hidden2stream.models.two_stream.HiddenTwoStream`.
"""
from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import logging
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hidden2stream.errors import UserError
from hidden2stream.flow.refine import LucasKanadeRefinement
from hidden2stream.models.motionnet import base as motionnet_base
from hidden2stream.models.motionnet import corr as motionnet_corr
from hidden2stream.models.hidden import StackedHiddenStream, flow_to_clip, flow_to_stack
from hidden2stream.models.motionnet.base import DOWNSAMPLING
from hidden2stream.models.motionnet import CorrMotionNet
from hidden2stream.models.two_stream import HiddenTwoStream

EXPORT_PACKAGES = ("onnx", "onnxruntime", "onnxscript")
FLOW_OUTPUTS = ("flow",)
TWO_STREAM_OUTPUTS = ("spatial", "temporal", "fused")


def missing_packages(names: Sequence[str] = EXPORT_PACKAGES) -> list[str]:
    """The packages of ``names`` that are not installed (``pip install -e ".[export]"`` adds them)."""
    return [name for name in names if importlib.util.find_spec(name) is None]


def require_export_packages(names: Sequence[str] = EXPORT_PACKAGES) -> None:
    """One-line :class:`UserError` naming what to install when an export package is missing."""
    missing = missing_packages(names)
    if missing:
        raise UserError(f"ONNX export needs {', '.join(missing)}: pip install -e \".[export]\"")


def export_opset() -> int:
    """The opset to write: the installed ``onnx``'s newest, capped at the newest the torch exporter
    emits (torch 2.14: 23, while onnx 1.23 defines 28)."""
    import onnx

    try:
        from torch.onnx import _constants

        newest = _constants.ONNX_MAX_OPSET
    except (ImportError, AttributeError):  # a private module: fall back to torch 2.14's value
        newest = 23
    return min(onnx.defs.onnx_opset_version(), newest)


def _pad(x: torch.Tensor) -> torch.Tensor:
    """Replicate-pad ``(N, C, H, W)`` bottom/right to a multiple of 32, as MotionNet does (always
    padding, by zero rows when none are needed, so the graph holds for every size)."""
    height, width = x.shape[-2:]
    return F.pad(x, (0, -width % DOWNSAMPLING, 0, -height % DOWNSAMPLING), mode="replicate")


def encode(motionnet: nn.Module, frames: torch.Tensor) -> list[torch.Tensor]:
    """``motionnet.encode(frames)`` (MotionNet or MotionNet-C): the encoder maps, fine to coarse."""
    batch, count, _, height, width = frames.shape
    if isinstance(motionnet, CorrMotionNet):  # one shared encoder per frame, frames folded into channels
        x = _pad((frames.reshape(batch * count, 3, height, width) - 0.5) / 0.25)
        features = []
        for stage in motionnet.encoder:
            x = stage(x)
            features.append(x.reshape(batch, -1, x.shape[-2], x.shape[-1]))
        return features
    x = _pad((frames.reshape(batch, count * 3, height, width) - 0.5) / 0.25)
    features = []
    for stage in motionnet.encoder:
        x = stage(x)
        features.append(x)
    return features


def upsample_flow(flow: torch.Tensor, size: Sequence) -> torch.Tensor:
    """:func:`hidden2stream.models.motionnet.upsample_flow` with symbolic sizes (no ``int()``):
    flows ``(B, T, 2, h, w)`` resized to ``(B, T, 2, H, W)``, u times ``W / w``, v times ``H / h``."""
    b, t, _, h, w = flow.shape
    height, width = size
    resized = F.interpolate(flow.reshape(b * t, 2, h, w), size=(height, width), mode="bilinear",
                            align_corners=False)
    flow = torch.cat([resized[:, :1] * (width / w), resized[:, 1:] * (height / h)], dim=1)
    return flow.reshape(b, t, 2, height, width)


@contextlib.contextmanager
def _symbolic_upsampling() -> Iterator[None]:
    """MotionNet-C's decoder (between levels) and every variant's full-resolution flow
    (``PaddedFlows.full_resolution``) resize flows with ``upsample_flow``; while tracing, they use
    the symbolic :func:`upsample_flow` (same arithmetic), so their sizes stay free."""
    modules = (motionnet_corr, motionnet_base)
    originals = [module.upsample_flow for module in modules]
    for module in modules:
        module.upsample_flow = upsample_flow
    try:
        yield
    finally:
        for module, original in zip(modules, originals):
            module.upsample_flow = original


def final_flow(motionnet: nn.Module, frames: torch.Tensor) -> torch.Tensor:
    """``motionnet(frames, all_scales=False)``, shape-generic: the same
    :meth:`~hidden2stream.models.motionnet.MotionNetBase.final_flow` on the always-padded encoder
    maps. Frames ``(B, T+1, 3, H, W)`` -> forward flows ``(B, T, 2, H, W)`` in pixels."""
    with _symbolic_upsampling():
        return motionnet.final_flow(frames, motionnet.decode_padded(encode(motionnet, frames)))


class ExportableFlow(nn.Module):
    """``frames (B, T+1, 3, H, W)`` in [0, 1] -> full-resolution ``flow (B, T, 2, H, W)`` in pixels:
    ``motionnet(frames, all_scales=False)`` (refinement included), shape-generic (any MotionNet variant)."""

    def __init__(self, motionnet: nn.Module) -> None:
        super().__init__()
        self.motionnet = motionnet

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return final_flow(self.motionnet, frames)


class _WithoutPyramid(nn.Module):
    """A hidden stream's modules (``inner``) behind the interface :class:`HiddenTwoStream` calls,
    ``forward_features`` computing only what the classifier needs (no flow pyramid)."""

    def __init__(self, hidden: nn.Module) -> None:
        super().__init__()
        self.inner = hidden

    @property
    def motionnet(self) -> nn.Module:
        return self.inner.motionnet

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.inner.classify(features)


class _Stacked(_WithoutPyramid):
    """:class:`StackedHiddenStream` without the pyramid: MotionNet's final flow (:func:`final_flow`)
    as a flow stack (or clip) into the temporal stream."""

    def forward_features(self, frames: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        flow = final_flow(self.inner.motionnet, frames)
        is_video = getattr(self.inner.temporal, "is_video", False)  # a 3D temporal CNN takes a flow clip
        to_input = flow_to_clip if is_video else flow_to_stack
        return self.inner.temporal.forward_features(to_input(flow, self.inner.clip)), []


class _Branched(_WithoutPyramid):
    """:class:`BranchedHiddenStream` without the pyramid (the classifier needs the encoder only)."""

    def forward_features(self, frames: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        return self.inner.block(encode(self.inner.motionnet, frames)[-1]), []


class ExportableTwoStream(nn.Module):
    """``frames (B, K, T+1, 3, H, W)`` -> ``(spatial, temporal, fused)`` logits ``(B, classes)`` of a
    :class:`HiddenTwoStream` (any fusion; the same modules and weights, shape-generic hidden stream)."""

    def __init__(self, model: HiddenTwoStream) -> None:
        super().__init__()
        if model.motionnet is None:
            raise ValueError("a two-stage network (temporal stream on precomputed flow) has no MotionNet to export")
        hidden = _Stacked(model.hidden) if isinstance(model.hidden, StackedHiddenStream) else _Branched(model.hidden)
        network = copy.copy(model)  # shares every parameter; only the hidden stream is swapped
        network._modules = dict(model._modules)
        network._modules["hidden"] = hidden
        self.network = network

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.network(frames)
        return out["spatial"], out["temporal"], out["fused"]


def refinement_tolerance(refinement: LucasKanadeRefinement | None, channels: int = 3) -> float:
    """Worst-case px by which two float32 runtimes may disagree after the Lucas-Kanade refinement
    (0 without it), on top of the network's own tolerance.

    Each step solves ``(A + damping I) d = b`` with A the windowed structure tensor of Sobel/8
    gradients of [0, 1] frames, so ``lambda_max(A) <= channels / 2`` and the solve's condition
    number is at most ``(channels / 2 + damping) / damping``. A different summation order moves A
    and b by a few float32 roundings (eps = 1.2e-7 relative), which the solve multiplies by that
    condition number: at most ``eps * cond * max_step`` level px per step (steps are clipped to
    ``max_step``), ``factor`` times that at full resolution. Summed over every step of every scale
    (first order): 0.038 px for the shipped settings, below a visible flow error (0.16 px bins
    of 8-bit flow storage). Where the motion is observable (textured, inside the frame) A is well
    conditioned and the differences are ~1e-5 px; the bound covers the textureless and
    out-of-frame pixels, where only the damping holds the solve.
    """
    if refinement is None:
        return 0.0
    condition = (channels / 2 + refinement.damping) / refinement.damping
    steps = refinement.iterations * sum(refinement.scales)
    return steps * refinement.max_step * torch.finfo(torch.float32).eps * condition


def export_onnx(module: nn.Module, example: torch.Tensor, path: str | Path, output_names: Sequence[str],
                opset: int | None = None) -> Path:
    """Export ``module`` (in eval mode) to ``path`` with ``torch.onnx.export(dynamo=True)``; the input
    ``frames`` has a dynamic batch (dim 0), height and width (the last two dims)."""
    require_export_packages()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dims = {0: torch.export.Dim.DYNAMIC, example.ndim - 2: torch.export.Dim.DYNAMIC,
            example.ndim - 1: torch.export.Dim.DYNAMIC}
    module.eval()
    with torch.no_grad(), _quiet_exporter():
        program = torch.onnx.export(module, (example,), dynamo=True, opset_version=opset or export_opset(),
                                    input_names=["frames"], output_names=list(output_names),
                                    dynamic_shapes=(dims,), external_data=False, verbose=False)
        program.save(str(path), external_data=False)
    return path


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's progress lines (stdout) and its optimiser's INFO logs, silenced; errors still raise."""
    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def ort_session(path: str | Path, threads: int = 0):
    """An ONNX Runtime CPU session for ``path`` (``threads`` 0: ONNX Runtime's default, all cores)."""
    require_export_packages(("onnxruntime",))
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def ort_run(session, frames: torch.Tensor) -> list[np.ndarray]:
    """Every output of ``session`` for ``frames`` (float32)."""
    return session.run(None, {session.get_inputs()[0].name: frames.detach().float().cpu().numpy()})


def max_abs_difference(session, reference: Sequence[torch.Tensor], frames: torch.Tensor) -> list[float]:
    """Max absolute difference, output by output, between ONNX Runtime and the PyTorch reference."""
    outputs = ort_run(session, frames)
    if len(outputs) != len(reference):
        raise ValueError(f"the ONNX graph has {len(outputs)} outputs, PyTorch {len(reference)}")
    return [float(np.abs(o - r.detach().float().cpu().numpy()).max()) for o, r in zip(outputs, reference)]
