"""SelfAttentionGuidance (nodes/self_attention_guidance.py, ComfyUI's comfy_extras/nodes_sag.py).

Oracles:

* diffusers' StableDiffusionSAGPipeline computes what ComfyUI does when the blur's sigma is 1.0 (its
  fixed value) on a VP scheduler whose timesteps are the model's own (DDIM): its ``add_noise`` of
  the unconditional epsilon is ComfyUI's ``degraded + x - x0`` there, and its
  ``eps_cfg + s (eps_uncond - eps_degraded)`` is ComfyUI's ``cfg + s (degraded - sag)`` in noise
  terms. So: our ``ddim`` / ``ddim_uniform`` run == that pipeline with ``sag_scale``, same seed.
* Where they part (ComfyUI's ``blur_sigma`` input, its sigma-space samplers, cfg 1 where ComfyUI
  still blurs the unconditional prediction and diffusers the conditional one), ComfyUI's rules
  are written out below from nodes_sag.py (:func:`comfy_gaussian_blur_2d`,
  :func:`comfy_create_blur_map`, :func:`comfy_sag`) and put in as a hook on the plain model, with
  the attention map kept by diffusers' own ``CrossAttnStoreProcessor``; that run is the reference.
"""

from __future__ import annotations

import copy
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from nodegen.diffusion.self_attention_guidance import (
    AttentionRecorder,
    SelfAttentionGuidance,
    attention_mask,
    degrade,
    gaussian_blur_2d,
    middle_grid,
)
from nodegen.models.objects import DiffusionModel, TextEncoder
from tests.support.fixtures import fixture
from tests.support.nodes import run
from tests.support.sampling import sample

torch.set_num_threads(1)


