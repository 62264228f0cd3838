"""PatchModelAddDownscale (Kohya's Deep Shrink) against ComfyUI's rule: inside the sigma window the
features after the chosen input block are scaled down (the skip connection kept at full size with
downscale_after_skip), and each feature map on the way up is scaled back to its skip's size;
outside the window the UNet is untouched."""

from __future__ import annotations

import pytest
import torch

from nodegen.diffusion.deep_shrink import input_blocks
from nodegen.models.objects import DiffusionModel, TextEncoder
from tests.support.fixtures import fixture
from tests.support.nodes import run
from tests.support.sampling import sample

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


def _parts(sd1):
    model = DiffusionModel.from_unet(sd1.unet, "sd1", "epsilon")
    te = TextEncoder.from_components([sd1.tokenizer], [sd1.text_encoder], "sd1")
    return model, te.encode("a tall tower"), te.encode("")


def _patched(model, **kw):
    args = dict(block_number=2, downscale_factor=2.0, start_percent=0.0, end_percent=1.0, downscale_after_skip=True,
                downscale_method="bicubic", upscale_method="bicubic")
    return run("PatchModelAddDownscale", model=model, **{**args, **kw})["model"]


def test_the_input_blocks_are_numbered_as_comfyuis(sd1):
    # the fixture: 2 levels of 1 layer; SD1/SDXL (2 layers a level): block 3 is the first downsampler
    assert input_blocks(sd1.unet) == {0: ("conv_in",), 1: ("layer", 0, 0), 2: ("down", 0), 3: ("layer", 1, 0)}


@pytest.mark.parametrize("after_skip", [True, False])
def test_the_deeper_blocks_see_smaller_features_inside_the_window(sd1, after_skip):
    model, pos, neg = _parts(sd1)
    seen = []
    handle = sd1.unet.mid_block.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
    kw = dict(seed=3, steps=4, cfg=5.0, sampler="euler", scheduler="normal", device="cpu")
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    try:
        plain = sample(model, pos, neg, latent, **kw)["samples"]
        assert set(seen) == {(4, 4)}
        seen.clear()
        shrunk = sample(_patched(model, downscale_after_skip=after_skip), pos, neg, latent, **kw)["samples"]
        assert set(seen) == {(2, 2)} and shrunk.shape == plain.shape
        assert (shrunk - plain).abs().max() > 1e-3
        seen.clear()
        outside = sample(_patched(model, start_percent=0.5, end_percent=0.6, downscale_after_skip=after_skip),
                         pos, neg, latent, **kw)["samples"]
        assert set(seen) == {(4, 4)}  # timesteps 999, 666, 333, 0: none between 399.6 and 499.5
        torch.testing.assert_close(outside, plain)
    finally:
        handle.remove()
    assert not sd1.unet.down_blocks[0]._forward_hooks and not sd1.unet.up_blocks[0]._forward_pre_hooks


def test_a_window_in_the_middle_shrinks_only_its_steps(sd1):
    model, pos, neg = _parts(sd1)
    seen = []
    handle = sd1.unet.mid_block.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape[-2:])))
    try:
        sample(_patched(model, start_percent=0.0, end_percent=0.5), pos, neg, {"samples": torch.zeros(1, 4, 8, 8)},
               seed=3, steps=6, cfg=1.0, sampler="euler", scheduler="normal", device="cpu")
    finally:
        handle.remove()
    assert seen[0] == (2, 2) and seen[-1] == (4, 4) and seen == sorted(seen)  # shrunk early, full size late


def test_block_numbers_are_checked(sd1):
    model, _, _ = _parts(sd1)
    with pytest.raises(ValueError, match=r"input 'block_number': block_number 1 is not a downsampling block; .*use one of 2"):
        _patched(model, block_number=1)
    _patched(model, block_number=1, downscale_after_skip=False)  # a layer, skip scaled too: allowed
    with pytest.raises(ValueError, match="this UNet has input blocks 0-3"):
        _patched(model, block_number=9)
