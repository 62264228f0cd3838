"""sample(): the batch seed rule, progress per step with previews, cancellation inside the
sampler, KSamplerAdvanced ranges, add_noise, denoise 0."""

from __future__ import annotations

import pytest
import torch

from nodegen.diffusion.noise import initial_noise, make_generator, prepare_noise
from nodegen.kernel.context import Cancelled, CancelToken, RunContext
from nodegen.models.objects import DiffusionModel, TextEncoder
from tests.support.fixtures import fixture
from tests.support.sampling import sample

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


@pytest.fixture(scope="module")
def parts(sd1):
    model = DiffusionModel.from_unet(sd1.unet, "sd1", "epsilon")
    te = TextEncoder.from_components([sd1.tokenizer], [sd1.text_encoder], "sd1")
    return model, te.encode("a cat"), te.encode("")


def make_ctx(calls, cancel_at=None):
    token = CancelToken()

    def progress(node_id, step, total, preview):
        calls.append((step, total, preview))
        if cancel_at is not None and step == cancel_at:
            token.cancel()

    return RunContext(node_id="3", node_title="KSampler", device=torch.device("cpu"), models=None, paths=None,
                      output_dir=".", input_dir=".", temp_dir=".", workflow=None, cancel=token,
                      _progress=progress)


# -- the seed rule -------------------------------------------------------------------------------

def test_noise_rule_matches_diffusers_and_batch_items():
    from diffusers.utils.torch_utils import randn_tensor

    shape = (3, 4, 8, 10)
    noise, _ = prepare_noise(torch.zeros(shape), 42)
    ref = randn_tensor(shape, generator=torch.Generator("cpu").manual_seed(42), dtype=torch.float32)
    assert torch.equal(noise, ref)
    # item 0 of a batch == a batch of 1 with the same seed
    one, _ = prepare_noise(torch.zeros(1, 4, 8, 10), 42)
    assert torch.equal(noise[:1], one)
    # item i == the i-th of successive per-item draws of one generator
    g = make_generator(42)
    per_item = torch.cat([initial_noise((1, 4, 8, 10), generator=g) for _ in range(3)])
    assert torch.equal(noise, per_item)
    # batch_index (LatentFromBatch / RepeatLatentBatch) picks the items of the bigger batch
    picked, _ = prepare_noise(torch.zeros(2, 4, 8, 10), 42, batch_index=[2, 0])
    assert torch.equal(picked, noise[[2, 0]])
    with pytest.raises(ValueError, match="seed"):
        make_generator(-1)
    assert torch.equal(prepare_noise(torch.zeros(1, 4, 2, 2), 2**64 - 1)[0], prepare_noise(torch.zeros(1, 4, 2, 2), 2**64 - 1)[0])


def test_batch_item_equals_single_run(parts):
    model, pos, neg = parts
    batch = sample(model, pos, neg, {"samples": torch.zeros(2, 4, 8, 8)}, seed=7, steps=3, cfg=5.0,
                   sampler="euler_ancestral", scheduler="karras", device="cpu")["samples"]
    single = sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=7, steps=3, cfg=5.0,
                    sampler="euler", scheduler="karras", device="cpu")["samples"]
    single_det = sample(model, pos, neg, {"samples": torch.zeros(2, 4, 8, 8)}, seed=7, steps=3, cfg=5.0,
                        sampler="euler", scheduler="karras", device="cpu")["samples"]
    assert torch.allclose(single_det[:1], single, atol=1e-4 * float(single.abs().max()))  # batching numerics
    assert not torch.allclose(batch[0], batch[1])


def test_sde_samplers_use_a_brownian_tree_per_item(parts):
    """dpmpp_sde / 2m_sde / 3m_sde read one Brownian tree per item seeded seed + index (k-diffusion /
    ComfyUI noise, nodegen/diffusion/brownian.py), so an item does not depend on its batch."""
    from nodegen.diffusion.brownian import brownian_noise_sampler_for
    from nodegen.diffusion.samplers import get_sampler
    from nodegen.diffusion.schedules import get_sigmas

    model, pos, neg = parts
    kw = dict(seed=7, steps=3, cfg=5.0, sampler="dpmpp_2m_sde", scheduler="karras", device="cpu")
    batch = sample(model, pos, neg, {"samples": torch.zeros(2, 4, 8, 8)}, **kw)["samples"]
    single = sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, **kw)["samples"]
    tol = 1e-4 * float(single.abs().max())  # batching numerics
    assert torch.allclose(batch[:1], single, atol=tol)
    assert not torch.allclose(batch[0], batch[1], atol=tol)
    # item 1 alone (LatentFromBatch keeps batch_index): its initial noise and its tree (seed 7 + 1)
    item1 = sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8), "batch_index": [1]}, **kw)["samples"]
    assert torch.allclose(batch[1:], item1, atol=tol)
    # the step noise is the tree's, not the Gaussian stream's: rerun the sampler by hand with it
    from nodegen.diffusion.denoiser import Denoiser
    from nodegen.diffusion.noise import prepare_noise
    from nodegen.diffusion.sample import model_sampling_for

    ms = model_sampling_for(model)
    sig = get_sigmas("karras", ms, 3, 1.0)
    noise, _ = prepare_noise(torch.zeros(1, 4, 8, 8), 7)
    with model.use("cpu", None) as unet:
        lat = torch.zeros(1, 4, 8, 8)
        x = ms.noise_scaling(float(sig[0]), noise, lat)
        den = Denoiser(model, unet, pos, neg, 5.0, latent_image=lat, noise=noise, device=torch.device("cpu"),
                       dtype=torch.float32, model_sampling=ms)
        by_hand = get_sampler("dpmpp_2m_sde")(den, x, sig, extra_args={"seed": 7},
                                             noise_sampler=brownian_noise_sampler_for(x, sig, 7))
    assert torch.allclose(by_hand, single, atol=1e-6)