# -- ComfyUI's rules, written out (comfy_extras/nodes_sag.py) ------------------------------------------
def comfy_gaussian_blur_2d(img, kernel_size, sigma):
    ksize_half = (kernel_size - 1) * 0.5
    x = torch.linspace(-ksize_half, ksize_half, steps=kernel_size)
    pdf = torch.exp(-0.5 * (x / sigma).pow(2))
    x_kernel = (pdf / pdf.sum()).to(device=img.device, dtype=img.dtype)
    kernel2d = torch.mm(x_kernel[:, None], x_kernel[None, :])
    kernel2d = kernel2d.expand(img.shape[-3], 1, kernel2d.shape[0], kernel2d.shape[1])
    padding = [kernel_size // 2] * 4
    return F.conv2d(F.pad(img, padding, mode="reflect"), kernel2d, groups=img.shape[-3])


def comfy_create_blur_map(x0, attn, sigma=3.0, threshold=1.0):
    _, hw1, hw2 = attn.shape
    b, _, lh, lw = x0.shape
    attn = attn.reshape(b, -1, hw1, hw2)
    mask = attn.mean(1, keepdim=False).sum(1, keepdim=False) > threshold
    ratio = 2 ** (math.ceil(math.sqrt(lh * lw / hw1)) - 1).bit_length()
    mid_shape = [math.ceil(lh / ratio), math.ceil(lw / ratio)]
    mask = mask.reshape(b, *mid_shape).unsqueeze(1).type(attn.dtype)
    mask = F.interpolate(mask, (lh, lw))
    blurred = comfy_gaussian_blur_2d(x0, kernel_size=9, sigma=sigma)
    return blurred * mask + x0 * (1 - mask)


def comfy_sag(cfg_result, uncond_pred, uncond_attn, x, scale, blur_sigma, call_uncond):
    """The post-CFG function: ``call_uncond(x)`` is the negative's denoised prediction at ``x``."""
    if min(cfg_result.shape[2:]) <= 4:
        return cfg_result
    degraded = comfy_create_blur_map(uncond_pred, uncond_attn, blur_sigma, 1.0)
    sag = call_uncond(degraded + x - uncond_pred)
    return cfg_result + (degraded - sag) * scale


def middle_attn1(unet):
    return unet.mid_block.attentions[0].transformer_blocks[0].attn1


def as_comfy(model: DiffusionModel, scale: float, blur_sigma: float) -> DiffusionModel:
    """The plain model with ComfyUI's SAG as a hook; diffusers' CrossAttnStoreProcessor keeps the
    attention map (of the unconditional chunk, first in the batch as in ComfyUI's [uncond, cond])."""
    from diffusers.pipelines.deprecated.stable_diffusion_sag.pipeline_stable_diffusion_sag import (
        CrossAttnStoreProcessor,
    )

    def hook(den, x, sigma, denoised):
        layer = middle_attn1(den.unet)
        saved, store = layer.processor, CrossAttnStoreProcessor()
        layer.set_processor(store)
        try:
            if den.ran_uncond:  # the step's call held [uncond, cond]: run it again to see its map
                den.predict(den.negative + den.positive, x, sigma)
                uncond_pred, n = den.last_uncond, 2
            else:  # cfg 1: ComfyUI still makes the unconditional prediction
                uncond_pred, n = den.predict(den.negative, x, sigma), 1
            uncond_attn = store.attention_probs.chunk(n)[0]
        finally:
            layer.set_processor(saved)
        return comfy_sag(denoised, uncond_pred, uncond_attn, x, scale, blur_sigma,
                         lambda at: den.predict(den.negative, at, sigma))
    return model.with_denoise_hook(hook)


# -- the rule on tensors -----------------------------------------------------------------------------
def test_blur_is_comfyuis_gaussian_with_reflected_borders():
    img = torch.randn(2, 3, 6, 7, generator=torch.Generator().manual_seed(0))

    def reflect(i, n):
        return -i if i < 0 else (2 * (n - 1) - i if i >= n else i)

    for sigma in (0.5, 2.0, 10.0):
        g = torch.tensor([math.exp(-0.5 * (i / sigma) ** 2) for i in range(-4, 5)], dtype=torch.float64)
        g = g / g.sum()
        want = torch.zeros_like(img)
        for a in range(-4, 5):  # sum over the 9x9 window, each offset with its reflected rows and columns
            rows = [reflect(y + a, 6) for y in range(6)]
            for b in range(-4, 5):
                cols = [reflect(x + b, 7) for x in range(7)]
                want += float(g[a + 4] * g[b + 4]) * img[..., rows, :][..., cols]
        got = gaussian_blur_2d(img, 9, sigma)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(got, comfy_gaussian_blur_2d(img, 9, sigma))
    assert torch.equal(gaussian_blur_2d(img, 9, 0.0), img)  # ComfyUI's kernel is NaN at 0
    assert torch.isnan(comfy_gaussian_blur_2d(img, 9, 0.0)).all()


def test_mask_marks_the_tokens_that_receive_most_attention():
    """Two heads, a 2x2 middle grid on a 4x4 latent; the heads' mean attention each key receives
    (summed over the queries) is 2.0, 0.5, 1.5, 0.0: tokens 0 and 2 (the left column) are blurred."""
    head_a = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.5, 0.0, 0.5, 0.0], [0.5, 0.0, 0.5, 0.0]])
    head_b = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.0, 0.5, 0.5, 0.0], [0.0, 0.0, 1.0, 0.0], [0.5, 0.0, 0.5, 0.0]])
    torch.testing.assert_close(((head_a + head_b) / 2).sum(0), torch.tensor([2.0, 0.5, 1.5, 0.0]))
    attn = torch.stack([head_a, head_b])  # [batch 1 * heads 2, 4, 4]
    mask = attention_mask(attn, 4, 4, 1)
    assert torch.equal(mask, torch.tensor([[1.0, 1, 0, 0]] * 4).reshape(1, 1, 4, 4))
    x0 = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    got = degrade(x0, attn, 2.0)
    assert torch.equal(got[..., 4:], x0[..., 4:]) and not torch.equal(got[..., :4], x0[..., :4])
    torch.testing.assert_close(got, comfy_create_blur_map(x0, attn, 2.0))
    with pytest.raises(ValueError, match="SelfAttentionGuidance: the attention map has 9 tokens"):
        attention_mask(torch.rand(2, 9, 9), 8, 8, 1)  # an area of the latent, not the whole


def test_middle_grid_is_the_unets_downscale():
    for h, w in [(64, 64), (128, 96), (13, 9), (8, 8), (17, 33)]:
        grid = (math.ceil(math.ceil(math.ceil(h / 2) / 2) / 2), math.ceil(math.ceil(math.ceil(w / 2) / 2) / 2))
        assert middle_grid(h, w, grid[0] * grid[1]) == grid  # three stride-2 convolutions (SD1, SD2)
    assert middle_grid(128, 128, 32 * 32) == (32, 32)  # SDXL: two


