"""The MotionNet family's config: :class:`MotionNetConfig` and the widths of every variant.

Everything a checkpoint stores to rebuild a MotionNet is here, below the variants' modules (which
import it), so the config never has to import a model. :func:`hidden2stream.models.motionnet.build_motionnet`
turns a config into its network.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

from hidden2stream.checkpoint import plain, register_family
from hidden2stream.flow.refine import LucasKanadeRefinement

MOTIONNETS = ("paper", "tiny", "corr", "recurrent")  # the variants of the MotionNet family
LEVELS = 5  # pyramid outputs at 1/32, 1/16, 1/8, 1/4, 1/2


@dataclass(frozen=True)
class MotionNetLayers:
    """Widths of a :class:`MotionNet` (the ``paper`` and ``tiny`` variants).

    ``widths``: the six encoder stages (1 ... 1/32). ``decoder_widths``: decoder levels 5..2
    (1/16 ... 1/2). ``flow_scale``: a raw prediction r at downsampling factor s means
    ``r * flow_scale / s`` pixels of that level.
    """

    widths: tuple[int, ...] = (64, 128, 256, 512, 512, 1024)
    decoder_widths: tuple[int, ...] = (512, 256, 128, 64)
    flow_scale: float = 20.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "decoder_widths", tuple(int(w) for w in self.decoder_widths))
        if len(self.widths) != 6 or len(self.decoder_widths) != 4:
            raise ValueError(f"MotionNet needs 6 encoder and 4 decoder widths, got {len(self.widths)} "
                             f"and {len(self.decoder_widths)}")
        if min(self.widths + self.decoder_widths) < 1 or self.flow_scale <= 0:
            raise ValueError("MotionNet widths and flow_scale must be positive")


TINY_LAYERS = MotionNetLayers(widths=(16, 32, 48, 64, 96, 128), decoder_widths=(64, 48, 32, 16))


@dataclass(frozen=True)
class CorrLayers:
    """Widths of a :class:`CorrMotionNet` (the ``corr`` variant of ``MotionNetConfig``).

    ``widths``: encoder widths at 1/2 ... 1/32. ``context``: the 1x1 projection of frame t's
    features fed to the decoder. ``radius``: correlation search radius in pixels of each level.
    ``decoder_widths``: the shared residual-flow decoder. ``refine_half``: the decoder also refines
    the 1/2 level (on the 1/2 encoder features; one more context projection) instead of taking the
    1/4 flow upsampled, for sub-pixel precision at twice the decoding cost. None of them depends on
    the window length.
    """

    widths: tuple[int, ...] = (16, 32, 64, 96, 128)
    context: int = 32
    radius: int = 3
    decoder_widths: tuple[int, ...] = (96, 64, 32)
    refine_half: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "decoder_widths", tuple(int(w) for w in self.decoder_widths))
        if len(self.widths) != LEVELS:
            raise ValueError(f"MotionNet-C needs {LEVELS} encoder widths, got {len(self.widths)}")
        if min(self.widths + self.decoder_widths + (self.context,)) < 1 or self.radius < 1:
            raise ValueError("MotionNet-C widths, context and radius must be positive")


@dataclass(frozen=True)
class RecurrentLayers:
    """Widths of a :class:`RecurrentMotionNet` (the ``recurrent`` variant of ``MotionNetConfig``).

    ``widths``: encoder widths at 1/2 ... 1/32. ``context``: the 1x1 context projections of the
    coarse decoder and the GRU's context input. ``radius``: local correlation radius in pixels of the
    level, coarse decoding and recurrent lookups alike. ``decoder_widths``: the shared residual
    decoder (1/32 ... 1/8). ``hidden``: the ConvGRU state. ``motion``: the motion encoder (cost
    volume + flow) feeding the GRU. ``iterations``: recurrent steps at 1/8 (the weights are tied, so
    this may differ between training and inference). None of them depends on the window length.
    """

    widths: tuple[int, ...] = (16, 32, 64, 96, 128)
    context: int = 32
    radius: int = 3
    decoder_widths: tuple[int, ...] = (96, 64, 32)
    hidden: int = 48
    motion: int = 48
    iterations: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        object.__setattr__(self, "decoder_widths", tuple(int(w) for w in self.decoder_widths))
        if len(self.widths) != LEVELS:
            raise ValueError(f"MotionNet-R needs {LEVELS} encoder widths, got {len(self.widths)}")
        if min(self.widths + self.decoder_widths + (self.context, self.hidden, self.motion)) < 1:
            raise ValueError("MotionNet-R widths must be positive")
        if self.radius < 1 or self.iterations < 1:
            raise ValueError("MotionNet-R radius and iterations must be positive")


#: each variant's layer widths class; ``tiny`` is ``paper`` at :data:`TINY_LAYERS`
LAYERS = {"paper": MotionNetLayers, "tiny": MotionNetLayers, "corr": CorrLayers, "recurrent": RecurrentLayers}


def _default_layers(variant: str) -> Any:
    """The widths a variant is built with."""
    return TINY_LAYERS if variant == "tiny" else LAYERS[variant]()


@register_family
@dataclass(frozen=True)
class MotionNetConfig:
    """One member of the MotionNet family: all a checkpoint stores to rebuild it (:meth:`to_dict`).

    ``variant``: ``paper`` / ``tiny`` (:class:`MotionNet` at the authors' or narrow widths),
    ``corr`` (:class:`~hidden2stream.models.motionnet.corr.CorrMotionNet`) or ``recurrent``
    (:class:`~hidden2stream.models.motionnet.recurrent.RecurrentMotionNet`). ``frames``: window
    length T+1 (gives T flows). ``layers``: the variant's widths (:class:`MotionNetLayers`,
    ``CorrLayers`` or ``RecurrentLayers``); None takes the variant's defaults. ``refinement``: a
    parameter-free, differentiable :class:`~hidden2stream.flow.refine.LucasKanadeRefinement` of the
    full-resolution output (``all_scales=False``: what flow commands and benchmarks read, and what the
    stacked hidden stream classifies; the multi-scale pyramid of the training losses is left as the
    network predicts it), or None.
    """

    variant: str = "tiny"
    frames: int = 11
    layers: Any = None
    refinement: LucasKanadeRefinement | None = None

    FAMILY: ClassVar[str] = "motionnet"
    VERSION: ClassVar[int] = 1

    def __post_init__(self) -> None:
        if self.variant not in MOTIONNETS:
            raise ValueError(f"unknown MotionNet {self.variant!r}; choose one of {', '.join(MOTIONNETS)}")
        if self.frames < 2:
            raise ValueError(f"MotionNet needs at least 2 frames per window, got {self.frames}")
        default = _default_layers(self.variant)
        layers = default if self.layers is None else self.layers
        if isinstance(layers, dict):
            layers = type(default)(**layers)
        if type(layers) is not type(default):
            raise TypeError(f"MotionNet-{self.variant} takes {type(default).__name__}, got {type(layers).__name__}")
        object.__setattr__(self, "layers", layers)
        if isinstance(self.refinement, dict):
            object.__setattr__(self, "refinement", LucasKanadeRefinement(**self.refinement))

    @property
    def window_free(self) -> bool:
        """True when the weights serve any window length (``corr``, ``recurrent``: one per-pair
        decoder shared by all the window's pairs), so :meth:`with_frames` may change ``frames`` under
        trained weights."""
        return self.variant in ("corr", "recurrent")

    def with_frames(self, frames: int) -> "MotionNetConfig":
        """The same network for windows of ``frames`` frames."""
        return replace(self, frames=frames)

    def same_weights_as(self, other: "MotionNetConfig") -> bool:
        """True when ``other`` holds the same weights (configs equal but for the parameter-free
        ``refinement``)."""
        return replace(self, refinement=None) == replace(other, refinement=None)

    def describe(self) -> str:
        """A short name for messages: ``MotionNet-tiny (T+1=6)``."""
        return f"MotionNet-{self.variant} (T+1={self.frames})"

    def to_dict(self) -> dict[str, Any]:
        """Plain primitives for a checkpoint, tagged with the family and format version."""
        return {"family": self.FAMILY, "version": self.VERSION, "variant": self.variant,
                "frames": self.frames, "layers": plain(asdict(self.layers)),
                "refinement": None if self.refinement is None else self.refinement.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "MotionNetConfig":
        """Inverse of :meth:`to_dict` (the tag is checked by ``Checkpoint.tagged_config``; a config
        saved before refinements existed has none)."""
        return cls(variant=data["variant"], frames=int(data["frames"]), layers=dict(data["layers"]),
                   refinement=data.get("refinement"))
