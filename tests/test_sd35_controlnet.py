"""Stability AI's own SD 3.5 ControlNet files (``sd3.5_large_controlnet_*.safetensors``: original
block names, a ``control_type``) load into diffusers' SD3ControlNetModel with equal tensors and run
as ComfyUI runs them: == StableDiffusion3ControlNetPipeline with the same diffusers model (max abs
pixel difference <= 1e-3) where the pipeline is given what ComfyUI does differently, transcribed
from ComfyUI (the control image changed by the control type, positions made for the latent's size,
a residual after the last block too); ComfyUI's workflow imports and runs; what cannot work is
refused naming the node, input and file."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch

from nodegen.diffusion.latent_formats import LATENT_FORMATS
from nodegen.diffusion.sample import Steps, sample
from nodegen.models.control_files import load_control
from nodegen.models.flow_text import FlowTextEncoder
from nodegen.models.objects import DiffusionModel, VAEModel
from nodegen.models.sd3_controlnet import SD3ControlNet
from tests.support.fixtures import _randomize_
from tests.support.flow_fixtures import _save, fixture
from tests.support.nodes import run

torch.set_num_threads(1)
TOL = 1e-3
CTX = SimpleNamespace(device="cpu", models=None)
POOLED = 64 + 128  # the SD3 fixture's CLIP-L + CLIP-G pooled width
TYPES = {"blur": 0, "canny": 1, "depth": 2}


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    return fixture("sd3", tmp_path_factory.mktemp("sd3"))


def _controlnet(seed: int = 90, pooled: int = POOLED):
    """A tiny SD 3.5 large-style ``SD3ControlNetModel`` (no position embedding, single blocks) for
    the SD3 fixture's transformer (2 heads of 64, 2 blocks): 1 block, so each residual serves two."""
    from diffusers import SD3ControlNetModel

    torch.manual_seed(seed)
    net = SD3ControlNetModel(sample_size=8, patch_size=2, in_channels=16, out_channels=16, num_layers=1,
                             attention_head_dim=64, num_attention_heads=2, joint_attention_dim=None,
                             caption_projection_dim=128, pooled_projection_dim=pooled, pos_embed_type=None,
                             use_pos_embed=False, force_zeros_for_pooled_projection=False)
    _randomize_(net, seed + 1)  # the zero-initialised control blocks too: residuals that matter
    with torch.no_grad():
        for block in net.controlnet_blocks:
            block.weight.mul_(10.0)
    return net.eval()


def to_stability(state: dict, control_type: int | None) -> dict:
    """The inverse of the converter: diffusers' names -> Stability's (fused ``attn.qkv``, ``attn.proj``,
    ``mlp.fc1|fc2``, ``adaLN_modulation.1``), plus the ``control_type`` number and a copy of a main
    model's ``x_embedder`` (which ComfyUI and nodegen do not use)."""
    renames = {"attn.to_out.0.": "attn.proj.", "ff.net.0.proj.": "mlp.fc1.", "ff.net.2.": "mlp.fc2.",
               "norm1.linear.": "adaLN_modulation.1."}
    out = {}
    for key, value in state.items():
        if ".attn.to_k." in key or ".attn.to_v." in key:
            continue
        if ".attn.to_q." in key:
            q, k, v = (state[key.replace("to_q", n)] for n in ("to_q", "to_k", "to_v"))
            out[key.replace("attn.to_q.", "attn.qkv.")] = torch.cat([q, k, v]).contiguous()
            continue
        for new, old in renames.items():
            key = key.replace(new, old)
        out[key] = value.detach().contiguous()
    if control_type is not None:
        out["control_type"] = torch.tensor([float(control_type)])
    out["x_embedder.proj.weight"] = torch.zeros(128, 16, 2, 2)
    return out


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd35cn")
    net = _controlnet()
    state = {k: v.detach() for k, v in net.state_dict().items()}
    out = {"net": net}
    for kind, number in (*TYPES.items(), ("untyped", None)):
        out[kind] = _save(to_stability(state, number), root / f"sd3.5_large_controlnet_{kind}.safetensors")
    out["half"] = _save(to_stability(state, 1), root / "sd3.5_large_controlnet_canny_fp16.safetensors", torch.float16)
    return SimpleNamespace(**out)


def _parts(fx):
    te = FlowTextEncoder("sd3", {"clip_l": (fx.tokenizer, fx.text_encoder), "clip_g": (fx.tokenizer_2, fx.text_encoder_2),
                                 "t5": (fx.tokenizer_3, fx.text_encoder_3)})
    return DiffusionModel(fx.transformer, "sd3", "flow"), te, VAEModel.from_vae(fx.vae)


