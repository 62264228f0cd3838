"""SD 2.1 unCLIP: a tiny unCLIP checkpoint in Stability's single-file layout loads (class-label UNet,
image tower, noise augmentor), and sampling with unCLIPConditioning equals diffusers'
StableUnCLIPImg2ImgPipeline on the same components (pixels within 1e-3), with and without noise
augmentation and at other strengths; ComfyUI's unCLIP workflow imports and runs; misuse gives
errors naming the node and input."""

from __future__ import annotations

import json

import pytest
import torch

from nodegen.clip.unclip_vision import load_unclip_vision
from nodegen.diffusion import unclip as U
from nodegen.models.loader import load_single_file
from tests.support.sampling import sample
from tests.support.unclip_fixtures import EMBED, unclip_fixture

torch.set_num_threads(1)
TOL = 1e-3
SEED = 1234


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return unclip_fixture(tmp_path_factory.mktemp("unclip"))


@pytest.fixture(scope="module")
def loaded(fx):
    model, text, vae = load_single_file(fx.single_file)
    return model, text, vae, load_unclip_vision(fx.single_file)


def _node(name: str):
    from nodegen.kernel.registry import default_registry

    return default_registry().get(name)


def _apply(cond, vision_output, strength=1.0, noise_augmentation=0.0):
    nd = _node("unCLIPConditioning")
    return nd.normalize_result(nd.run(None, conditioning=cond, clip_vision_output=vision_output, strength=strength,
                                      noise_augmentation=noise_augmentation))["conditioning"]


def _image(seed=0):
    return torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(seed))


def test_the_checkpoint_loads_as_unclip(fx, loaded, caplog):
    model, text, _, vision = loaded
    assert model.family == "sd2" and model.prediction_type == "v_prediction"
    cfg = model.unet.config
    assert cfg.class_embed_type == "projection" and cfg.projection_class_embeddings_input_dim == 2 * EMBED
    assert cfg.addition_embed_type is None
    theirs = fx.unet.state_dict()
    assert all(torch.equal(v, theirs[k]) for k, v in model.unet.state_dict().items())
    aug = U.augmentor_of(model)
    assert torch.equal(aug.data_mean, fx.data_mean) and torch.equal(aug.data_std, fx.data_std)
    px = vision.pixels(_image())
    assert torch.allclose(vision.encode(_image()).image_embeds, fx.image_encoder(pixel_values=px).image_embeds,
                          atol=1e-6)
    with caplog.at_level("WARNING"):
        load_single_file(fx.single_file)
    assert "ignored" not in caplog.text  # embedder.* and noise_augmentor.* are known, not left over
    caplog.clear()
    with caplog.at_level("WARNING"):  # an unknown tensor among them is still reported
        load_single_file(fx.single_file, state_dict=dict(fx.state_dict, **{"embedder.model.extra": torch.ones(2)}))
    assert "1 tensors are not part of the checkpoint" in caplog.text and "embedder.model.extra" in caplog.text


def test_noise_augmentation_equals_diffusers(fx):
    """One embedding through the augmentor == diffusers' noise_image_embeddings with the same noise
    (ComfyUI draws it from seed - 10) and noise_level = round(999 * noise_augmentation)."""
    aug = U.NoiseAugmentor.standard(EMBED, fx.data_mean, fx.data_std)
    emb = torch.randn(1, EMBED, generator=torch.Generator().manual_seed(3))
    pipe = fx.pipeline()
    for amount in (0.0, 0.3, 1.0):
        ours = U.unclip_adm([{"clip_vision_output": _Out(emb), "strength": 1.0, "noise_augmentation": amount}],
                            aug, SEED)
        ref = pipe.noise_image_embeddings(emb, noise_level=round(999 * amount),
                                          generator=torch.Generator().manual_seed(SEED - 10))
        assert ours.shape == (1, 2 * EMBED)
        assert torch.allclose(ours, ref, atol=1e-5), amount


class _Out:
    def __init__(self, image_embeds):
        self.image_embeds = image_embeds


