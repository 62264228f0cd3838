"""Small random-weight SD3 / SD 3.5 and Flux.1 models with the real architectures, saved in the
layouts people download, built once per process (like :mod:`tests.support.fixtures`).

``fixture("sd3")`` / ``fixture("flux")`` return a namespace with the in-memory components
(``transformer``, ``vae``, text encoders and tokenizers, ``scheduler``), ``pipeline()`` /
``img2img_pipeline()`` / ``inpaint_pipeline()`` (fresh diffusers pipelines over them) and files:

* ``diffusers_dir``: ``save_pretrained`` folder;
* ``single_file``: an all-in-one checkpoint (``model.diffusion_model.`` transformer,
  ``first_stage_model.`` VAE, ``text_encoders.<clip_l|clip_g|t5xxl>.transformer.`` encoders), fp32;
* ``single_file_no_te`` (SD3): transformer + VAE only, as SD 3.5's own single files;
* ``diffusion_model``: the transformer alone in the original key layout (``_bf16``, ``_fp8``
  copies: bf16 and float8_e4m3fn storage); Flux also ``diffusion_model_schnell`` (no guidance);
* ``clip_l``, ``clip_g`` (SD3), ``t5xxl`` (+ ``t5xxl_fp8``): separate text-encoder files in the
  transformers key layout, as ComfyUI's ``models/text_encoders`` files;
* ``vae_file``: the 16-channel VAE in the original (LDM) layout, as ``ae.safetensors``.

Head-size rules (so loaders can derive heads from shapes): SD3 MMDiT 64, Flux 128 (the sum of
its rotary axes), CLIP 64, T5 from ``relative_attention_bias``. CLIP-L 64 wide, CLIP-G 128 wide, T5
192 wide (SD3 pads the 64 + 128 CLIP features to the T5 width).
"""

from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import torch

from nodegen.compat import torchvision as torchvision_fix
from tests.support.fixtures import _randomize_, _tmpdir, clip_config

torchvision_fix.apply()

_CACHE: dict[str, SimpleNamespace] = {}
_LOCK = threading.Lock()

VAE16 = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
             up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(32, 32, 64, 64),
             layers_per_block=1, latent_channels=16, norm_num_groups=32, sample_size=64,
             use_quant_conv=False, use_post_quant_conv=False)
T5_WIDTH = 192


def t5_config():
    from transformers import T5Config

    return T5Config(vocab_size=32128, d_model=T5_WIDTH, d_kv=32, d_ff=256, num_layers=2, num_heads=2,
                    relative_attention_num_buckets=32, relative_attention_max_distance=128,
                    feed_forward_proj="gated-gelu", dense_act_fn="gelu_new", is_gated_act=True,
                    decoder_start_token_id=0, pad_token_id=0, eos_token_id=1, dropout_rate=0.0)


def _state(module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous() for k, v in module.state_dict().items()}


def t5_state(t5) -> dict[str, torch.Tensor]:
    """T5 encoder weights as the distributed ``t5xxl_*.safetensors`` hold them (``shared.weight``,
    no tied ``encoder.embed_tokens.weight``)."""
    return {k: v for k, v in _state(t5).items() if k != "encoder.embed_tokens.weight"}


def _save(sd: dict, path: Path, dtype: torch.dtype | None = None) -> Path:
    from safetensors.torch import save_file

    if dtype is not None:
        sd = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return path


def _prefixed(sd: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in sd.items()}


def _vae(seed: int, scaling: float, shift: float):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    return AutoencoderKL(**VAE16, scaling_factor=scaling, shift_factor=shift)


