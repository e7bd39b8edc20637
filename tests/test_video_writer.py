"""Videos to watch (hidden2stream.video_writer), their tiles and captions, image reading, flow units."""
from __future__ import annotations

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hidden2stream.errors import UserError
from hidden2stream.pipeline.flow import to_native, working_size
from hidden2stream.flow.visualize import colour_wheel, flow_to_rgb, frame_and_flow
from hidden2stream.images import read_rgb
from hidden2stream.video_writer import VideoWriter, caption, display_size, video_codec

CODECS = sorted({video_codec(), "mpeg4"})  # the writer's choice here and the fallback


def _decode(path) -> np.ndarray:
    """All frames of a video as uint8 RGB ``(N, H, W, 3)``."""
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def _flat(height: int, width: int, rgb: tuple[int, int, int]) -> torch.Tensor:
    return torch.tensor(rgb, dtype=torch.uint8).view(3, 1, 1).expand(3, height, width).contiguous()


@pytest.mark.parametrize("codec", CODECS)
def test_a_flat_frame_keeps_its_colour(tmp_path, codec):
    """yuv420p round trip: limited-range 8-bit Y/Cb/Cr rounding costs <= 2 levels per channel, and a
    flat frame has no chroma detail to lose to subsampling or to the quantiser (CRF 18 / >= 4 Mbit/s
    codes its blocks almost exactly); measured 1.3 mean, 2 max. A wrong matrix or range (full vs
    limited: 200 -> ~188) or swapped channels is off by 10 levels or more, hence mean < 8/255."""
    colour = (200, 60, 30)
    with VideoWriter(tmp_path / "flat.mp4", fps=25, codec=codec) as writer:
        for _ in range(5):
            writer.write(_flat(120, 160, colour))
    frames = _decode(tmp_path / "flat.mp4")
    assert frames.shape == (5, 120, 160, 3)
    assert np.abs(frames.astype(int) - np.array(colour)).mean() < 8


@pytest.mark.parametrize("codec", CODECS)
def test_flow_colours_survive_encoding(tmp_path, codec):
    """Changing flow pictures: mean error < 4 levels, 99th percentile < 18 (measured about 2.7 and 13;
    MPEG-4 at FFmpeg's default ~200 kbit/s, the old predict.py video, gives 4.8 and 23)."""
    generator = torch.Generator().manual_seed(0)
    flows = F.interpolate(torch.randn(6, 2, 15, 20, generator=generator) * 4, size=(240, 320), mode="bilinear")
    pictures = flow_to_rgb(flows)
    with VideoWriter(tmp_path / "flow.mp4", fps=25, codec=codec) as writer:
        for picture in pictures:
            writer.write(picture)
    error = np.abs(_decode(tmp_path / "flow.mp4").astype(int) - pictures.permute(0, 2, 3, 1).numpy())
    assert error.mean() < 4 and np.percentile(error, 99) < 18


def test_odd_sizes_are_padded_and_folders_get_png_frames(tmp_path):
    with VideoWriter(tmp_path / "odd.mp4", fps=30000 / 1001) as writer:
        writer.write(_flat(33, 45, (10, 20, 30)))
        with pytest.raises(ValueError, match="frame 1"):
            writer.write(_flat(36, 48, (10, 20, 30)))
    assert _decode(tmp_path / "odd.mp4").shape == (1, 34, 46, 3)
    with VideoWriter(tmp_path / "frames", fps=25) as writer:
        writer.write(_flat(32, 32, (1, 2, 3)))
        writer.write(_flat(32, 32, (1, 2, 3)))
    assert sorted(p.name for p in (tmp_path / "frames").iterdir()) == ["frame_00000.png", "frame_00001.png"]
    with pytest.raises(ValueError, match="give a .mp4/.mkv/.mov file or a folder"):
        VideoWriter(tmp_path / "flow.gif", fps=25)


@pytest.mark.parametrize("size, shown", [
    ((144, 176), (320, 392)),  # carphone: too small, raised to 320 px tall
    ((240, 320), (320, 426)),  # tree.avi
    ((576, 768), (360, 480)),  # pedestrians: longer side capped at 480
    ((272, 640), (320, 752)),  # bikes: the height floor wins over the cap
])
def test_display_size(size, shown):
    assert display_size(*size) == shown


def test_tiles_put_the_flow_beside_its_frame_with_a_legend_and_captions():
    frame = torch.rand(3, 48, 64)
    flow = torch.zeros(2, 12, 16)
    flow[0] = 1.0  # rightwards everywhere: one colour
    tile = frame_and_flow(frame, flow, (320, 426))
    assert tile.shape == (3, 320, 852) and tile.dtype == torch.uint8
    right = flow_to_rgb(flow)[:, 0, 0]
    assert torch.equal(tile[:, 10, 500], right)  # the flow half away from the legend
    wheel, disc = colour_wheel(64)  # radius 31.5 around (31.5, 31.5)
    assert disc[32, 62] and not disc[0, 0]

    def colour(u: float, v: float) -> list[int]:
        return flow_to_rgb(torch.tensor([[[u]], [[v]]]) / 31.5, max_magnitude=1.0)[:, 0, 0].tolist()

    assert wheel[:, 32, 55].tolist() == colour(23.5, 0.5)  # right of the centre: the colour of rightwards flow
    assert wheel[:, 55, 32].tolist() == colour(0.5, 23.5)  # below it: downwards (image y axis)
    labelled = caption(tile, ["video: walk 0.61"])
    assert labelled.shape == tile.shape and not torch.equal(labelled[:, :20], tile[:, :20])
    assert torch.equal(labelled[:, 40:], tile[:, 40:])  # one line at the top, nothing below it


def test_reading_a_text_file_as_an_image_is_one_line(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    with pytest.raises(UserError) as info:
        read_rgb(text)
    assert str(info.value) == f"{text} is not a readable image (not a PNG, JPEG, WebP or GIF file)"
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(UserError, match=r"broken.png is not a readable image \(damaged PNG data\)$"):
        read_rgb(broken)


def test_flows_go_back_to_native_pixels():
    assert working_size(576, 768, max_side=480) == (360, 480)
    assert working_size(144, 176, max_side=480) == (144, 176)  # never scaled up
    assert working_size(144, 176, size=(64, 96), max_side=32) == (64, 96)
    flow = torch.stack([torch.full((32, 64), 1.0), torch.full((32, 64), 2.0)])
    native = to_native(flow, (64, 256))
    assert native.shape == (2, 64, 256)
    assert torch.allclose(native[0], torch.tensor(4.0)) and torch.allclose(native[1], torch.tensor(4.0))
