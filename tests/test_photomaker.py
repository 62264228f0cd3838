"""PhotoMaker v1 (PhotoMakerLoader + PhotoMakerEncode) == ComfyUI's rule, transcribed here as the
oracle: ComfyUI's word-numbered tokens with the trigger word's tokens filtered out (rows padded with
their last token), SDXL's CLIP-L + OpenCLIP-G penultimate layers, and the id embedding of the image
(ComfyUI's clip_preprocess, the tower's pooled class token through both projections) fused into
token ``n - 1`` by TencentARC's fuse MLPs. Tiny random-weight id encoders with the real layout are
saved as ``photomaker-v1.bin`` (``{"id_encoder", "lora_weights"}``) and as ``.safetensors``;
ComfyUI's API-format PhotoMaker workflow runs; bad input is refused naming node and input."""

from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from nodegen.models.objects import TextEncoder
from tests.support.comfy_run import models_folder, run_api
from tests.support.fixtures import sdxl_fixture
from tests.support.nodes import REG, run

torch.set_num_threads(1)
SIZE = 32  # the tiny tower's input size (4 x 4 patches of 8 pixels)
CTX = SimpleNamespace(device="cpu", models=None, paths=None)
PROMPT = "a photo of a man photomaker in a garden"


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    return sdxl_fixture(tmp_path_factory.mktemp("sdxl"))


