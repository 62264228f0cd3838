"""SD3 / Flux loading details: detection from tensors, clear errors, the offline T5 tokenizer, fp8
storage, text-encoder files in any order, prompt weighting, cfg 1, flow samplers and schedules."""

from __future__ import annotations

import pytest
import torch

from nodegen.diffusion.sample import Steps, model_sampling_for, sample
from nodegen.diffusion.schedules import get_sigmas
from nodegen.models.detect import ModelKindError, detect
from nodegen.models.files import read_shapes
from nodegen.models.manager import ModelManager
from tests.support.flow_fixtures import fixture
from tests.test_oracle_flow import flux_components, sd3_components

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    return fixture("sd3", tmp_path_factory.mktemp("sd3"))


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    return fixture("flux", tmp_path_factory.mktemp("flux"))


def test_detection_from_tensors(sd3, flux):
    d = detect(read_shapes(sd3.single_file))
    assert (d.kind, d.family, d.details["text"]) == ("checkpoint", "sd3", ["clip_l", "clip_g", "t5"])
    assert detect(read_shapes(sd3.single_file_no_te)).details["text"] == []
    assert (detect(read_shapes(sd3.diffusion_model)).kind, detect(read_shapes(sd3.diffusion_model)).family) == ("unet", "sd3")
    dev, schnell = detect(read_shapes(flux.diffusion_model)), detect(read_shapes(flux.diffusion_model_schnell))
    assert (dev.kind, dev.family, dev.details["guidance"]) == ("unet", "flux", True)
    assert schnell.details["guidance"] is False
    folder = detect(read_shapes(flux.diffusers_dir / "transformer" / "diffusion_pytorch_model.safetensors"))
    assert (folder.family, folder.layout) == ("flux", "diffusers")
    assert detect(read_shapes(flux.t5xxl)).family == "t5"
    assert detect(read_shapes(flux.vae_file)).details["latent_channels"] == 16


def test_t5_tokenizer_is_offline_and_real():
    from nodegen.models.t5_tokenizer import load_t5_tokenizer

    tok = load_t5_tokenizer()
    assert tok("a photo of a cat").input_ids == [3, 9, 1202, 13, 3, 9, 1712, 1]
    assert (tok.pad_token_id, tok.eos_token_id, len(tok)) == (0, 1, 32100)


def test_wrong_files_get_clear_errors(sd3, flux, tmp_path):
    from nodegen.models.flow_loader import load_diffusion_model, load_text_encoders
    from nodegen.models.loader import load_checkpoint

    mgr = ModelManager(device="cpu")
    with pytest.raises(ModelKindError, match="VAE"):
        load_diffusion_model(flux.vae_file, manager=mgr)
    with pytest.raises(ModelKindError, match="UNETLoader"):
        load_checkpoint(flux.diffusion_model, manager=mgr)
    with pytest.raises(ModelKindError, match="not a CLIP or T5"):
        load_text_encoders([flux.clip_l, flux.vae_file], manager=mgr)
    model, clip, vae = load_checkpoint(sd3.single_file_no_te, manager=mgr)
    with pytest.raises(ValueError, match="TripleCLIPLoader"):
        clip.encode("a cat")


def test_fp8_storage_equals_the_dequantised_weights(flux):
    """fp8 files stay fp8 in memory (linear weights) and compute in fp32 layer by layer: the image
    equals that of the same weights upcast to fp32 at load. Same for fp8 storage of an fp32 file."""
    from nodegen.models.flow_loader import load_diffusion_model

    mgr = ModelManager(device="cpu")
    _, te, _ = flux_components(flux)
    cond = te.encode("a cat")
    for path, dtype in ((flux.diffusion_model_fp8, "default"), (flux.diffusion_model, "fp8_e4m3fn")):
        fp8 = load_diffusion_model(path, dtype, manager=mgr)
        linear = [m.weight for m in fp8.unet.modules() if isinstance(m, torch.nn.Linear)]
        assert linear and all(w.dtype == torch.float8_e4m3fn for w in linear)
        ref = load_diffusion_model(flux.diffusion_model, manager=mgr)
        with torch.no_grad():
            for (_, p), (_, q) in zip(ref.unet.named_parameters(), fp8.unet.named_parameters(), strict=True):
                p.data = q.data.float()
        a, b = (sample(m, cond, None, {"samples": torch.zeros(1, 16, 8, 8)}, 1, Steps(2, "simple"), 1.0, "euler", device="cpu").latent["samples"] for m in (fp8, ref))
        assert float((a - b).abs().max()) < 1e-5