def test_strength_and_several_embeddings_follow_comfyui():
    aug = U.NoiseAugmentor.standard(EMBED)
    a, b = torch.randn(2, EMBED, generator=torch.Generator().manual_seed(4))
    one = U.unclip_adm([{"clip_vision_output": _Out(a[None]), "strength": 1.0, "noise_augmentation": 0.2}], aug, 7)
    two = U.unclip_adm([{"clip_vision_output": _Out(a[None]), "strength": 2.5, "noise_augmentation": 0.2}], aug, 7)
    assert torch.allclose(two, 2.5 * one)  # the level embedding is scaled too, as ComfyUI
    entries = [{"clip_vision_output": _Out(a[None]), "strength": 1.0, "noise_augmentation": 0.0},
               {"clip_vision_output": _Out(b[None]), "strength": 0.5, "noise_augmentation": 0.1}]
    merged = U.unclip_adm(entries, aug, 7)
    s = 7 - 10  # the noise comes from the sampler's seed - 10
    parts = aug(a[None], 0, s) + 0.5 * aug(b[None], 100, s)  # summed, then noised at level round(999 * 0.05)
    assert torch.allclose(merged, aug(parts[:, :EMBED], 50, s))
    batch = U.unclip_adm([{"clip_vision_output": _Out(torch.stack([a, b])), "strength": 1.0,
                           "noise_augmentation": 0.0}], aug, 7)  # a batch of images: one entry each
    assert torch.allclose(batch, aug((aug(a[None], 0, s) + aug(b[None], 0, s))[:, :EMBED], 50, s))


def _run_pair(fx, loaded, noise_augmentation, strength=1.0, steps=5, cfg=7.5):
    from diffusers import DPMSolverMultistepScheduler

    model, text, vae, vision = loaded
    image = _image()
    pos = _apply(text.encode("a photo of a cat"), vision.encode(image), strength, noise_augmentation)
    neg = text.encode("blurry, ugly")
    out = sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=SEED, steps=steps, cfg=cfg,
                 sampler="dpmpp_2m", scheduler="karras", device="cpu")
    ours = vae.decode(out["samples"], device="cpu").permute(0, 3, 1, 2)
    pipe = fx.pipeline()
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = DPMSolverMultistepScheduler.from_config(fx.scheduler.config, use_karras_sigmas=True)
    noised = pipe.noise_image_embeddings
    pipe.noise_image_embeddings = lambda *a, **k: noised(*a, **k) * strength  # ComfyUI's strength

    def run(output_type):
        return pipe(prompt_embeds=pos[0].embeds, negative_prompt_embeds=neg[0].embeds, image=vision.pixels(image),
                    noise_level=round(999 * noise_augmentation), num_inference_steps=steps, guidance_scale=cfg,
                    height=64, width=64, output_type=output_type,
                    latents=torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(SEED)),
                    generator=torch.Generator().manual_seed(SEED - 10)).images

    ref_latent = run("latent")
    assert (out["samples"] - ref_latent).abs().max() <= 1e-4 * ref_latent.abs().max(), "latents differ"
    return ours, run("pt")


@pytest.mark.parametrize("noise_augmentation,strength", [(0.0, 1.0), (0.3, 1.0), (0.1, 2.0)])
def test_sampling_matches_stable_unclip_img2img(fx, loaded, noise_augmentation, strength):
    ours, ref = _run_pair(fx, loaded, noise_augmentation, strength)
    assert ours.shape == ref.shape == (1, 3, 64, 64)
    assert (ours - ref).abs().max() <= TOL


def test_the_image_embedding_changes_the_picture(fx, loaded):
    """The oracle comparison is not trivially met: the image conditioning moves the pixels."""
    model, text, vae, vision = loaded
    pos, neg = text.encode("a photo of a cat"), text.encode("blurry, ugly")
    lat = {"samples": torch.zeros(1, 4, 8, 8)}

    def pixels(p):
        out = sample(model, p, neg, lat, seed=SEED, steps=4, cfg=7.5, sampler="dpmpp_2m", scheduler="karras",
                     device="cpu")
        return vae.decode(out["samples"], device="cpu")

    plain = pixels(pos)  # no unCLIP entry: a zero class label, as ComfyUI's SD21UNCLIP
    with_image = pixels(_apply(pos, vision.encode(_image())))
    other_image = pixels(_apply(pos, vision.encode(_image(seed=9))))
    assert (plain - with_image).abs().max() > 1e-2
    assert (with_image - other_image).abs().max() > 1e-2
    assert _apply(pos, vision.encode(_image()), strength=0.0) is pos  # strength 0: unchanged, as ComfyUI


def _plain_sd2(fx, path):
    """The same file without its unCLIP parts: a plain SD2 checkpoint."""
    from safetensors.torch import save_file

    sd = {k: v for k, v in fx.state_dict.items()
          if not k.startswith(("embedder.", "noise_augmentor.", "model.diffusion_model.label_emb."))}
    save_file(sd, str(path))