def _id_encoder_state(proj: int, proj2: int, seed: int) -> dict[str, torch.Tensor]:
    """An id encoder's tensors under the published names (TencentARC's PhotoMakerIDEncoder is a
    transformers CLIPVisionModelWithProjection plus visual_projection_2 and fuse_module)."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    tower = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1, image_size=SIZE,
        patch_size=8, projection_dim=proj, hidden_act="quick_gelu"))
    sd = {k: v for k, v in tower.state_dict().items() if not k.endswith("position_ids")}
    d = proj + proj2
    sd["visual_projection_2.weight"] = torch.randn(proj2, 64) * 0.1
    for name, (i, o) in {"mlp1": (2 * d, d), "mlp2": (d, d)}.items():
        sd[f"fuse_module.{name}.layernorm.weight"] = 1 + 0.1 * torch.randn(i)
        sd[f"fuse_module.{name}.layernorm.bias"] = 0.1 * torch.randn(i)
        sd[f"fuse_module.{name}.fc1.weight"] = torch.randn(d, i) / i ** 0.5
        sd[f"fuse_module.{name}.fc1.bias"] = 0.1 * torch.randn(d)
        sd[f"fuse_module.{name}.fc2.weight"] = torch.randn(o, d) / d ** 0.5
        sd[f"fuse_module.{name}.fc2.bias"] = 0.1 * torch.randn(o)
    sd["fuse_module.layer_norm.weight"] = 1 + 0.1 * torch.randn(d)
    sd["fuse_module.layer_norm.bias"] = 0.1 * torch.randn(d)
    for k in [k for k in sd if k.startswith("vision_model.") and k.endswith("bias")]:
        sd[k] = sd[k] + 0.05 * torch.randn(sd[k].shape)
    return {k: v.contiguous() for k, v in sd.items()}


@pytest.fixture(scope="module")
def photomaker(tmp_path_factory):
    """SDXL-wide (64 + 128) and SD1-wide (32 + 32) id encoders, as .bin and .safetensors files."""
    from safetensors.torch import save_file

    root = tmp_path_factory.mktemp("photomaker")
    sd = _id_encoder_state(64, 128, 5)
    lora = {"unet.down_blocks.0.lora.down.weight": torch.randn(4, 8)}
    torch.save({"id_encoder": sd, "lora_weights": lora}, root / "photomaker-v1.bin")
    save_file(sd, str(root / "photomaker-v1.safetensors"))
    small = _id_encoder_state(32, 32, 6)
    torch.save({"id_encoder": small, "lora_weights": lora}, root / "photomaker-sd1.bin")
    save_file({"foo.weight": torch.zeros(2, 2)}, str(root / "not-photomaker.safetensors"))
    save_file(dict(small, **{"qformer_perceiver.proj.weight": torch.zeros(2, 2)}), str(root / "photomaker-v2.safetensors"))
    return SimpleNamespace(root=root, sd=sd, small=small)


def _image(seed: int, h: int = 48, w: int = 40) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.random((1, h, w, 3), dtype=np.float32))


# ---- the oracle: ComfyUI's nodes_photomaker.py, sd1_clip.py and clip_vision.py rules -------------
def comfy_tokens(tokenizer, text: str, pad: int) -> list[tuple[int, int]]:
    """SDTokenizer.tokenize_with_weights(return_word_ids=True) for an unweighted one-row prompt."""
    words = [w for w in text.replace("\n", " ").split(" ") if w]
    row = [(tokenizer.bos_token_id, 0)]
    for i, word in enumerate(words):
        row += [(t, i + 1) for t in tokenizer(word)["input_ids"][1:-1]]
    row.append((tokenizer.eos_token_id, 0))
    return row + [(pad, 0)] * (77 - len(row))


def comfy_filter(row: list[tuple[int, int]], index: int) -> list[int]:
    f = [t for t in row if t[1] != index]
    while len(f) < len(row):
        f.append(row[-1])
    return [t for t, _ in f]


def comfy_preprocess(image: torch.Tensor, size: int) -> torch.Tensor:
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073])
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711])
    image = image.movedim(-1, 1)
    if not (image.shape[2] == size and image.shape[3] == size):
        scale = size / min(image.shape[2], image.shape[3])
        image = torch.nn.functional.interpolate(image, size=(round(scale * image.shape[2]), round(scale * image.shape[3])),
                                                mode="bicubic", antialias=True)
        h, w = (image.shape[2] - size) // 2, (image.shape[3] - size) // 2
        image = image[:, :, h:h + size, w:w + size]
    image = torch.clip(255.0 * image, 0, 255).round() / 255.0
    return (image - mean.view([3, 1, 1])) / std.view([3, 1, 1])


def comfy_mlp(sd: dict, prefix: str, x: torch.Tensor, residual: bool) -> torch.Tensor:
    f = torch.nn.functional
    y = f.layer_norm(x, x.shape[-1:], sd[prefix + "layernorm.weight"], sd[prefix + "layernorm.bias"])
    y = f.linear(f.gelu(f.linear(y, sd[prefix + "fc1.weight"], sd[prefix + "fc1.bias"])),
                 sd[prefix + "fc2.weight"], sd[prefix + "fc2.bias"])
    return y + x if residual else y


def comfy_fuse(sd: dict, prompt_embeds: torch.Tensor, pixel_values: torch.Tensor, index: int) -> torch.Tensor:
    """PhotoMakerIDEncoder.forward with ComfyUI's one-token class mask at ``index - 1``."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    proj = sd["visual_projection.weight"].shape[0]
    tower = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1, image_size=SIZE,
        patch_size=8, projection_dim=proj, hidden_act="quick_gelu")).eval()
    tower.load_state_dict({k: v for k, v in sd.items() if k.startswith(("vision_model.", "visual_projection."))})
    out = tower(pixel_values=pixel_values)
    shared = out.last_hidden_state[:, 0]
    shared = tower.vision_model.post_layernorm(shared)
    id_embeds = torch.cat([out.image_embeds, shared @ sd["visual_projection_2.weight"].T], dim=-1)[:1]
    mask = torch.tensor([i == index - 1 for i in range(77)])
    flat = prompt_embeds.reshape(-1, prompt_embeds.shape[-1]).clone()
    token = flat[mask]
    x = comfy_mlp(sd, "fuse_module.mlp1.", torch.cat([token, id_embeds], -1), False) + token
    x = comfy_mlp(sd, "fuse_module.mlp2.", x, True)
    x = torch.nn.functional.layer_norm(x, x.shape[-1:], sd["fuse_module.layer_norm.weight"],
                                       sd["fuse_module.layer_norm.bias"])
    flat.masked_scatter_(mask[:, None], x)
    return flat.view(prompt_embeds.shape)


@torch.no_grad()
def comfy_photomaker_encode_sdxl(sdxl, sd: dict, image: torch.Tensor, text: str):
    index = text.split(" ").index("photomaker") + 1
    ids_l = comfy_filter(comfy_tokens(sdxl.tokenizer, text, sdxl.tokenizer.eos_token_id), index)
    ids_g = comfy_filter(comfy_tokens(sdxl.tokenizer_2, text, 0), index)
    out_l = sdxl.text_encoder(input_ids=torch.tensor([ids_l]), output_hidden_states=True)
    out_g = sdxl.text_encoder_2(input_ids=torch.tensor([ids_g]), output_hidden_states=True)
    cond = torch.cat([out_l.hidden_states[-2], out_g.hidden_states[-2]], dim=-1)
    return comfy_fuse(sd, cond, comfy_preprocess(image, SIZE), index), out_g.text_embeds


