"""Lucas-Kanade refinement of a MotionNet's flow: what it recovers, what it leaves alone, how a
model config carries it."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from helpers import translated_pair
from hidden2stream.data.textures import procedural_texture
from hidden2stream.flow.refine import LucasKanadeRefinement, lucas_kanade_refine, refine_window_flows
from hidden2stream.flow.warp import backward_warp
from hidden2stream.models.motionnet import MotionNetConfig, build_motionnet
from hidden2stream.models.motionnet import CorrLayers

SMALL_CORR = CorrLayers(widths=(8, 8, 16, 16, 16), context=8, radius=1, decoder_widths=(16,))


@pytest.mark.parametrize("shift", [(0.6, -0.3), (1.5, 0.8), (-2.2, 1.1)])
def test_refinement_recovers_a_subpixel_translation_from_zero_flow(shift):
    """From zero flow (0.7-2.5 px off) to within 0.1 px away from the border. What remains is the
    bilinear resampling that made frame 2 (frame2(x + shift) equals frame1(x) only up to the
    interpolation error of the texture), orders of magnitude above float32 rounding on any CPU."""
    frame1, frame2, flow = translated_pair(shift)
    refined = lucas_kanade_refine(frame1, frame2, torch.zeros_like(flow), LucasKanadeRefinement())
    error = (refined - flow)[..., 12:-12, 12:-12].norm(dim=1)
    assert error.mean() < 0.1, f"mean error {error.mean():.3f} px"


def test_identical_frames_keep_zero_flow():
    """No temporal difference but the warp's own rounding: grid_sample maps pixel x to
    2x/(W-1)-1 and back in float32, about 1e-5 px for these sizes, so each of the 9 steps moves the
    flow by about that much times its scale factor (<= 4): well under 1e-3 px in all."""
    frame1, _, flow = translated_pair((0.0, 0.0))
    refined = lucas_kanade_refine(frame1, frame1.clone(), torch.zeros_like(flow), LucasKanadeRefinement())
    assert refined.abs().max() < 1e-3


def test_textureless_frames_keep_the_given_flow():
    """No texture, a brightness change of 0.1: the damped system's step is |sum grad I * I_t| / damping,
    where grad I is only the bilinear warp's float32 rounding of a constant (~1e-7 per channel):
    about 3e-7 * 0.1 / 1e-4 = 3e-4 px a step, under 1e-2 px after the 9 steps at scales <= 4, while
    the CNN's flow varies by pixels."""
    flat = torch.full((2, 3, 40, 56), 0.4)
    given = torch.randn(2, 2, 40, 56, generator=torch.Generator().manual_seed(1))
    refined = lucas_kanade_refine(flat, flat + 0.1, given, LucasKanadeRefinement())
    assert (refined - given).abs().max() < 1e-2


def test_steps_are_clipped_where_the_frames_do_not_match():
    """Unrelated frames: the flow moves at most iterations x max_step pixels of each scale."""
    generator = torch.Generator().manual_seed(2)
    frame1, frame2 = (procedural_texture(generator, 64, 64)[None] for _ in range(2))
    refinement = LucasKanadeRefinement(scales=(2, 1), iterations=2, max_step=0.5)
    refined = lucas_kanade_refine(frame1, frame2, torch.zeros(1, 2, 64, 64), refinement)
    bound = sum(refinement.iterations * refinement.max_step * factor for factor in refinement.scales)
    assert 0 < refined.abs().max() <= bound + 1e-5


def test_refinement_is_differentiable_in_the_flow_and_frames():
    frame1, frame2, flow = translated_pair((0.8, 0.4), 48, 64)
    start = torch.zeros_like(flow, requires_grad=True)
    frame2 = frame2.requires_grad_()
    lucas_kanade_refine(frame1, frame2, start, LucasKanadeRefinement(scales=(2, 1))).square().mean().backward()
    assert torch.isfinite(start.grad).all() and start.grad.abs().sum() > 0
    assert torch.isfinite(frame2.grad).all() and frame2.grad.abs().sum() > 0


def test_refinement_runs_in_float32_under_autocast():
    frame1, frame2, flow = translated_pair((0.5, 0.5), 32, 48)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        refined = lucas_kanade_refine(frame1, frame2, torch.zeros_like(flow), LucasKanadeRefinement())
    assert refined.dtype == torch.float32
    assert torch.equal(refined, lucas_kanade_refine(frame1, frame2, torch.zeros_like(flow), LucasKanadeRefinement()))


def test_window_flows_are_refined_pair_by_pair():
    frame1, frame2, flow = translated_pair((1.0, -0.5), 48, 64)
    frame3 = backward_warp(frame2, -flow)[0]
    frames = torch.stack([frame1, frame2, frame3], dim=1)  # (1, 3, 3, H, W)
    flows = torch.zeros(1, 2, 2, 48, 64)
    refined = refine_window_flows(frames, flows, LucasKanadeRefinement())
    expected = lucas_kanade_refine(frame2, frame3, flows[:, 1], LucasKanadeRefinement())
    assert torch.allclose(refined[:, 1], expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"frames \(B, T\+1, 3, H, W\)"):
        refine_window_flows(frames, torch.zeros(1, 3, 2, 48, 64), LucasKanadeRefinement())


@pytest.mark.parametrize("options", [dict(scales=(1, 2)), dict(scales=(3, 1)), dict(scales=(2,)), dict(iterations=0),
                                     dict(damping=0.0)])
def test_invalid_refinement_is_refused(options):
    with pytest.raises(ValueError):
        LucasKanadeRefinement(**options)


def test_model_config_carries_the_refinement_through_a_checkpoint():
    config = MotionNetConfig("corr", 2, SMALL_CORR, LucasKanadeRefinement(scales=(2, 1)))
    assert MotionNetConfig.from_dict(config.to_dict()) == config
    saved_before = {k: v for k, v in config.to_dict().items() if k != "refinement"}
    assert MotionNetConfig.from_dict(saved_before).refinement is None
    assert config.same_weights_as(dataclasses.replace(config, refinement=None))
    assert not config.same_weights_as(dataclasses.replace(config, frames=3))


@pytest.mark.parametrize("variant,layers", [("corr", SMALL_CORR), ("tiny", None)])
def test_model_refines_its_full_resolution_output_only(variant, layers):
    """Same weights with and without refinement: the pyramid (training, hidden stream) is identical,
    the full-resolution flow is the plain one refined."""
    refinement = LucasKanadeRefinement(scales=(2, 1))
    plain = build_motionnet(MotionNetConfig(variant, 3, layers)).eval()
    refined = build_motionnet(MotionNetConfig(variant, 3, layers, refinement)).eval()
    refined.load_state_dict(plain.state_dict())
    frames = torch.rand(2, 3, 3, 40, 56, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for a, b in zip(plain(frames, all_scales=True), refined(frames, all_scales=True)):
            assert torch.equal(a, b)
        expected = refine_window_flows(frames, plain(frames, all_scales=False), refinement)
        assert torch.allclose(refined(frames, all_scales=False), expected, atol=1e-6)
