"""Flux.1 Redux (StyleModelLoader + StyleModelApply over a SigLIP CLIPVisionLoader) == diffusers'
FluxPriorReduxPipeline on tiny random-weight components: the same prompt embeddings (the text's
tokens, then the image's), and the same image when FluxPipeline samples from them; ComfyUI's Redux
workflow (API format) imports and runs; T2I style adapters, wrong widths and attn_bias are refused
with the node and input named."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from nodegen.clip.load import load_clip_vision
from nodegen.clip.siglip import SiglipVision
from nodegen.diffusion.flow_sampling import flux_mu
from nodegen.diffusion.sample import Steps, sample
from nodegen.models.redux import load_style_model
from tests.support.comfy_run import flux_models, run_api
from tests.support.fixtures import _randomize_
from tests.support.flow_fixtures import T5_WIDTH, _save, fixture
from tests.support.nodes import run

torch.set_num_threads(1)
SIZE = 32  # the tiny SigLIP's input size (grid 4 x 4 of 8-pixel patches: 16 tokens)
CTX = SimpleNamespace(device="cpu", models=None)


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    return fixture("flux", tmp_path_factory.mktemp("flux"))


@pytest.fixture(scope="module")
def redux(tmp_path_factory):
    """A tiny SigLIP image tower with its pooling head and a Redux embedder to the fixture's T5 width,
    saved as ComfyUI's model folders hold them."""
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder
    from transformers import SiglipVisionConfig, SiglipVisionModel

    root = tmp_path_factory.mktemp("redux")
    torch.manual_seed(81)
    siglip = SiglipVisionModel(SiglipVisionConfig(hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                                                  num_attention_heads=1, image_size=SIZE, patch_size=8,
                                                  hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6))
    torch.manual_seed(82)
    embedder = ReduxImageEncoder(redux_dim=64, txt_in_features=T5_WIDTH)
    for m in (siglip, embedder):
        _randomize_(m, 83)
        m.eval()
    # the keys as published SigLIP towers (and ComfyUI's sigclip_vision file) hold them
    sd = {("" if k.startswith("vision_model.") else "vision_model.") + k: v.contiguous()
          for k, v in siglip.state_dict().items() if not k.endswith("position_ids")}
    for sub in ("clip_vision", "style_models"):
        (root / sub).mkdir()
    files = {"siglip": _save(sd, root / "clip_vision" / "sigclip_vision_patch14_384.safetensors"),
             "redux": _save(embedder.state_dict(), root / "style_models" / "flux1-redux-dev.safetensors")}
    return siglip, embedder, files, root


def _image(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))


def _tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0)[None]


def _prior(flux, siglip, embedder):
    from diffusers import FluxPriorReduxPipeline
    from transformers import SiglipImageProcessor

    processor = SiglipImageProcessor(size={"height": SIZE, "width": SIZE})
    return FluxPriorReduxPipeline(image_encoder=siglip, feature_extractor=processor, image_embedder=embedder,
                                  text_encoder=flux.text_encoder, tokenizer=flux.tokenizer)


def _flux_parts(flux):
    from nodegen.models.flow_text import FlowTextEncoder
    from nodegen.models.objects import DiffusionModel, VAEModel

    te = FlowTextEncoder("flux", {"clip_l": (flux.tokenizer, flux.text_encoder), "t5": (flux.tokenizer_2, flux.text_encoder_2)})
    model = DiffusionModel(flux.transformer, "flux", "flow")
    model.options["model_sampling"] = {"kind": "flux", "shift": flux_mu(64, 64), "multiplier": 1.0}
    return model, te, VAEModel.from_vae(flux.vae)