# ---- tests ------------------------------------------------------------------------------------
def _load(photomaker, name: str):
    from nodegen.models.photomaker import load_photomaker

    return load_photomaker(photomaker.root / name)


def _clip(sdxl) -> TextEncoder:
    return TextEncoder([sdxl.tokenizer, sdxl.tokenizer_2], [sdxl.text_encoder, sdxl.text_encoder_2], "sdxl")


def test_encode_equals_comfyui_rule_bin_and_safetensors(sdxl, photomaker):
    image = _image(1)
    want, want_pooled = comfy_photomaker_encode_sdxl(sdxl, photomaker.sd, image, PROMPT)
    for name in ("photomaker-v1.bin", "photomaker-v1.safetensors"):
        pm = _load(photomaker, name)
        assert pm.embed_dim == 192 and pm.image_size == SIZE
        (got,) = run("PhotoMakerEncode", CTX, photomaker=pm, image=image, clip=_clip(sdxl), text=PROMPT)["conditioning"]
        torch.testing.assert_close(got.embeds, want, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(got.pooled, want_pooled, rtol=1e-4, atol=1e-5)


def test_only_the_class_token_changes_vs_clip_text_encode(sdxl, photomaker):
    """The trigger word is gone; every token but the class word's ("man", position 5) is
    CLIPTextEncode's of the prompt without it; another face changes only that token."""
    pm = _load(photomaker, "photomaker-v1.bin")
    clip = _clip(sdxl)
    (plain,) = run("CLIPTextEncode", CTX, clip=clip, text="a photo of a man in a garden")["conditioning"]
    (a,) = run("PhotoMakerEncode", CTX, photomaker=pm, image=_image(2), clip=clip, text=PROMPT)["conditioning"]
    (b,) = run("PhotoMakerEncode", CTX, photomaker=pm, image=_image(3, 32, 32), clip=clip, text=PROMPT)["conditioning"]
    keep = torch.ones(77, dtype=torch.bool)
    keep[5] = False
    torch.testing.assert_close(a.embeds[:, keep], plain.embeds[:, keep], rtol=0, atol=0)
    torch.testing.assert_close(a.pooled, plain.pooled, rtol=0, atol=0)
    assert not torch.allclose(a.embeds[:, 5], plain.embeds[:, 5], atol=1e-3)
    assert not torch.allclose(a.embeds[:, 5], b.embeds[:, 5], atol=1e-3)
    torch.testing.assert_close(b.embeds[:, keep], plain.embeds[:, keep], rtol=0, atol=0)


def test_sd1_width_model_fuses_into_sd1_conditioning(sdxl, photomaker):
    """The rule does not depend on the family: an id encoder as wide as an SD1 CLIP (64) fuses into it."""
    pm = _load(photomaker, "photomaker-sd1.bin")
    clip = TextEncoder([sdxl.tokenizer], [sdxl.text_encoder], "sd1")
    text = "photograph of photomaker"
    (got,) = run("PhotoMakerEncode", CTX, photomaker=pm, image=_image(4), clip=clip, text=text)["conditioning"]
    index = 3
    with torch.no_grad():
        ids = comfy_filter(comfy_tokens(sdxl.tokenizer, text, sdxl.tokenizer.eos_token_id), index)
        cond = sdxl.text_encoder(input_ids=torch.tensor([ids])).last_hidden_state
        want = comfy_fuse(photomaker.small, cond, comfy_preprocess(_image(4), SIZE), index)
    torch.testing.assert_close(got.embeds, want, rtol=1e-4, atol=1e-5)
    assert got.pooled is None


def test_comfyui_photomaker_workflow_imports_and_runs(sdxl, photomaker, tmp_path):
    """ComfyUI's PhotoMaker example (API format) over a ComfyUI models folder."""
    models = models_folder(tmp_path, [("checkpoints", sdxl.single_file, "sd_xl_base_1.0.safetensors"),
                                      ("photomaker", photomaker.root / "photomaker-v1.bin", "photomaker-v1.bin")])
    Image.fromarray((_image(7)[0].numpy() * 255).astype(np.uint8)).save(tmp_path / "in" / "face.png")
    api = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd_xl_base_1.0.safetensors"}},
        "2": {"class_type": "PhotoMakerLoader", "inputs": {"photomaker_model_name": "photomaker-v1.bin"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "face.png", "upload": "image"}},
        "4": {"class_type": "PhotoMakerEncode", "inputs": {"text": "photograph of a man photomaker",
                                                           "photomaker": ["2", 0], "image": ["3", 0], "clip": ["1", 1]}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["1", 1]}},
        "6": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "7": {"class_type": "KSampler", "inputs": {"seed": 3, "steps": 2, "cfg": 5.0, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1.0, "model": ["1", 0],
                                                   "positive": ["4", 0], "negative": ["5", 0], "latent_image": ["6", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "photomaker", "images": ["8", 0]}},
    }
    result = run_api(api, models, tmp_path)
    assert result.images[0].size == (64, 64)