@pytest.fixture(scope="module")
def engine(fx, tmp_path_factory):
    import shutil

    from PIL import Image
    from safetensors.torch import save_file

    from nodegen.runtime.engine import Engine

    root = tmp_path_factory.mktemp("models")
    (root / "checkpoints").mkdir()
    shutil.copy(fx.single_file, root / "checkpoints" / "sd21-unclip-h.safetensors")
    _plain_sd2(fx, root / "checkpoints" / "tiny-sd2.safetensors")
    save_file({"lora_unet_down_blocks_0.lora_down.weight": torch.zeros(4, 4)},
              str(root / "checkpoints" / "a-lora.safetensors"))
    inp = tmp_path_factory.mktemp("input")
    arr = (torch.rand(48, 48, 3, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8).numpy()
    Image.fromarray(arr).save(inp / "photo.png")
    return Engine(models=root, input_dir=inp, output_dir=tmp_path_factory.mktemp("out"), device="cpu")


def _workflow(ckpt="sd21-unclip-h.safetensors", noise_augmentation=0.1, model_from="1") -> dict:
    """ComfyUI's unCLIP example (API format), scaled down."""
    wf = {
        "1": {"class_type": "unCLIPCheckpointLoader", "inputs": {"ckpt_name": "sd21-unclip-h.safetensors"}},
        "2": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
        "3": {"class_type": "CLIPVisionEncode", "inputs": {"clip_vision": ["1", 3], "image": ["2", 0],
                                                           "crop": "center"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a photo of a cat", "clip": ["1", 1]}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "6": {"class_type": "unCLIPConditioning", "inputs": {
            "conditioning": ["4", 0], "clip_vision_output": ["3", 0], "strength": 1.0,
            "noise_augmentation": noise_augmentation}},
        "7": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "8": {"class_type": "KSampler", "inputs": {
            "model": [model_from, 0], "seed": 5, "steps": 3, "cfg": 7.0, "sampler_name": "dpmpp_2m",
            "scheduler": "karras", "positive": ["6", 0], "negative": ["5", 0], "latent_image": ["7", 0],
            "denoise": 1.0}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "unclip"}},
    }
    if ckpt != "sd21-unclip-h.safetensors":
        wf["11"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}}
    return wf


def _run(engine, wf, tmp_path):
    from nodegen.formats import open_any

    path = tmp_path / "unclip.api.json"
    path.write_text(json.dumps(wf), encoding="utf-8")
    return engine.run(open_any(path))


def test_comfyui_unclip_workflow_imports_and_runs(engine, tmp_path):
    import numpy as np

    res = _run(engine, _workflow(), tmp_path)
    assert res.ok, (res.problems, [str(f) for f in res.failures])
    assert len(res.images) == 1 and res.images[0].size == (64, 64)
    other = _run(engine, _workflow(noise_augmentation=0.6), tmp_path)
    assert other.ok
    diff = np.abs(np.asarray(res.images[0], dtype=np.int16) - np.asarray(other.images[0], dtype=np.int16))
    assert diff.max() > 2  # the image conditioning reached the UNet