def test_a_siglip_file_loads_as_a_siglip_tower(redux):
    siglip, _, files, _ = redux
    tower = load_clip_vision(files["siglip"])
    assert isinstance(tower, SiglipVision) and tower.image_size == SIZE and tower.embed_dim == 64
    cfg = tower.module.config
    assert (cfg.num_hidden_layers, cfg.intermediate_size, cfg.hidden_act, cfg.vision_use_head) == (
        2, 96, "gelu_pytorch_tanh", True)
    out = tower.encode(_tensor(_image()), "center")
    px = (_tensor(_image()).permute(0, 3, 1, 2) - 0.5) / 0.5  # SigLIP's statistics, no resize at 32 px
    with torch.no_grad():
        theirs = siglip(pixel_values=px, output_hidden_states=True)
    assert out.last_hidden_state.shape == (1, 16, 64)
    torch.testing.assert_close(out.last_hidden_state, theirs.last_hidden_state, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.image_embeds, theirs.pooler_output, atol=1e-5, rtol=0)
    torch.testing.assert_close(out.penultimate_hidden_states, theirs.hidden_states[-2], atol=1e-5, rtol=0)


def test_redux_conditioning_and_image_equal_flux_prior_redux_pipeline(flux, redux):
    siglip, embedder, files, _ = redux
    model, te, vae = _flux_parts(flux)
    text = te.encode("a photo of a cat")
    img = _image(1)
    vision = run("CLIPVisionEncode", CTX, clip_vision=load_clip_vision(files["siglip"]), image=_tensor(img),
                 crop="center")["clip_vision_output"]
    ours = run("StyleModelApply", CTX, conditioning=text, style_model=load_style_model(files["redux"]),
               clip_vision_output=vision, strength=1.0, strength_type="multiply")["conditioning"]
    prior = _prior(flux, siglip, embedder)(image=img, prompt_embeds=text[0].embeds, pooled_prompt_embeds=text[0].pooled)
    assert ours[0].embeds.shape == (1, text[0].embeds.shape[1] + 16, T5_WIDTH)
    torch.testing.assert_close(ours[0].embeds, prior.prompt_embeds, atol=1e-5, rtol=0)
    torch.testing.assert_close(ours[0].pooled, prior.pooled_prompt_embeds, atol=0, rtol=0)

    pos = [c.copy(extras={"guidance": 4.0}) for c in ours]
    out = sample(model, pos, None, {"samples": torch.zeros(1, 16, 8, 8)}, 5, Steps(3, "simple"), 1.0, "euler",
                 device="cpu")
    mine = vae.decode(out.latent["samples"], device="cpu")
    pipe = flux.pipeline()
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompt_embeds=prior.prompt_embeds, pooled_prompt_embeds=prior.pooled_prompt_embeds,
                  num_inference_steps=3, guidance_scale=4.0, height=64, width=64,
                  generator=torch.Generator().manual_seed(5), output_type="pt").images
    assert float((mine - theirs.permute(0, 2, 3, 1)).abs().max()) <= 1e-3


def test_strength_and_a_batch_of_images_follow_comfyui(flux, redux):
    _, _, files, _ = redux
    _, te, _ = _flux_parts(flux)
    text = te.encode("a cat")
    tower, style = load_clip_vision(files["siglip"]), load_style_model(files["redux"])
    two = torch.cat([_tensor(_image(2)), _tensor(_image(3))])
    vision = run("CLIPVisionEncode", CTX, clip_vision=tower, image=two, crop="none")["clip_vision_output"]
    tokens = style.tokens(vision.last_hidden_state)
    out = run("StyleModelApply", CTX, conditioning=text, style_model=style, clip_vision_output=vision,
              strength=0.5, strength_type="multiply")["conditioning"]
    n = text[0].embeds.shape[1]
    assert out[0].embeds.shape[1] == n + 32  # both images' tokens, one after the other
    torch.testing.assert_close(out[0].embeds[:, :n], text[0].embeds, atol=0, rtol=0)
    torch.testing.assert_close(out[0].embeds[0, n:], 0.5 * tokens.flatten(0, 1), atol=1e-6, rtol=0)
    same = run("StyleModelApply", CTX, conditioning=text, style_model=style, clip_vision_output=vision,
               strength=1.0, strength_type="attn_bias")["conditioning"]  # a bias of log(1) = 0: none
    torch.testing.assert_close(same[0].embeds[0, n:], tokens.flatten(0, 1), atol=1e-6, rtol=0)