# -- progress, previews, cancellation ------------------------------------------------------------

def test_progress_every_step_with_preview(parts):
    model, pos, neg = parts
    calls = []
    sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=1, steps=5, cfg=4.0, sampler="heun",
           scheduler="normal", ctx=make_ctx(calls), device="cpu")
    assert [(s, t) for s, t, _ in calls] == [(i, 5) for i in range(1, 6)]
    pv = calls[-1][2]
    assert pv.shape == (1, 8, 8, 3) and pv.dtype == torch.float32 and 0 <= float(pv.min()) <= float(pv.max()) <= 1


def test_no_preview_built_without_a_listener(parts):
    model, pos, neg = parts
    calls = []
    ctx = make_ctx(calls)
    ctx._listening = lambda: False  # the executor's event bus has no subscriber
    sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=1, steps=3, cfg=4.0, sampler="euler",
           scheduler="normal", ctx=ctx, device="cpu")
    assert [(s, p) for s, _, p in calls] == [(1, None), (2, None), (3, None)]


def test_cancel_inside_the_sampler(parts):
    model, pos, neg = parts
    calls = []
    with pytest.raises(Cancelled):
        sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=1, steps=10, cfg=4.0,
               sampler="dpmpp_2m", scheduler="karras", ctx=make_ctx(calls, cancel_at=3), device="cpu")
    # the progress call after the cancel request raised: no step 5 was ever reached
    assert [s for s, _, _ in calls] == [1, 2, 3]


# -- ranges and noise switches --------------------------------------------------------------------

def test_two_pass_advanced_equals_one_pass(parts):
    model, pos, neg = parts
    lat = {"samples": torch.zeros(1, 4, 8, 8)}
    kw = dict(seed=11, steps=8, cfg=5.0, sampler="dpmpp_2m", scheduler="karras", device="cpu")
    full = sample(model, pos, neg, lat, **kw)["samples"]
    first = sample(model, pos, neg, lat, end_step=5, return_with_leftover_noise=True, **kw)
    second = sample(model, pos, neg, first, start_step=5, add_noise=False, **kw)["samples"]
    # dpmpp_2m's history restarts in the second pass (one first-order step), so close, not equal
    assert (second - full).abs().max() < 0.05 * full.abs().max()
    kw["sampler"] = "euler"  # a one-step method splits exactly
    full = sample(model, pos, neg, lat, **kw)["samples"]
    first = sample(model, pos, neg, lat, end_step=5, return_with_leftover_noise=True, **kw)
    second = sample(model, pos, neg, first, start_step=5, add_noise=False, **kw)["samples"]
    assert torch.allclose(second, full, atol=1e-5)
    # past the end: unchanged; denoise 0: unchanged
    assert torch.equal(sample(model, pos, neg, lat, start_step=8, **kw)["samples"], lat["samples"])
    assert torch.equal(sample(model, pos, neg, lat, denoise=0.0, **kw)["samples"], lat["samples"])


def test_without_noise_and_cfg_one(parts):
    model, pos, neg = parts
    lat = {"samples": torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))}
    a = sample(model, pos, neg, lat, seed=1, steps=3, cfg=1.0, sampler="euler", scheduler="normal",
               denoise=0.5, add_noise=False, device="cpu")["samples"]
    b = sample(model, pos, neg, lat, seed=999, steps=3, cfg=1.0, sampler="euler", scheduler="normal",
               denoise=0.5, add_noise=False, device="cpu")["samples"]
    assert torch.equal(a, b)  # no noise: the seed does not matter for a deterministic sampler
    # cfg 1 ignores the negative prompt entirely
    c = sample(model, pos, pos, lat, seed=1, steps=3, cfg=1.0, sampler="euler", scheduler="normal",
               denoise=0.5, add_noise=False, device="cpu")["samples"]
    assert torch.equal(a, c)


def test_errors(parts):
    model, pos, neg = parts
    with pytest.raises(ValueError, match="unknown sampler"):
        sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=1, steps=2, sampler="nope")
    with pytest.raises(TypeError, match="LATENT"):
        sample(model, pos, neg, torch.zeros(1, 4, 8, 8), seed=1, steps=2)
    with pytest.raises(ValueError, match="positive conditioning is empty"):
        sample(model, [], neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=1, steps=2)


def test_half_precision_plumbing(sd1, parts):
    """The GPU path runs the UNet in half precision: the same code on the CPU in bfloat16 (on a
    copy of the weights) keeps latents in float32 and stays close to the float32 result."""
    import copy

    _, pos, neg = parts
    model32 = DiffusionModel.from_unet(sd1.unet, "sd1", "epsilon")
    model16 = DiffusionModel.from_unet(copy.deepcopy(sd1.unet), "sd1", "epsilon")
    lat = {"samples": torch.zeros(1, 4, 8, 8)}
    kw = dict(seed=3, steps=4, cfg=5.0, sampler="dpmpp_2m", scheduler="karras", device="cpu")
    a = sample(model32, pos, neg, lat, **kw)["samples"]
    b = sample(model16, pos, neg, lat, dtype=torch.bfloat16, **kw)["samples"]
    assert next(model16.unet.parameters()).dtype == torch.bfloat16
    assert b.dtype == torch.float32 and torch.isfinite(b).all()
    assert (a - b).abs().max() < 0.05 * a.abs().max()