def _build_sd3(root: Path) -> SimpleNamespace:
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Img2ImgPipeline,
        StableDiffusion3InpaintPipeline,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextModelWithProjection, T5EncoderModel

    from nodegen.models.clip_tokenizer import load_clip_tokenizer
    from nodegen.models.ldm_export import vae_to_ldm
    from nodegen.models.t5_tokenizer import load_t5_tokenizer
    from tests.support.flow_convert import sd3_to_original

    torch.manual_seed(40)
    transformer = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=16, out_channels=16, num_layers=2, attention_head_dim=64,
        num_attention_heads=2, joint_attention_dim=T5_WIDTH, caption_projection_dim=128,
        pooled_projection_dim=64 + 128, pos_embed_max_size=16, dual_attention_layers=(0,), qk_norm="rms_norm")
    vae = _vae(41, 1.5305, 0.0609)
    torch.manual_seed(42)
    te = CLIPTextModelWithProjection(clip_config(64, projection_dim=64))
    torch.manual_seed(43)
    te2 = CLIPTextModelWithProjection(clip_config(128, act="gelu", projection_dim=128))
    torch.manual_seed(44)
    te3 = T5EncoderModel(t5_config())
    for m in (transformer, vae, te, te2, te3):
        _randomize_(m, 45)
        m.eval()
    tok, tok2, tok3 = load_clip_tokenizer(), load_clip_tokenizer(pad_token="!"), load_t5_tokenizer()
    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    parts = dict(transformer=transformer, scheduler=sched, vae=vae, text_encoder=te, tokenizer=tok,
                 text_encoder_2=te2, tokenizer_2=tok2, text_encoder_3=te3, tokenizer_3=tok3)
    ns = SimpleNamespace(family="sd3", **parts)
    ns.pipeline = lambda **kw: StableDiffusion3Pipeline(**{**parts, **kw})
    ns.img2img_pipeline = lambda **kw: StableDiffusion3Img2ImgPipeline(**{**parts, **kw})
    ns.inpaint_pipeline = lambda **kw: StableDiffusion3InpaintPipeline(**{**parts, **kw})
    ns.diffusers_dir = root / "sd3-diffusers"
    ns.pipeline().save_pretrained(str(ns.diffusers_dir))

    mmdit = sd3_to_original(_state(transformer), prefix="")
    vae_ldm = vae_to_ldm(_state(vae), prefix="")
    clip_l, clip_g, t5 = _state(te), _state(te2), t5_state(te3)
    ns.original_transformer = mmdit
    ns.diffusion_model = _save(mmdit, root / "sd3-mmdit.safetensors")
    ns.diffusion_model_bf16 = _save(mmdit, root / "sd3-mmdit-bf16.safetensors", torch.bfloat16)
    ns.diffusion_model_fp8 = _save(mmdit, root / "sd3-mmdit-fp8.safetensors", torch.float8_e4m3fn)
    ns.vae_file = _save(vae_ldm, root / "sd3-vae.safetensors")
    ns.clip_l = _save(clip_l, root / "clip_l.safetensors")
    ns.clip_g = _save(clip_g, root / "clip_g.safetensors")
    ns.t5xxl = _save(t5, root / "t5xxl.safetensors")
    ns.t5xxl_fp8 = _save(t5, root / "t5xxl-fp8.safetensors", torch.float8_e4m3fn)
    core = {**_prefixed(mmdit, "model.diffusion_model."), **_prefixed(vae_ldm, "first_stage_model.")}
    ns.single_file_no_te = _save(core, root / "sd3-no-te.safetensors")
    ns.single_file = _save({**core, **_prefixed(clip_l, "text_encoders.clip_l.transformer."),
                            **_prefixed(clip_g, "text_encoders.clip_g.transformer."),
                            **_prefixed(t5, "text_encoders.t5xxl.transformer.")}, root / "sd3.safetensors")
    return ns


def _flux_transformer(seed: int, guidance: bool, in_channels: int = 64):
    """The tiny Flux transformer; ``in_channels`` 128 / 384: a Canny-Depth / Fill model's input."""
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(seed)
    return FluxTransformer2DModel(patch_size=1, in_channels=in_channels, out_channels=64, num_layers=1,
                                  num_single_layers=2, attention_head_dim=128, num_attention_heads=1,
                                  joint_attention_dim=T5_WIDTH, pooled_projection_dim=64,
                                  guidance_embeds=guidance, axes_dims_rope=(16, 56, 56))


FLUX_DEV_SCHEDULER = dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                          max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)


