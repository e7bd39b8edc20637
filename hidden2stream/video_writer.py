"""Videos one can look at: a viewable size, captions, and an encoder that keeps flow colours clean.

* :func:`display_size`: the size a clip is shown at (longer side capped, height at least 320 px).
* :func:`caption`: text lines drawn onto a frame on darkened bands (OpenCV, no extra dependency).
* :class:`VideoWriter`: uint8 RGB frames ``(3, H, W)`` to an ``.mp4``/``.mkv``/``.mov`` file, or to
  a folder of PNG frames ``frame_00000.png, ...`` when the path has no suffix.

Encoding: H.264 (``libx264``, CRF 18, yuv420p) where the FFmpeg build has it, else MPEG-4 at a
bit rate of about one bit per pixel (at least 4 Mbit/s). Flow pictures are large smooth areas of
saturated colour; the MPEG-4 default of ~200 kbit/s blocks them out, CRF 18 keeps them within a
few levels of the original. yuv420p halves the chroma resolution, so odd sizes are padded by one
replicated row or column.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Sequence

import av
import cv2
import numpy as np
import torch
from torch import Tensor

from hidden2stream.flow.visualize import save_png

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov")
#: The longer side of a displayed clip at most (pixels), unless the height floor needs more.
DEFAULT_MAX_SIDE = 480
#: The height of a displayed clip at least (pixels), so captions stay legible.
MIN_HEIGHT = 320
#: libx264 constant rate factor: 18 is visually lossless for most content.
CRF = 18
#: MPEG-4 fallback: bits per pixel and frame, and the bit rate floor.
MPEG4_BITS_PER_PIXEL = 1.0
MPEG4_MIN_BIT_RATE = 4_000_000


def video_codec() -> str:
    """``"libx264"`` when this FFmpeg build can encode H.264 with it, else ``"mpeg4"``."""
    try:
        av.Codec("libx264", "w")
    except (av.error.FFmpegError, ValueError):  # an unknown codec name raises one or the other
        return "mpeg4"
    return "libx264"


def is_video_path(path: Path) -> bool:
    """Whether ``path`` names a video file (by its suffix) rather than a folder for PNG frames."""
    return path.suffix.lower() in VIDEO_SUFFIXES


def check_output(path: Path) -> None:
    """Raise ``ValueError`` unless ``path`` is a video file name or a suffix-less folder name."""
    if path.suffix and not is_video_path(path):
        raise ValueError(f"{path}: give a {'/'.join(VIDEO_SUFFIXES)} file or a folder for PNG frames")


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))


def display_size(height: int, width: int, max_side: int | None = DEFAULT_MAX_SIDE,
                 min_height: int = MIN_HEIGHT) -> tuple[int, int]:
    """``(H, W)``, both even, to show a ``height x width`` clip at, aspect kept.

    A clip whose longer side exceeds ``max_side`` (None: no cap) is scaled down to it; one lower
    than ``min_height`` is scaled up to that height, and this floor wins over the cap (a 640x272
    clip shows at 752x320), so captions stay legible. Otherwise the clip keeps its own size.
    """
    scale = min(1.0, max_side / max(height, width)) if max_side else 1.0
    scale = max(scale, min_height / height)
    return _even(height * scale), _even(width * scale)


def caption(image: Tensor, lines: Sequence[str], top: bool = True) -> Tensor:
    """``image`` (uint8 ``(3, H, W)``) with ``lines`` of white text on darkened bands along its top
    (``top``) or bottom-left edge, legible on any background. The letters are about ``H / 30`` px
    high (11 px at 320 px) and shrink where a line would not fit the width."""
    canvas = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
    height, width = canvas.shape[:2]
    font, base = cv2.FONT_HERSHEY_SIMPLEX, height / 640
    thickness, margin = max(1, round(base * 2)), max(4, height // 80)
    letters = cv2.getTextSize("Ag", font, base, thickness)[0][1]
    line_height = round(letters * 1.9)
    y = 0 if top else height - line_height * len(lines) - margin // 2
    for line in lines:
        text_width = cv2.getTextSize(line, font, base, thickness)[0][0]
        size = min(base, base * (width - 2 * margin) / max(text_width, 1))
        band = canvas[y:y + line_height, :min(width, round(text_width * size / base) + 2 * margin)]
        band[:] = band // 3  # darken to a third: white text stands out on any colour
        baseline = y + (line_height + letters) // 2
        cv2.putText(canvas, line, (margin, baseline), font, size, (255, 255, 255), thickness, cv2.LINE_AA)
        y += line_height
    return torch.from_numpy(canvas).permute(2, 0, 1).contiguous()


class VideoWriter:
    """Write uint8 RGB frames ``(3, H, W)`` of one size to a video file or a PNG folder.

    ``path`` with a video suffix (:data:`VIDEO_SUFFIXES`) is encoded at ``fps`` with ``codec``
    (default :func:`video_codec`); without a suffix it becomes a folder of ``frame_00000.png, ...``.
    The encoder opens at the first frame (its size sets the stream's). Use as a context manager, or
    call :meth:`close`, which flushes the encoder.
    """

    def __init__(self, path: str | Path, fps: float, codec: str | None = None) -> None:
        self.path = Path(path)
        check_output(self.path)
        self.fps = Fraction(fps).limit_denominator(1001) if fps > 0 else Fraction(25)
        self.codec = codec or video_codec()
        self.count = 0
        self.container: av.container.OutputContainer | None = None
        self.stream: av.video.stream.VideoStream | None = None
        if is_video_path(self.path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        else:
            self.path.mkdir(parents=True, exist_ok=True)

    def _open(self, height: int, width: int) -> None:
        self.container = av.open(str(self.path), mode="w")
        stream = self.container.add_stream(self.codec, rate=self.fps)
        stream.height, stream.width, stream.pix_fmt = height, width, "yuv420p"
        if self.codec == "libx264":
            stream.options = {"crf": str(CRF), "preset": "medium"}
        else:
            stream.bit_rate = max(MPEG4_MIN_BIT_RATE, round(MPEG4_BITS_PER_PIXEL * height * width * self.fps))
        self.stream = stream

    def write(self, image: Tensor) -> None:
        """Append one frame (uint8 ``(3, H, W)``, the size of the first)."""
        if image.dtype != torch.uint8 or image.ndim != 3 or image.shape[0] != 3:
            raise ValueError(f"frames must be uint8 (3, H, W), got {image.dtype} {tuple(image.shape)}")
        if not is_video_path(self.path):
            save_png(image, self.path / f"frame_{self.count:05d}.png")
            self.count += 1
            return
        array = image.permute(1, 2, 0).numpy()
        array = np.pad(array, ((0, array.shape[0] % 2), (0, array.shape[1] % 2), (0, 0)), mode="edge")
        if self.stream is None:
            self._open(*array.shape[:2])
        elif (self.stream.height, self.stream.width) != array.shape[:2]:
            raise ValueError(f"frame {self.count} is {tuple(image.shape[1:])}, the video "
                             f"{(self.stream.height, self.stream.width)}")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(array), format="rgb24")
        self.container.mux(self.stream.encode(frame))
        self.count += 1

    def close(self) -> None:
        """Flush the encoder and close the file (nothing to do for PNG frames)."""
        if self.container is not None:
            self.container.mux(self.stream.encode())
            self.container.close()
            self.container = None

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