def test_checkpoint_loader_simple_loads_an_unclip_file(engine, tmp_path):
    """As ComfyUI: CheckpointLoaderSimple gives the unCLIP model (zero image label without unCLIPConditioning)."""
    wf = _workflow(ckpt="sd21-unclip-h.safetensors")
    wf["1"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd21-unclip-h.safetensors"}}
    for k in ("2", "3", "6"):
        del wf[k]
    wf["8"]["inputs"]["positive"] = ["4", 0]
    res = _run(engine, wf, tmp_path)
    assert res.ok, (res.problems, [str(f) for f in res.failures])


def test_a_plain_checkpoint_in_the_unclip_loader_is_refused(engine, tmp_path):
    wf = _workflow()
    wf["1"]["inputs"]["ckpt_name"] = "tiny-sd2.safetensors"
    res = _run(engine, wf, tmp_path)
    assert not res.ok
    text = " ".join(str(f) for f in res.failures)
    assert "unCLIPCheckpointLoader" in text and "ckpt_name" in text and "tiny-sd2.safetensors" in text


def test_a_file_that_is_no_checkpoint_is_refused_naming_the_node(engine, tmp_path):
    wf = _workflow()
    wf["1"]["inputs"]["ckpt_name"] = "a-lora.safetensors"
    res = _run(engine, wf, tmp_path)
    assert not res.ok
    text = " ".join(str(f) for f in res.failures)
    assert "unCLIPCheckpointLoader: ckpt_name 'a-lora.safetensors'" in text and "LoRA" in text


def test_unclip_conditioning_on_a_plain_model_is_refused(engine, tmp_path):
    res = _run(engine, _workflow(ckpt="tiny-sd2.safetensors", model_from="11"), tmp_path)
    assert not res.ok
    text = " ".join(str(f) for f in res.failures)
    assert "unCLIPConditioning" in text and "clip_vision_output" in text and "unCLIP model" in text


def test_an_embedding_of_the_wrong_width_is_refused(loaded):
    model, text, _, _ = loaded
    pos = _apply(text.encode("x"), _Out(torch.zeros(1, EMBED + 8)))
    with pytest.raises(ValueError, match="unCLIPConditioning: input 'clip_vision_output' holds 40-wide"):
        sample(model, pos, None, {"samples": torch.zeros(1, 4, 8, 8)}, seed=1, steps=1, cfg=1.0, device="cpu")


def test_sdxl_revision_replaces_the_pooled_output(tmp_path_factory):
    """On SDXL, ComfyUI's unCLIPConditioning ("revision") replaces the pooled text output by the
    noise-augmented image embedding times the strength (sdxl_pooled): the same run as the
    conditioning with that pooled output put in by hand."""
    from nodegen.models.objects import DiffusionModel, TextEncoder
    from tests.support.fixtures import fixture

    sx = fixture("sdxl", tmp_path_factory.mktemp("sdxl"))
    model = DiffusionModel.from_unet(sx.unet, "sdxl", "epsilon")
    te = TextEncoder.from_components([sx.tokenizer, sx.tokenizer_2], [sx.text_encoder, sx.text_encoder_2], "sdxl")
    pos, neg = te.encode("a photo of a cat"), te.encode("")
    width = pos[0].pooled.shape[-1]
    emb = torch.randn(1, width, generator=torch.Generator().manual_seed(8))
    expected = 0.7 * U.NoiseAugmentor.standard(width)(emb, round(999 * 0.2), SEED - 10)[:, :width]
    lat = {"samples": torch.zeros(1, 4, 8, 8)}

    def run(p):
        return sample(model, p, neg, lat, seed=SEED, steps=3, cfg=5.0, sampler="euler", device="cpu")["samples"]

    revision = run(_apply(pos, _Out(emb), strength=0.7, noise_augmentation=0.2))
    assert torch.equal(revision, run([pos[0].copy(pooled=expected)]))
    assert (revision - run(pos)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="unCLIPConditioning: input 'clip_vision_output' holds"):
        run(_apply(pos, _Out(torch.zeros(1, width + 1))))


UI_WIDGETS = {"unCLIPCheckpointLoader": ["ckpt_name"], "LoadImage": ["image", "upload"],
              "CLIPVisionEncode": [],  # ComfyUI's unCLIP example predates the crop widget
              "CLIPTextEncode": ["text"], "unCLIPConditioning": ["strength", "noise_augmentation"],
              "EmptyLatentImage": ["width", "height", "batch_size"],
              "KSampler": ["seed", "control", "steps", "cfg", "sampler_name", "scheduler", "denoise"],
              "VAEDecode": [], "SaveImage": ["filename_prefix"]}
UI_OUTPUTS = {"unCLIPCheckpointLoader": ["MODEL", "CLIP", "VAE", "CLIP_VISION"], "LoadImage": ["IMAGE", "MASK"],
              "CLIPVisionEncode": ["CLIP_VISION_OUTPUT"], "CLIPTextEncode": ["CONDITIONING"],
              "unCLIPConditioning": ["CONDITIONING"], "EmptyLatentImage": ["LATENT"], "KSampler": ["LATENT"],
              "VAEDecode": ["IMAGE"], "SaveImage": []}


def test_the_editor_format_workflow_is_the_same_run(engine, tmp_path):
    import numpy as np

    from tests.support.comfy_ui import ui_from_api

    api = _run(engine, _workflow(), tmp_path)
    path = tmp_path / "unclip.json"
    path.write_text(json.dumps(ui_from_api(_workflow(), UI_WIDGETS, UI_OUTPUTS)), encoding="utf-8")
    from nodegen.formats import open_any

    ui = engine.run(open_any(path))
    assert ui.ok, (ui.problems, [str(f) for f in ui.failures])
    assert np.array_equal(np.asarray(ui.images[0]), np.asarray(api.images[0]))


def test_a_pickled_ckpt_loads_too(fx, loaded, tmp_path):
    """Stability released the unCLIP models as ``.ckpt`` pickles (``{"state_dict": ...}``)."""
    path = tmp_path / "sd21-unclip-h.ckpt"
    torch.save({"state_dict": fx.state_dict, "global_step": 1}, str(path))
    model, _, _ = load_single_file(path)
    assert model.unet.config.class_embed_type == "projection" and U.augmentor_of(model) is not None
    image = _image()
    assert torch.equal(load_unclip_vision(path).encode(image).image_embeds, loaded[3].encode(image).image_embeds)