def test_recorder_keeps_the_first_unconditional_chunk_and_computes_the_same_attention():
    from diffusers.models.attention_processor import Attention, AttnProcessor2_0

    from nodegen.diffusion.step_context import batch_layout

    torch.manual_seed(0)
    attn = Attention(32, heads=4, dim_head=8)
    x = torch.randn(6, 5, 32)  # three chunks of 2
    want = attn(x)
    recorder = AttentionRecorder(AttnProcessor2_0())
    attn.set_processor(recorder)
    q, k = (attn.head_to_batch_dim(f(x)) for f in (attn.to_q, attn.to_k))
    probs = torch.softmax(q @ k.transpose(1, 2) * 8**-0.5, dim=-1)  # [6 * 4, 5, 5], batch-major
    for layout, chunk in [((False, True, True), 1), ((True, False, False), 0), ((False, False, False), None)]:
        recorder.probs = None
        token = batch_layout.set(layout)
        try:
            torch.testing.assert_close(attn(x), want, rtol=1e-5, atol=1e-5)
        finally:
            batch_layout.reset(token)
        if chunk is None:
            assert recorder.probs is None  # a call without a negative keeps nothing
        else:
            torch.testing.assert_close(recorder.probs, probs[8 * chunk: 8 * (chunk + 1)])
    recorder.force = True
    attn(x[:2])
    torch.testing.assert_close(recorder.probs, probs[:8])


def fake_denoiser(attn, *, ran_uncond=True, negative=("neg",)):
    """A denoiser whose model is ``0.5 x + 0.1`` and whose middle attention kept ``attn``."""
    recorder = AttentionRecorder(inner=None)
    recorder.probs = attn if ran_uncond else None
    calls = []

    def predict(items, x, sigma, active_only=False):
        calls.append((list(items), x.clone(), sigma, recorder.force))
        if recorder.force:
            recorder.probs = attn
        return 0.5 * x + 0.1

    attn1 = SimpleNamespace(processor=recorder)
    unet = SimpleNamespace(mid_block=SimpleNamespace(attentions=[SimpleNamespace(transformer_blocks=[
        SimpleNamespace(attn1=attn1)])]))
    return SimpleNamespace(unet=unet, ran_uncond=ran_uncond, negative=list(negative), predict=predict,
                           last_uncond=None, calls=calls)


def test_hook_blurs_renoises_calls_the_negative_and_adds_the_scaled_difference():
    g = torch.Generator().manual_seed(2)
    x, uncond, out = (torch.randn(1, 4, 8, 8, generator=g) for _ in range(3))
    attn = torch.softmax(torch.randn(8, 16, 16, generator=g) * 3, dim=-1)  # 8 heads, 4x4 middle grid
    mask = attention_mask(attn, 8, 8, 1)
    assert 0 < float(mask.mean()) < 1
    den = fake_denoiser(attn)
    den.last_uncond = uncond
    got = SelfAttentionGuidance(0.7, 1.5)(den, x, 3.0, out)
    ((items, at, sigma, _),) = den.calls  # one more model call: the negative at the degraded input
    degraded = comfy_create_blur_map(uncond, attn, 1.5)
    assert items == ["neg"] and sigma == 3.0
    torch.testing.assert_close(at, degraded + x - uncond)
    torch.testing.assert_close(got, out + (degraded - (0.5 * at + 0.1)) * 0.7)
    torch.testing.assert_close(got, comfy_sag(out, uncond, attn, x, 0.7, 1.5, lambda a: 0.5 * a + 0.1))

    den = fake_denoiser(attn, ran_uncond=False)  # cfg 1: the hook makes the unconditional prediction
    got = SelfAttentionGuidance(0.7, 1.5)(den, x, 3.0, out)
    (first, second) = den.calls
    assert first[3] and not second[3]  # the first kept its attention map
    torch.testing.assert_close(got, comfy_sag(out, 0.5 * x + 0.1, attn, x, 0.7, 1.5, lambda a: 0.5 * a + 0.1))


def test_hook_leaves_alone_what_comfyui_leaves_alone_and_needs_a_negative():
    attn = torch.full((8, 4, 4), 0.25)
    for scale, shape in [(0.0, (1, 4, 8, 8)), (0.5, (1, 4, 4, 8))]:
        den, out = fake_denoiser(attn), torch.randn(shape)
        assert SelfAttentionGuidance(scale, 2.0)(den, torch.randn(shape), 1.0, out) is out and not den.calls
    with pytest.raises(ValueError, match="SelfAttentionGuidance: the sampler gives no negative"):
        SelfAttentionGuidance(0.5, 2.0)(fake_denoiser(attn, ran_uncond=False, negative=()), torch.randn(1, 4, 8, 8),
                                        1.0, torch.randn(1, 4, 8, 8))