def test_stability_files_load_with_the_diffusers_models_tensors_and_their_control_type(files):
    for kind in (*TYPES, "untyped"):
        loaded = load_control(getattr(files, kind))
        assert isinstance(loaded, SD3ControlNet) and loaded.stability_layout and not loaded.reads_text
        assert loaded.control_type == (None if kind == "untyped" else kind)
        cfg, want = loaded.net.config, files.net.config
        for key in ("num_layers", "num_attention_heads", "pooled_projection_dim", "use_pos_embed",
                    "force_zeros_for_pooled_projection", "joint_attention_dim", "qk_norm"):
            assert cfg[key] == want[key], key
        got = loaded.net.state_dict()
        assert set(got) == set(files.net.state_dict())
        for k, v in files.net.state_dict().items():
            assert torch.equal(got[k], v), k
    half = load_control(files.half)  # a half-precision file: the same tensors, rounded
    assert half.control_type == "canny"
    for k, v in files.net.state_dict().items():
        assert torch.equal(half.net.state_dict()[k], v.half().float()), k


def comfy_positions(width: int, h: int, w: int) -> torch.Tensor:
    """ComfyUI's ``get_2d_sincos_pos_embed_torch(width, w, h)`` (comfy/ldm/modules/diffusionmodules/mmdit.py),
    transcribed."""
    def one(dim, pos):
        omega = torch.arange(dim // 2, dtype=torch.float32)
        omega /= dim / 2.0
        omega = 1.0 / 10000**omega
        out = torch.einsum("m,d->md", pos.reshape(-1), omega)
        return torch.cat([torch.sin(out), torch.cos(out)], dim=1)

    small = min(h, w)
    val_h, val_w = (h / small) * 7.5, (w / small) * 7.5
    grid_h, grid_w = torch.meshgrid(torch.linspace(-val_h + 7.5, val_h + 7.5, h),
                                    torch.linspace(-val_w + 7.5, val_w + 7.5, w), indexing="ij")
    return torch.cat([one(width // 2, grid_w), one(width // 2, grid_h)], dim=1)


class ComfyLatentEmbed(torch.nn.Module):
    """ComfyUI's ControlNetEmbedder input: the main model's x_embedder plus positions for this size."""

    def __init__(self, proj: torch.nn.Conv2d) -> None:
        super().__init__()
        self.proj = proj

    def forward(self, x):
        tokens = self.proj(x).flatten(2).transpose(1, 2)
        return tokens + comfy_positions(tokens.shape[-1], (x.shape[-2] + 1) // 2, (x.shape[-1] + 1) // 2)


def _comfy_last_block(transformer, monkeypatch) -> None:
    """ComfyUI's MMDiT adds ``control["output"][i]`` after every block ``i`` (the ControlNet's outputs
    each repeated ``ceil(depth / n)`` times); diffusers' transformer adds none after its last block."""
    forward = transformer.forward
    blocks = transformer.transformer_blocks

    def patched(*args, block_controlnet_hidden_states=None, **kwargs):
        if block_controlnet_hidden_states is None:
            return forward(*args, **kwargs)
        outputs = block_controlnet_hidden_states
        repeat = math.ceil((int(outputs[0].shape[-1]) // 64) / len(outputs))
        add = outputs[(len(blocks) - 1) // repeat]
        handle = blocks[-1].register_forward_hook(lambda m, a, o: (o[0], o[1] + add))
        try:
            return forward(*args, block_controlnet_hidden_states=outputs, **kwargs)
        finally:
            handle.remove()

    monkeypatch.setattr(transformer, "forward", patched)


def test_a_depth_file_equals_the_pipeline_given_comfyuis_differences(sd3, files, monkeypatch):
    """A wide latent (positions not square); the pipeline gets ComfyUI's depth image ``1 - a`` (as
    ``[-1, 1]`` pixels), positions and last-block residual; its VAE takes the distribution's mode."""
    from diffusers import StableDiffusion3ControlNetPipeline
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    model, te, vae = _parts(sd3)
    image = torch.rand(1, 64, 96, 3, generator=torch.Generator().manual_seed(41))
    pos, neg = te.encode("a street"), te.encode("blurry")
    out = run("ControlNetApplyAdvanced", CTX, positive=pos, negative=neg, control_net=load_control(files.depth),
              image=image, strength=0.7, start_percent=0.0, end_percent=1.0, vae=vae)
    empty = {"samples": torch.zeros(1, 16, 8, 12)}
    ours = sample(model, out["positive"], out["negative"], empty, 4, Steps(3, "normal"), 5.0, "euler", device="cpu")
    ours_img = vae.decode(ours.latent["samples"], device="cpu")

    monkeypatch.setattr(DiagonalGaussianDistribution, "sample", lambda self, generator=None: self.mode())
    parts = {k: getattr(sd3, k) for k in ("transformer", "scheduler", "vae", "text_encoder", "tokenizer",
                                          "text_encoder_2", "tokenizer_2", "text_encoder_3", "tokenizer_3")}
    pipe = StableDiffusion3ControlNetPipeline(**parts, controlnet=copy.deepcopy(files.net))
    pipe.controlnet.pos_embed = ComfyLatentEmbed(sd3.transformer.pos_embed.proj)
    _comfy_last_block(sd3.transformer, monkeypatch)
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(prompt="a street", negative_prompt="blurry", control_image=(1 - image.permute(0, 3, 1, 2)) * 2 - 1,
                  controlnet_conditioning_scale=0.7, height=64, width=96, num_inference_steps=3, guidance_scale=5.0,
                  generator=torch.Generator().manual_seed(4), output_type="pt").images
    assert float((ours_img - theirs.permute(0, 2, 3, 1)).abs().max()) <= TOL
    # the control matters, and so does ComfyUI's depth inversion
    monkeypatch.undo()
    plain = sample(model, pos, neg, empty, 4, Steps(3, "normal"), 5.0, "euler", device="cpu").latent["samples"]
    assert float((plain - ours.latent["samples"]).abs().max()) > 1e-2
    blur = run("ControlNetApplyAdvanced", CTX, positive=pos, negative=neg, control_net=load_control(files.blur),
               image=image, strength=0.7, vae=vae)
    other = sample(model, blur["positive"], blur["negative"], empty, 4, Steps(3, "normal"), 5.0, "euler", device="cpu")
    assert float((other.latent["samples"] - ours.latent["samples"]).abs().max()) > 1e-3


@pytest.mark.parametrize("kind", ["canny", "depth", "blur", "untyped"])
def test_the_control_image_is_changed_by_the_files_type_as_comfyui_changes_it(sd3, files, kind):
    """comfy/controlnet.py load_controlnet_sd35: canny ``a * 255 * 0.5 + 0.5``, depth ``1 - a``, blur
    and no type: as it is; then VAE-encoded and shifted and scaled (``latent_formats.SD3().process_in``)."""
    comfy = {"canny": lambda a: (a * 255 * 0.5 + 0.5), "depth": lambda a: 1.0 - a}.get(kind, lambda a: a)
    _, _, vae = _parts(sd3)
    image = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(42))
    control = load_control(getattr(files, kind)).control(image, 1.0, vae=vae)
    scale, shift = LATENT_FORMATS["sd3"]
    want = (vae.encode(comfy(image), device="cpu") - shift) * scale
    assert torch.allclose(control.cond(1, 8, 8, "cpu", torch.float32), want, atol=1e-5)


def test_comfyui_sd35_controlnet_workflow_imports_and_runs(sd3, files, tmp_path):
    from tests.support.comfy_controlnet import run_sd3_controlnet_workflow, sd3_controlnet_api
    from tests.support.comfy_run import run_api

    result, models = run_sd3_controlnet_workflow(tmp_path, sd3.single_file, "sd3.5_large_incl_clips.safetensors",
                                                 files.canny, "sd3.5_large_controlnet_canny.safetensors")
    assert result.ok, (result.problems, [str(f) for f in result.failures])
    assert result.images[0].size == (64, 64)

    # a file of the kind nodegen does not apply (a square pooled-text embedder, ComfyUI's double_y_emb)
    square = {k: v.detach() for k, v in _controlnet(91, pooled=128).state_dict().items()}
    _save(to_stability(square, 1), models / "controlnet" / "sd3.5_8b_controlnet.safetensors")
    api = sd3_controlnet_api("sd3.5_large_incl_clips.safetensors", "sd3.5_8b_controlnet.safetensors")
    result = run_api(api, models, tmp_path, check=False)
    message = " ".join(str(f) for f in result.failures)
    assert not result.ok and "ControlNetLoader" in message and "control_net_name" in message
    assert "sd3.5_8b_controlnet.safetensors is an SD 3.5 ControlNet in Stability's layout whose pooled-text " \
           "embedder reads the main model's" in message


def test_a_stability_file_on_a_model_of_another_width_is_refused(sd3, files):
    """The fixture's ControlNet is 128 wide; a 256-wide one cannot control the 128-wide transformer."""
    from diffusers import SD3ControlNetModel

    model, te, vae = _parts(sd3)
    wide = SD3ControlNetModel(sample_size=8, patch_size=2, in_channels=16, out_channels=16, num_layers=1,
                              attention_head_dim=64, num_attention_heads=4, joint_attention_dim=None,
                              caption_projection_dim=256, pooled_projection_dim=POOLED, pos_embed_type=None,
                              use_pos_embed=False, force_zeros_for_pooled_projection=False)
    path = _save(to_stability({k: v.detach() for k, v in wide.state_dict().items()}, 2),
                 files.depth.parent / "sd3.5_wide_controlnet_depth.safetensors")
    pos = te.encode("x")
    out = run("ControlNetApplyAdvanced", CTX, positive=pos, negative=pos, control_net=load_control(path),
              image=torch.rand(1, 64, 64, 3), vae=vae)
    with pytest.raises(ValueError, match="sd3.5_wide_controlnet_depth.safetensors' is 256 wide but this SD3 model is 128"):
        sample(model, out["positive"], out["negative"], {"samples": torch.zeros(1, 16, 8, 8)}, 1, Steps(1, "normal"),
               1.0, "euler", device="cpu")