def test_text_encoder_files_in_any_order(sd3):
    from nodegen.models.flow_loader import load_text_encoders

    mgr = ModelManager(device="cpu")
    a = load_text_encoders([sd3.t5xxl, sd3.clip_l, sd3.clip_g], manager=mgr)  # T5 found by its keys
    b = load_text_encoders([sd3.clip_l, sd3.clip_g, sd3.t5xxl_fp8], "sd3", manager=mgr)
    assert a.family == b.family == "sd3" and a.roles == b.roles == ("clip_l", "clip_g", "t5")
    _, te, _ = sd3_components(sd3)
    want = te.encode("a red ball")[0]
    got = a.encode("a red ball")[0]
    assert torch.equal(got.embeds, want.embeds) and torch.equal(got.pooled, want.pooled)
    t5_only = load_text_encoders([sd3.t5xxl], "sd3", manager=mgr).encode("a red ball")[0]
    # missing CLIPs are zeros of CLIP-L / CLIP-G's real widths (768 + 1280), as ComfyUI does
    assert t5_only.embeds.shape == (1, 77 + 256, 2048) and float(t5_only.embeds[:, :77].abs().max()) == 0


def test_prompt_weights_change_only_weighted_prompts(sd3, flux):
    for te in (sd3_components(sd3)[1], flux_components(flux)[1]):
        plain, same, weighted = te.encode("a red ball"), te.encode("a red ball"), te.encode("a (red:1.5) ball")
        assert torch.equal(plain[0].embeds, same[0].embeds)
        assert not torch.equal(plain[0].embeds, weighted[0].embeds)
        assert torch.equal(plain[0].pooled, weighted[0].pooled) or te.family == "sd3"


def test_cfg_one_skips_the_negative(flux, sd3):
    from nodegen.diffusion import denoiser

    calls = []
    real = denoiser.run_flow

    def spy(family, transformer, x, sigma, ms, items, device, dtype, **kw):
        calls.append(len(items))
        return real(family, transformer, x, sigma, ms, items, device, dtype, **kw)

    model, te, _ = sd3_components(sd3)
    denoiser.run_flow = spy
    try:
        sample(model, te.encode("a"), te.encode("b"), {"samples": torch.zeros(1, 16, 8, 8)}, 0, Steps(2, "normal"), 1.0, "euler", device="cpu")
        assert calls == [1, 1]
        calls.clear()
        sample(model, te.encode("a"), te.encode("b"), {"samples": torch.zeros(1, 16, 8, 8)}, 0, Steps(2, "normal"), 2.0, "euler", device="cpu")
        assert calls == [2, 2]
    finally:
        denoiser.run_flow = real


@pytest.mark.parametrize("scheduler", ["simple", "normal", "beta", "sgm_uniform"])
def test_flow_schedules(sd3, scheduler):
    model = sd3_components(sd3)[0]
    s = get_sigmas(scheduler, model_sampling_for(model), 4)
    assert float(s[0]) == pytest.approx(1.0) and float(s[-1]) == 0 and bool((s[1:] < s[:-1]).all())


@pytest.mark.parametrize("sampler", ["euler", "euler_ancestral", "heun", "dpmpp_2m", "er_sde", "seeds_2", "sa_solver"])
def test_samplers_on_flow_models(flux, sampler):
    model, te, _ = flux_components(flux)
    out = sample(model, te.encode("a cat"), None, {"samples": torch.zeros(1, 16, 8, 8)}, 5, Steps(4, "simple"), 1.0, sampler, device="cpu").latent["samples"]
    assert torch.isfinite(out).all() and 0.05 < float(out.std()) < 10


def test_flow_dpmpp_2m_first_order_steps_are_exact():
    """On a model whose denoised estimate is constant, DPM-Solver++(2M) for flow models lands exactly on
    the estimate's flow path: x(sigma) = (1 - sigma) * x0 + sigma * noise."""
    from nodegen.diffusion.samplers.flow_variants import sample_dpmpp_2m_flow

    x0, noise = torch.randn(1, 4, 2, 2), torch.randn(1, 4, 2, 2)
    sigmas = torch.tensor([1.0, 0.7, 0.4, 0.2, 0.0])
    seen = []

    def model(x, sigma):
        seen.append((float(sigma[0]), x.clone()))
        return x0

    sample_dpmpp_2m_flow(model, noise.clone(), sigmas)
    for s, x in seen:
        assert torch.allclose(x, (1 - s) * x0 + s * noise, atol=1e-6)


def test_four_channel_latents_are_refused(flux):
    model, te, _ = flux_components(flux)
    with pytest.raises(ValueError, match="16"):
        sample(model, te.encode("a"), None, {"samples": torch.zeros(1, 4, 8, 8)}, 0, Steps(1, "normal"), 1.0, "euler", device="cpu")


def test_controlnet_on_a_flow_model_is_a_clear_error(sd3):
    model, te, _ = sd3_components(sd3)
    pos = [c.copy(extras={"controls": [object()]}) for c in te.encode("a")]
    with pytest.raises(ValueError, match="cannot control this sd3 model"):
        sample(model, pos, None, {"samples": torch.zeros(1, 16, 8, 8)}, 0, Steps(1, "normal"), 1.0, "euler",
               device="cpu")