@pytest.mark.parametrize("text, fragment", [
    ("a photo of a man", "no trigger word 'photomaker'"),
    ("a photo of a (man photomaker:1.2)", "no trigger word 'photomaker' ('photomaker:1.2)' is not the word"),
    ("a man photomaker, smiling", "no trigger word 'photomaker' ('photomaker,' is not the word"),
    ("photomaker a man", "starts with the trigger word"),
])
def test_prompt_without_usable_trigger_word_is_refused(sdxl, photomaker, text, fragment):
    pm = _load(photomaker, "photomaker-v1.bin")
    with pytest.raises(ValueError, match=r"PhotoMakerEncode: text: .*" + re.escape(fragment)):
        run("PhotoMakerEncode", CTX, photomaker=pm, image=_image(1), clip=_clip(sdxl), text=text)


def test_wrong_clip_is_refused(sdxl, photomaker):
    from nodegen.models.flow_text import FlowTextEncoder

    pm = _load(photomaker, "photomaker-v1.bin")
    sd3 = FlowTextEncoder("sd3", {"clip_l": (sdxl.tokenizer, sdxl.text_encoder)})
    with pytest.raises(ValueError, match="PhotoMakerEncode: clip: .*not a sd3 text encoder"):
        run("PhotoMakerEncode", CTX, photomaker=pm, image=_image(1), clip=sd3, text=PROMPT)
    sd1 = TextEncoder([sdxl.tokenizer], [sdxl.text_encoder], "sd1")
    with pytest.raises(ValueError, match=r"PhotoMakerEncode: clip: the text conditioning is 64 wide .* 192.*sd1"):
        run("PhotoMakerEncode", CTX, photomaker=pm, image=_image(1), clip=sd1, text=PROMPT)


def test_loader_names_node_input_and_file(photomaker, sdxl):
    from nodegen.kernel.context import CancelToken, RunContext
    from nodegen.models.paths import ModelPaths

    root = photomaker.root.parent / "models-bad"
    (root / "photomaker").mkdir(parents=True, exist_ok=True)
    for name in ("not-photomaker.safetensors", "photomaker-v1.bin", "photomaker-v2.safetensors"):
        link = root / "photomaker" / name
        if not link.exists():
            link.symlink_to(photomaker.root / name)
    (root / "photomaker" / "empty.bin").write_bytes(b"")
    paths = ModelPaths([root], use_env=False, use_config=False)
    assert "photomaker-v1.bin" in paths.list("photomaker")
    ctx = RunContext(node_id="1", node_title="PhotoMakerLoader", device=torch.device("cpu"), models=None, paths=paths,
                     output_dir=".", input_dir=".", temp_dir=".", workflow=None, cancel=CancelToken())
    loader = REG["PhotoMakerLoader"]
    assert loader.run(ctx, photomaker_model_name="photomaker-v1.bin").embed_dim == 192
    with pytest.raises(ValueError, match=r"PhotoMakerLoader: photomaker_model_name 'not-photomaker.safetensors': "
                                         r".*not-photomaker.safetensors is not a PhotoMaker model"):
        loader.run(ctx, photomaker_model_name="not-photomaker.safetensors")
    with pytest.raises(ValueError, match=r"PhotoMakerLoader: photomaker_model_name 'photomaker-v2.safetensors': "
                                         r".*is a PhotoMaker v2 model"):
        loader.run(ctx, photomaker_model_name="photomaker-v2.safetensors")
    with pytest.raises(ValueError, match=r"PhotoMakerLoader: photomaker_model_name 'empty.bin': .*empty"):
        loader.run(ctx, photomaker_model_name="empty.bin")
