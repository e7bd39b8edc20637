"""Real frame pairs with ground-truth flow, read from folders at their native size.

Two layouts are found anywhere under a root (the root itself included):

* **Middlebury** (as in ``<shared>/data/flow_gt``): a folder holding ``frame1.png``, ``frame2.png``
  and ``flow.flo`` (forward flow frame1 -> frame2; |u| or |v| > 1e9 = no ground truth). The pair
  is named by the folder's path below the root (the root's own name for the root itself).
* **KITTI 2012 / 2015 training** layout: a folder holding ``flow_occ/NNNNNN_10.png`` (16-bit flow
  PNG) beside ``image_2/`` (KITTI 2015), ``colored_0/`` or ``image_0/`` (KITTI 2012) with
  ``NNNNNN_10.png`` and ``NNNNNN_11.png``. Pairs are named ``NNNNNN``, prefixed by the folder's
  path below the root when it is not the root.

Items are :class:`FlowPair` tuples ``(name, frame1 (3, H, W) in [0, 1], frame2, flow (2, H, W),
valid (1, H, W))``; the flow follows docs/architecture.md (pixels, channel 0 = x).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, NamedTuple

from torch import Tensor

from hidden2stream.errors import UserError
from hidden2stream.flow.io import read_flow_with_valid
from hidden2stream.images import read_rgb

MIDDLEBURY_FILES = ("frame1.png", "frame2.png", "flow.flo")
KITTI_FLOW_DIR = "flow_occ"
KITTI_IMAGE_DIRS = ("image_2", "colored_0", "image_0")  # KITTI 2015 colour, 2012 colour, 2012 grey


class FlowPair(NamedTuple):
    """One pair: ``name``, ``frame1``/``frame2`` ``(3, H, W)`` in [0, 1], ``flow (2, H, W)`` in
    pixels (frame1 -> frame2), ``valid (1, H, W)`` (1 = has ground truth)."""

    name: str
    frame1: Tensor
    frame2: Tensor
    flow: Tensor
    valid: Tensor


@dataclass(frozen=True)
class FlowPairFiles:
    """Where one pair's files are; ``layout`` is ``"middlebury"`` or ``"kitti"``."""

    name: str
    frame1: Path
    frame2: Path
    flow: Path
    layout: str


def _label(folder: Path, root: Path) -> str:
    relative = folder.relative_to(root).as_posix()
    return root.resolve().name if relative == "." else relative


def _kitti_pairs(folder: Path, root: Path) -> list[FlowPairFiles]:
    """The pairs of a KITTI training folder (``folder/flow_occ`` exists); [] without an image folder."""
    images = next((folder / d for d in KITTI_IMAGE_DIRS if (folder / d).is_dir()), None)
    if images is None:
        return []
    prefix = "" if folder == root else folder.relative_to(root).as_posix() + "/"
    pairs = []
    for flow in sorted((folder / KITTI_FLOW_DIR).glob("*_10.png")):
        stem = flow.name[: -len("_10.png")]
        first, second = images / f"{stem}_10.png", images / f"{stem}_11.png"
        for frame in (first, second):
            if not frame.is_file():
                raise UserError(f"KITTI flow {flow} has no frame {frame}")
        pairs.append(FlowPairFiles(prefix + stem, first, second, flow, "kitti"))
    return pairs


def find_flow_pairs(root: str | Path) -> list[FlowPairFiles]:
    """Every Middlebury- or KITTI-layout pair under ``root``, sorted by folder then name.

    Raises :class:`UserError` when ``root`` is not a folder or holds no pair.
    """
    root = Path(root).expanduser()
    if not root.is_dir():
        raise UserError(f"flow ground-truth folder {root} does not exist")
    pairs: list[FlowPairFiles] = []
    for current, dirs, files in os.walk(root):
        dirs.sort()
        folder = Path(current)
        names = set(files)
        if "flow.flo" in names:
            missing = [f for f in MIDDLEBURY_FILES if f not in names]
            if missing:
                raise UserError(f"{folder / 'flow.flo'} has no {' / '.join(missing)} beside it")
            pairs.append(FlowPairFiles(_label(folder, root), folder / "frame1.png", folder / "frame2.png",
                                       folder / "flow.flo", "middlebury"))
        if KITTI_FLOW_DIR in dirs:
            pairs += _kitti_pairs(folder, root)
            # image and flow folders of a KITTI layout hold no further pairs
            dirs[:] = [d for d in dirs if d not in (KITTI_FLOW_DIR, "flow_noc", *KITTI_IMAGE_DIRS)]
    if not pairs:
        raise UserError(f"no frame pairs with ground-truth flow in {root}: expected DIR/frame1.png, frame2.png, "
                        "flow.flo (Middlebury) or image_2/NNNNNN_10.png, _11.png with flow_occ/NNNNNN_10.png (KITTI)")
    return pairs


def load_flow_pair(files: FlowPairFiles) -> FlowPair:
    """Read one pair at native size; frames and flow must have the same size."""
    frame1, frame2 = read_rgb(files.frame1), read_rgb(files.frame2)
    flow, valid = read_flow_with_valid(files.flow)
    if frame1.shape != frame2.shape or frame1.shape[-2:] != flow.shape[-2:]:
        raise UserError(f"pair {files.name}: sizes differ (frame1 {tuple(frame1.shape[-2:])}, frame2 "
                        f"{tuple(frame2.shape[-2:])}, flow {tuple(flow.shape[-2:])})")
    return FlowPair(files.name, frame1, frame2, flow, valid)


class FlowPairFolder:
    """The ground-truth pairs under ``root`` (found at construction, read when indexed).

    ``len()``, indexing and iteration give :class:`FlowPair` items in the order of
    :func:`find_flow_pairs`; ``names`` lists them without reading any file.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        self.files = find_flow_pairs(self.root)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.files]

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> FlowPair:
        return load_flow_pair(self.files[index])

    def __iter__(self) -> Iterator[FlowPair]:
        return (load_flow_pair(f) for f in self.files)


def iter_flow_pairs(root: str | Path) -> Iterator[FlowPair]:
    """Every pair under ``root`` as ``(name, frame1, frame2, flow, valid)`` at native size, read one by
    one; a missing folder or one without pairs raises :class:`UserError` at once."""
    return iter(FlowPairFolder(root))