# -- sampling runs on the SD1 fixture ---------------------------------------------------------------
@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    fx = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    te = TextEncoder.from_components([fx.tokenizer], [fx.text_encoder], "sd1")
    return SimpleNamespace(fx=fx, model=DiffusionModel.from_unet(fx.unet, "sd1", "epsilon"),
                           pos=te.encode("a photo of a cat"), neg=te.encode("blurry, ugly"))


def _sample(sd1, model, *, cfg=5.0, sampler="euler", scheduler="normal", steps=4, seed=3, batch=1):
    return sample(model, sd1.pos, sd1.neg, {"samples": torch.zeros(batch, 4, 8, 8)}, seed=seed, steps=steps,
                  cfg=cfg, sampler=sampler, scheduler=scheduler, device="cpu")["samples"]


def test_sampling_run_equals_diffusers_sag_pipeline(sd1):
    """ddim / ddim_uniform, blur_sigma 1.0 == StableDiffusionSAGPipeline (DDIM, leading, steps_offset 1,
    set_alpha_to_one), whose start noise is ours rescaled to its VP units (see test_oracle_txt2img)."""
    from diffusers import DDIMScheduler, StableDiffusionSAGPipeline

    processors = {k: type(p) for k, p in sd1.fx.unet.attn_processors.items()}
    sag = run("SelfAttentionGuidance", model=sd1.model, scale=0.75, blur_sigma=1.0)["model"]
    assert not sd1.model.options.get("denoise_hooks")  # the input MODEL is left as it was
    got = _sample(sd1, sag, sampler="ddim", scheduler="ddim_uniform")
    plain = _sample(sd1, sd1.model, sampler="ddim", scheduler="ddim_uniform")
    assert (got - plain).abs().max() > 0.1
    assert {k: type(p) for k, p in sd1.fx.unet.attn_processors.items()} == processors  # restored

    pipe = StableDiffusionSAGPipeline(**sd1.fx.pipeline().components)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = DDIMScheduler.from_config(sd1.fx.scheduler.config, timestep_spacing="leading", steps_offset=1,
                                               set_alpha_to_one=True)
    pipe.scheduler.set_timesteps(4)
    a = float(pipe.scheduler.alphas_cumprod[int(pipe.scheduler.timesteps[0])])
    sigma = ((1 - a) / a) ** 0.5
    latents = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(3)) * sigma / (sigma**2 + 1) ** 0.5
    ref = pipe(prompt_embeds=sd1.pos[0].embeds, negative_prompt_embeds=sd1.neg[0].embeds, num_inference_steps=4,
               guidance_scale=5.0, sag_scale=0.75, height=64, width=64, latents=latents, output_type="latent").images
    assert (got - ref).abs().max() <= 1e-4 * ref.abs().max()


@pytest.mark.parametrize(("cfg", "sampler", "scale", "blur_sigma", "batch"),
                         [(5.0, "euler", 0.5, 2.0, 1), (7.0, "dpmpp_2m", -1.0, 4.5, 2), (1.0, "euler", 1.5, 2.0, 1)])
def test_sampling_run_equals_comfyuis_rule(sd1, cfg, sampler, scale, blur_sigma, batch):
    """ComfyUI's blur_sigma, k-diffusion samplers, a batch, and cfg 1 (still blurring the
    unconditional prediction)."""
    sag = run("SelfAttentionGuidance", model=sd1.model, scale=scale, blur_sigma=blur_sigma)["model"]
    got = _sample(sd1, sag, cfg=cfg, sampler=sampler, batch=batch)
    want = _sample(sd1, as_comfy(sd1.model, scale, blur_sigma), cfg=cfg, sampler=sampler, batch=batch)
    assert (got - _sample(sd1, sd1.model, cfg=cfg, sampler=sampler, batch=batch)).abs().max() > 1e-2
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_sdxl_unet_on_an_odd_latent_follows_comfyuis_rule():
    """An SDXL-shaped UNet (two transformer blocks in the middle: the first one's map is used) on a
    13x9 latent (ComfyUI's rounded-up middle grid, 7x5)."""
    from diffusers import UNet2DConditionModel

    from nodegen.diffusion.conditioning import CondItem

    torch.manual_seed(21)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(64, 128),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=64, transformer_layers_per_block=(1, 2), attention_head_dim=(1, 2),
        use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=32 + 6 * 8, norm_num_groups=32).eval()
    assert len(unet.mid_block.attentions[0].transformer_blocks) == 2
    g = torch.Generator().manual_seed(4)
    pos, neg = ([CondItem(torch.randn(1, 77, 64, generator=g), torch.randn(1, 32, generator=g))] for _ in range(2))
    model = DiffusionModel.from_unet(unet, "sdxl", "epsilon")
    sag = run("SelfAttentionGuidance", model=model, scale=0.6, blur_sigma=2.0)["model"]
    runs = [sample(m, pos, neg, {"samples": torch.zeros(1, 4, 13, 9)}, seed=5, steps=3, cfg=6.0, device="cpu")
            ["samples"] for m in (sag, as_comfy(model, 0.6, 2.0), model)]
    torch.testing.assert_close(runs[0], runs[1], rtol=1e-4, atol=1e-4)
    assert (runs[0] - runs[2]).abs().max() > 1e-2