def _build_flux(root: Path) -> SimpleNamespace:
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        FluxImg2ImgPipeline,
        FluxInpaintPipeline,
        FluxPipeline,
    )
    from transformers import CLIPTextModel, T5EncoderModel

    from nodegen.models.clip_tokenizer import load_clip_tokenizer
    from nodegen.models.ldm_export import vae_to_ldm
    from nodegen.models.t5_tokenizer import load_t5_tokenizer
    from tests.support.flow_convert import flux_to_original

    transformer = _flux_transformer(50, guidance=True)
    schnell = _flux_transformer(51, guidance=False)
    vae = _vae(52, 0.3611, 0.1159)
    torch.manual_seed(53)
    te = CLIPTextModel(clip_config(64))
    torch.manual_seed(54)
    te2 = T5EncoderModel(t5_config())
    for m in (transformer, schnell, vae, te, te2):
        _randomize_(m, 55)
        m.eval()
    tok, tok2 = load_clip_tokenizer(), load_t5_tokenizer()
    sched = FlowMatchEulerDiscreteScheduler(**FLUX_DEV_SCHEDULER)
    parts = dict(transformer=transformer, scheduler=sched, vae=vae, text_encoder=te, tokenizer=tok,
                 text_encoder_2=te2, tokenizer_2=tok2)
    ns = SimpleNamespace(family="flux", transformer_schnell=schnell, **parts)
    ns.schnell_scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    ns.pipeline = lambda **kw: FluxPipeline(**{**parts, **kw})
    ns.img2img_pipeline = lambda **kw: FluxImg2ImgPipeline(**{**parts, **kw})
    ns.inpaint_pipeline = lambda **kw: FluxInpaintPipeline(**{**parts, **kw})
    ns.diffusers_dir = root / "flux-diffusers"
    ns.pipeline().save_pretrained(str(ns.diffusers_dir))

    bfl = flux_to_original(_state(transformer))
    vae_ldm = vae_to_ldm(_state(vae), prefix="")
    clip_l, t5 = _state(te), t5_state(te2)
    ns.original_transformer = bfl
    ns.diffusion_model = _save(bfl, root / "flux1-dev.safetensors")
    ns.diffusion_model_bf16 = _save(bfl, root / "flux1-dev-bf16.safetensors", torch.bfloat16)
    ns.diffusion_model_fp8 = _save(bfl, root / "flux1-dev-fp8.safetensors", torch.float8_e4m3fn)
    ns.diffusion_model_schnell = _save(flux_to_original(_state(schnell)), root / "flux1-schnell.safetensors")
    ns.vae_file = _save(vae_ldm, root / "ae.safetensors")
    ns.clip_l = _save(clip_l, root / "flux-clip_l.safetensors")
    ns.t5xxl = _save(t5, root / "flux-t5xxl.safetensors")
    ns.t5xxl_fp8 = _save(t5, root / "flux-t5xxl-fp8.safetensors", torch.float8_e4m3fn)
    ns.single_file = _save({**_prefixed(bfl, "model.diffusion_model."), **_prefixed(vae_ldm, "first_stage_model."),
                            **_prefixed(clip_l, "text_encoders.clip_l.transformer."),
                            **_prefixed(t5, "text_encoders.t5xxl.transformer.")}, root / "flux1-dev-aio.safetensors")
    return ns


_BUILDERS = {"sd3": _build_sd3, "flux": _build_flux}


def fixture(name: str, tmp=None) -> SimpleNamespace:
    """The fixture ``name`` ("sd3", "flux"), built on first use."""
    with _LOCK:
        if name not in _CACHE:
            torch.set_num_threads(1)
            root = _tmpdir(tmp)
            root.mkdir(parents=True, exist_ok=True)
            _CACHE[name] = _BUILDERS[name](root)
        return _CACHE[name]


def sample_flux(model, lora: dict | None = None) -> torch.Tensor:
    """Two Euler steps of ``model`` (a Flux MODEL built on the flux fixture's weights, maybe
    stored another way: GGUF, fp8 scaled) on the fixture's "a cat", with ``lora`` applied: for
    comparing a stored form with the plain weights."""
    from nodegen.diffusion.flow_sampling import flux_mu
    from nodegen.diffusion.sample import Steps, sample
    from nodegen.models.lora import apply_lora, parse_lora
    from tests.test_oracle_flow import flux_components

    _, te, _ = flux_components(fixture("flux"))
    if lora is not None:
        model, _ = apply_lora(model, None, parse_lora(lora), 1.0, 1.0)
    model.options["model_sampling"] = {"kind": "flux", "shift": flux_mu(64, 64), "multiplier": 1.0}
    out = sample(model, te.encode("a cat"), None, {"samples": torch.zeros(1, 16, 8, 8)}, 4, Steps(2, "simple"),
                 1.0, "euler", device="cpu")
    return out.latent["samples"]


def flux_probe_inputs(t) -> dict:
    """Fixed inputs for one forward call of a small Flux transformer ``t`` (a 4x4 latent, 5 tokens)."""
    g = torch.Generator().manual_seed(0)
    n = 16
    ids = torch.stack(torch.meshgrid(torch.arange(4), torch.arange(4), indexing="ij"), -1).reshape(n, 2)
    return dict(hidden_states=torch.randn(1, n, t.config.in_channels, generator=g),
                encoder_hidden_states=torch.randn(1, 5, t.config.joint_attention_dim, generator=g),
                pooled_projections=torch.randn(1, t.config.pooled_projection_dim, generator=g),
                timestep=torch.tensor([0.7]), guidance=torch.tensor([3.5]),
                img_ids=torch.cat([torch.zeros(n, 1), ids.float()], 1), txt_ids=torch.zeros(5, 3), return_dict=False)