def _comfy_mask(steps: list[tuple[int, int, float]], n_img: int) -> torch.Tensor:
    """ComfyUI's StyleModelApply mask, transcribed: each application grows the mask by its n tokens,
    copies the old quadrants and puts log(strength) in the new columns of the old rows (the image
    part, 1x1 at first in ComfyUI and stretched to the image tokens by the model, is n_img here)."""
    mask = None
    n_txt = steps[0][0]
    for _, n, bias in steps:
        if mask is None:
            mask = torch.zeros(n_txt + n_img, n_txt + n_img)
        new = torch.zeros(n_txt + n + n_img, n_txt + n + n_img)
        new[:n_txt, :n_txt] = mask[:n_txt, :n_txt]
        new[:n_txt, n_txt + n:] = mask[:n_txt, n_txt:]
        new[n_txt + n:, :n_txt] = mask[n_txt:, :n_txt]
        new[n_txt + n:, n_txt + n:] = mask[n_txt:, n_txt:]
        new[:n_txt, n_txt:n_txt + n] = bias
        new[n_txt + n:, n_txt:n_txt + n] = bias
        mask, n_txt = new, n_txt + n
    return mask


def test_attn_bias_masks_as_comfyui_builds_them():
    from nodegen.diffusion.attention_bias import bias_mask, with_range

    extras = with_range({}, 5, 3, 0.5)
    extras = with_range(extras, 8, 2, 0.25)  # a second image prompt after the first
    ours = bias_mask(extras["attention_bias"], 10, 4)[0, 0]
    import math

    theirs = _comfy_mask([(5, 3, math.log(0.5)), (8, 2, math.log(0.25))], 4)
    torch.testing.assert_close(ours, theirs, atol=0, rtol=0)
    assert with_range({}, 0, 1, 0.0)["attention_bias"][0][2] == float("-inf")


def test_attn_bias_weights_the_attention_to_the_image_tokens(flux, redux):
    """Strength 0 hides the image tokens from every other token: the model's output equals the one
    for the text alone; other strengths differ from it and from multiply."""
    from nodegen.diffusion.flow_forward import run_flow

    _, _, files, _ = redux
    model, te, _ = _flux_parts(flux)
    text = [c.copy(extras={"guidance": 3.5}) for c in te.encode("a dog")]
    vision = load_clip_vision(files["siglip"]).encode(_tensor(_image(5)))
    style = load_style_model(files["redux"])

    def apply(strength, kind):
        return run("StyleModelApply", CTX, conditioning=text, style_model=style, clip_vision_output=vision,
                   strength=strength, strength_type=kind)["conditioning"]

    x = torch.randn(1, 16, 8, 8, generator=torch.Generator().manual_seed(2))
    ms = SimpleNamespace(timestep=lambda s: s)

    def velocity(cond):
        with torch.no_grad():
            return run_flow("flux", flux.transformer, x, 0.7, ms, cond, "cpu", torch.float32)[0]

    hidden = apply(0.0, "attn_bias")
    assert hidden[0].extras["attention_bias"] == ((text[0].embeds.shape[1], 16, float("-inf")),)
    torch.testing.assert_close(velocity(hidden), velocity(text), atol=1e-5, rtol=0)
    half = velocity(apply(0.5, "attn_bias"))
    assert float((half - velocity(text)).abs().max()) > 1e-3
    assert float((half - velocity(apply(0.5, "multiply"))).abs().max()) > 1e-3
    assert "attention_bias" not in apply(1.0, "attn_bias")[0].extras  # log(1) = 0: no mask, as ComfyUI
    with pytest.raises(ValueError, match="attn_bias needs a Flux model; this is sd3"):
        run_flow("sd3", None, x, 0.7, ms, hidden, "cpu", torch.float32)