def test_scale_zero_changes_nothing_and_later_runs_are_as_a_fresh_model(sd1):
    before = _sample(sd1, sd1.model)
    off = run("SelfAttentionGuidance", model=sd1.model, scale=0.0, blur_sigma=2.0)["model"]
    assert torch.equal(_sample(sd1, off), before)
    _sample(sd1, run("SelfAttentionGuidance", model=sd1.model, scale=1.0, blur_sigma=2.0)["model"])
    assert type(middle_attn1(sd1.fx.unet).processor).__name__ != "AttentionRecorder"
    assert torch.equal(_sample(sd1, sd1.model), before)


def test_two_in_a_row_guide_twice(sd1):
    """Chained, each adds its term with the same attention map (ComfyUI's second replaces the first's
    attention patch, and the first then fails)."""
    one = run("SelfAttentionGuidance", model=sd1.model, scale=0.5, blur_sigma=2.0)["model"]
    two = run("SelfAttentionGuidance", model=one, scale=0.5, blur_sigma=2.0)["model"]
    assert len(two.options["self_attention_guidance"]) == 2
    assert (_sample(sd1, two) - _sample(sd1, one)).abs().max() > 1e-3


# -- nodes and ComfyUI import ---------------------------------------------------------------------------
def test_node_matches_comfyuis_inputs_and_refuses_models_without_a_middle_attention():
    from nodegen.kernel.registry import default_registry

    spec = {i.name: (i.default, i.min, i.max) for i in default_registry().get("SelfAttentionGuidance").inputs
            if i.name != "model"}
    assert spec == {"scale": (0.5, -2.0, 5.0), "blur_sigma": (2.0, 0.0, 10.0)}
    flux = DiffusionModel(torch.nn.Linear(2, 2), "flux", "flow")
    with pytest.raises(ValueError, match="SelfAttentionGuidance: input 'model' is a flux model"):
        run("SelfAttentionGuidance", model=flux, scale=0.5, blur_sigma=2.0)


def test_comfyui_api_workflow_with_sag_runs(sd1, tmp_path):
    from nodegen.formats import open_any
    from nodegen.runtime.engine import Engine

    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    shutil.copy(sd1.fx.single_file, models / "checkpoints" / "tiny-sd1.safetensors")
    plain = json.loads((Path(__file__).parent / "data" / "comfy" / "txt2img.api.json").read_text())
    data = copy.deepcopy(plain)
    data["20"] = {"class_type": "SelfAttentionGuidance", "inputs": {"model": ["4", 0], "scale": 0.8, "blur_sigma": 1.5}}
    data["3"]["inputs"]["model"] = ["20", 0]
    wf = open_any(data)
    assert wf.data["nodes"]["20"]["type"] == "SelfAttentionGuidance"
    assert wf.data["nodes"]["20"]["inputs"]["scale"] == 0.8 and wf.data["nodes"]["20"]["inputs"]["blur_sigma"] == 1.5

    engine = Engine(models=models, input_dir=tmp_path, output_dir=tmp_path / "out", device="cpu")
    runs = [engine.run(open_any(plain)), engine.run(wf), engine.run(open_any(plain))]
    assert all(r.ok for r in runs), [r.problems for r in runs]
    before, sag, after = ([list(im.getdata()) for im in r.images] for r in runs)
    assert sag != before and after == before
