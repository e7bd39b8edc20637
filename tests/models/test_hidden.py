"""The stacked hidden stream classifies the flow that flow commands write: MotionNet's final
full-resolution flow (``motionnet(frames, all_scales=False)``, Lucas-Kanade refined when the config
says so), from the same pass that gives the pyramid, with gradients through the refinement."""
from __future__ import annotations

import pytest
import torch

from hidden2stream.data.textures import procedural_texture
from hidden2stream.flow.predict import window_flows
from hidden2stream.flow.refine import LucasKanadeRefinement, refine_window_flows
from hidden2stream.models.hidden import StackedHiddenStream, flow_to_stack
from hidden2stream.models.motionnet import MotionNetConfig, build_motionnet
from hidden2stream.models.motionnet import CorrLayers
from hidden2stream.models.streams import temporal_stream
from hidden2stream.pipeline.two_stream import TwoStreamOptions, motion_config
from hidden2stream.pretrained import load_flow_model, load_motionnet

FRAMES = 3  # T+1: two flows per window
SMALL_CORR = CorrLayers(widths=(8, 8, 16, 16, 16), context=8, radius=1, decoder_widths=(16,))


def moving_window(height: int, width: int) -> torch.Tensor:
    """``(1, FRAMES, 3, H, W)``: a texture moving 1 px right and 2 px down per frame (forward flow
    (u, v) = (1, 2): frame t's point x is at x + (1, 2) in frame t+1)."""
    texture = procedural_texture(torch.Generator().manual_seed(3), height + 2 * FRAMES, width + FRAMES)
    return torch.stack([texture[:, 2 * (FRAMES - t):2 * (FRAMES - t) + height, FRAMES - t:FRAMES - t + width]
                        for t in range(FRAMES)])[None]


def stacked(motionnet: torch.nn.Module) -> StackedHiddenStream:
    return StackedHiddenStream(motionnet, temporal_stream("tiny", 4, 2 * (FRAMES - 1))).eval()


def classified_stack(stream: StackedHiddenStream, frames: torch.Tensor,
                     monkeypatch: pytest.MonkeyPatch) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(the flow stack the temporal CNN receives, the pyramid) for ``frames``."""
    seen = []
    original = stream.temporal.forward_features

    def capture(stack: torch.Tensor) -> torch.Tensor:
        seen.append(stack)
        return original(stack)

    monkeypatch.setattr(stream.temporal, "forward_features", capture)
    with torch.no_grad():
        _, pyramid = stream(frames)
    (stack,) = seen
    return stack, pyramid


@pytest.mark.parametrize("size", [(64, 64), (40, 56)])
def test_shipped_corr_hidden_stream_classifies_the_flow_flow_py_writes(size, monkeypatch):
    """Shipped MotionNet-corr (refinement: Lucas-Kanade): the temporal CNN's input is the flow stack
    of ``motionnet(frames, all_scales=False)`` and of flow.py's :func:`window_flows` at the frames'
    own size (no resize), bit for bit, also where the size is not a multiple of 32 (padding). The
    model flow.py loads (the same weights as 11-frame windows) gives that flow too."""
    motionnet = load_motionnet("default", frames=FRAMES)
    assert motionnet.config.refinement == LucasKanadeRefinement()
    stream = stacked(motionnet)
    frames = moving_window(*size)
    stack, pyramid = classified_stack(stream, frames, monkeypatch)
    with torch.no_grad():
        forward = motionnet.eval()(frames, all_scales=False)
        network = motionnet.decode(motionnet.encode(frames), all_scales=False, size=size)
        assert [torch.equal(a, b) for a, b in zip(pyramid, motionnet(frames, all_scales=True))] == [True] * 5
    written = window_flows(motionnet, frames[0], "cpu")  # what experiments/flow.py writes, (T, 2, H, W)
    assert torch.equal(written, forward[0])
    torch.testing.assert_close(window_flows(load_flow_model("default", pair=False), frames[0], "cpu"), written)
    assert forward.abs().max() < stream.clip  # nothing clipped: the stack holds the whole flow
    assert torch.equal(stack, flow_to_stack(forward, stream.clip))
    assert not torch.equal(forward, network)  # the refinement changed the flow that is classified


@pytest.mark.parametrize("variant", ["tiny", "corr", "recurrent"])
def test_every_variant_classifies_its_final_flow(variant, monkeypatch):
    """Random small networks with a refinement, at 40x56: the stack is ``all_scales=False``'s flow."""
    layers = SMALL_CORR if variant == "corr" else None
    motionnet = build_motionnet(MotionNetConfig(variant, FRAMES, layers, LucasKanadeRefinement()))
    stream = stacked(motionnet)
    frames = moving_window(40, 56)
    stack, _ = classified_stack(stream, frames, monkeypatch)
    with torch.no_grad():
        expected = motionnet.eval()(frames, all_scales=False)
    assert torch.equal(stack, flow_to_stack(expected, stream.clip))


@pytest.mark.parametrize("option, refined", [("auto", True), ("none", False), ("lk", True)])
def test_refinement_option_sets_what_the_hidden_stream_classifies(option, refined, monkeypatch):
    """``--refinement``: auto = the shipped weights' LK, none = the network's flow alone, lk = LK."""
    config = motion_config(TwoStreamOptions(motion="corr", motion_checkpoint="default", frames=FRAMES,
                                            refinement=option))
    assert config.refinement == (LucasKanadeRefinement() if refined else None)
    motionnet = build_motionnet(config).eval()
    motionnet.load_state_dict(load_motionnet("default", frames=FRAMES).state_dict())
    stream = stacked(motionnet)
    frames = moving_window(40, 56)
    stack, _ = classified_stack(stream, frames, monkeypatch)
    with torch.no_grad():
        network = motionnet.decode(motionnet.encode(frames), all_scales=False, size=(40, 56))
    lk = refine_window_flows(frames, network, LucasKanadeRefinement())
    assert torch.equal(stack, flow_to_stack(lk if refined else network, stream.clip))


def test_no_checkpoint_refinement_options():
    """Without a checkpoint, auto and none leave the network alone and lk refines."""
    assert motion_config(TwoStreamOptions(motion="tiny")).refinement is None
    assert motion_config(TwoStreamOptions(motion="tiny", refinement="lk")).refinement == LucasKanadeRefinement()


def test_temporal_loss_trains_motionnet_through_the_refinement():
    """A backward pass from the temporal logits reaches MotionNet's weights through the refinement:
    non-zero gradients, which differ from those of the same network without it."""
    frames = moving_window(40, 56)
    grads = {}
    for refinement in (LucasKanadeRefinement(), None):
        torch.manual_seed(0)
        config = MotionNetConfig("corr", FRAMES, SMALL_CORR, refinement)
        motionnet = build_motionnet(config)
        torch.manual_seed(1)
        stream = stacked(motionnet)
        logits, _ = stream(frames)
        logits.logsumexp(1).sum().backward()
        grads[refinement is None] = {name: p.grad.clone() for name, p in motionnet.named_parameters()
                                     if p.grad is not None}
    refined, plain = grads[False], grads[True]
    assert set(refined) == {name for name, _ in motionnet.named_parameters()}
    assert all(g.abs().sum() > 0 for g in refined.values())
    assert any(not torch.allclose(refined[name], plain[name]) for name in refined)