LONG = ", ".join(f"word{i} in a long list of details" for i in range(40))  # ~300 CLIP tokens, ~400 T5


def test_long_prompts_are_encoded_as_the_pipelines_do(sd3, flux):
    """Longer than 77 CLIP tokens and than the T5 length: truncated, exactly as diffusers' encode_prompt."""
    te = sd3_components(sd3)[1]
    with torch.no_grad():  # as the pipelines' __call__ (autograd picks other attention kernels)
        emb, _, pooled, _ = sd3.pipeline().encode_prompt(LONG, LONG, LONG, do_classifier_free_guidance=False,
                                                          device="cpu", max_sequence_length=256)
    ours = te.encode(LONG)[0]
    assert torch.equal(ours.embeds, emb) and torch.equal(ours.pooled, pooled)
    te = flux_components(flux)[1]
    with torch.no_grad():
        emb, pooled, _ = flux.pipeline().encode_prompt(LONG, LONG, device="cpu", max_sequence_length=512)
    ours = te.encode(LONG)[0]
    assert torch.equal(ours.embeds, emb) and torch.equal(ours.pooled, pooled)


def test_perturbed_attention_guidance_leaves_flow_models_as_they_are(flux, caplog):
    """Flow transformers have no UNet middle block: PAG perturbs nothing (as in ComfyUI) and says so."""
    from tests.support.nodes import run

    model, te, _ = flux_components(flux)
    pag = run("PerturbedAttentionGuidance", model=model, scale=3.0)["model"]
    args = (te.encode("a"), None, {"samples": torch.zeros(1, 16, 8, 8)}, 4, Steps(2, "simple"), 1.0, "euler")
    with caplog.at_level("WARNING"):
        assert torch.equal(sample(pag, *args, device="cpu").latent["samples"],
                           sample(model, *args, device="cpu").latent["samples"])
    assert "no UNet middle block" in caplog.text


def test_skip_layer_guidance_dit_on_flux_skips_double_and_single_blocks(flux, caplog):
    from tests.support.nodes import run

    model, te, _ = flux_components(flux)
    args = (te.encode("a"), None, {"samples": torch.zeros(1, 16, 8, 8)}, 4, Steps(2, "simple"), 1.0, "euler")
    plain = sample(model, *args, device="cpu").latent["samples"]

    def guided(double, single, rescaling=0.0):
        m = run("SkipLayerGuidanceDiT", model=model, double_layers=double, single_layers=single, scale=3.0,
                start_percent=0.0, end_percent=1.0, rescaling_scale=rescaling)["model"]
        return sample(m, *args, device="cpu").latent["samples"]
    single = guided("", "1")
    assert not torch.allclose(single, plain, atol=1e-4) and not torch.allclose(guided("0", ""), single, atol=1e-4)
    assert not torch.allclose(guided("", "1", rescaling=0.7), single, atol=1e-4)
    with caplog.at_level("WARNING"):
        assert torch.equal(guided("9, 10", "30"), plain)  # no such blocks in this model: nothing skipped
    assert "none of the blocks" in caplog.text
    assert all("forward" not in b.__dict__ for b in model.unet.single_transformer_blocks)


def test_skip_layer_guidance_rule():
    """``cfg + scale * (cond - skipped)``, rescaled by ``r * std(cond) / std(out) + 1 - r``, only
    inside the sigma window; the layers are every run of digits, as ComfyUI reads them."""
    from types import SimpleNamespace

    from nodegen.diffusion.skip_layer_guidance import SkipLayerGuidance, layer_list

    assert layer_list("7, 8,9 x12") == [7, 8, 9, 12] and layer_list("") == []
    g = torch.Generator().manual_seed(0)
    cond, skipped, cfg = (torch.randn(1, 4, 2, 2, generator=g) for _ in range(3))
    block = torch.nn.Identity()
    den = SimpleNamespace(unet=SimpleNamespace(transformer_blocks=[block]), last_cond=cond, family="sd3",
                          percent_to_sigma=lambda p: 10.0 * (1 - p),
                          predict_positive=lambda x, s, active_only: skipped)
    hook = SkipLayerGuidance([0], [], 2.0, 0.2, 0.6, rescaling_scale=0.5)
    out = cfg + 2.0 * (cond - skipped)
    want = out * (0.5 * (cond.std() / out.std()) + 0.5)
    torch.testing.assert_close(hook(den, None, 5.0, cfg), want)
    assert hook(den, None, 8.5, cfg) is cfg and hook(den, None, 3.5, cfg) is cfg  # outside [4, 8]
    assert "forward" not in block.__dict__