def test_bad_inputs_are_refused_naming_node_and_input(flux, redux, tmp_path):
    from nodegen.diffusion.conditioning import CondItem

    _, _, files, _ = redux
    _, te, _ = _flux_parts(flux)
    tower, style = load_clip_vision(files["siglip"]), load_style_model(files["redux"])
    vision = tower.encode(_tensor(_image()))
    sd1_text = [CondItem(torch.zeros(1, 77, 768))]  # a CLIP-L text encoding, as SD1 makes
    with pytest.raises(ValueError, match="StyleModelApply: conditioning is 768 wide"):
        run("StyleModelApply", CTX, conditioning=sd1_text, style_model=style, clip_vision_output=vision)
    clip_like = type(vision)(vision.image_embeds, torch.zeros(1, 16, 32), vision.penultimate_hidden_states)
    with pytest.raises(ValueError, match="StyleModelApply: clip_vision_output: .*SigLIP"):
        run("StyleModelApply", CTX, conditioning=te.encode("x"), style_model=style, clip_vision_output=clip_like)
    t2i = _save({"style_embedding": torch.zeros(1, 8, 16)}, tmp_path / "t2iadapter_style.safetensors")
    with pytest.raises(ValueError, match="T2I-Adapter style model"):
        load_style_model(t2i)
    other = _save({"something": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="not a Flux.1 Redux model"):
        load_style_model(other)


def test_comfyui_redux_workflow_imports_and_runs(flux, redux, tmp_path):
    """ComfyUI's Flux Redux example (API format): CLIPVisionLoader (SigLIP), CLIPVisionEncode,
    StyleModelLoader, StyleModelApply into FluxGuidance and the sampler."""
    _, _, files, _ = redux
    models = flux_models(flux, tmp_path, name="flux1-dev.safetensors",
                         extra=[("clip_vision", files["siglip"], "sigclip_vision_patch14_384.safetensors"),
                                ("style_models", files["redux"], "flux1-redux-dev.safetensors")])
    _image(4).save(tmp_path / "in" / "style.png")
    api = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": "flux1-dev.safetensors", "weight_dtype": "default"}},
        "2": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "clip_l.safetensors",
                                                         "clip_name2": "t5xxl_fp16.safetensors", "type": "flux"}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a cat", "clip": ["2", 0]}},
        "4": {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": "sigclip_vision_patch14_384.safetensors"}},
        "5": {"class_type": "LoadImage", "inputs": {"image": "style.png"}},
        "6": {"class_type": "CLIPVisionEncode", "inputs": {"crop": "center", "clip_vision": ["4", 0], "image": ["5", 0]}},
        "7": {"class_type": "StyleModelLoader", "inputs": {"style_model_name": "flux1-redux-dev.safetensors"}},
        "8": {"class_type": "StyleModelApply", "inputs": {"strength": 1.0, "strength_type": "multiply",
                                                          "conditioning": ["3", 0], "style_model": ["7", 0],
                                                          "clip_vision_output": ["6", 0]}},
        "9": {"class_type": "FluxGuidance", "inputs": {"guidance": 3.5, "conditioning": ["8", 0]}},
        "10": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "11": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "12": {"class_type": "KSampler", "inputs": {"seed": 3, "steps": 2, "cfg": 1.0, "sampler_name": "euler",
                                                    "scheduler": "simple", "denoise": 1.0, "model": ["1", 0],
                                                    "positive": ["9", 0], "negative": ["3", 0], "latent_image": ["10", 0]}},
        "13": {"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["11", 0]}},
        "14": {"class_type": "SaveImage", "inputs": {"filename_prefix": "redux", "images": ["13", 0]}},
    }
    result = run_api(api, models, tmp_path)
    assert result.images[0].size == (64, 64)
