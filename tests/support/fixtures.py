"""Small random-weight models with real architectures, saved as diffusers folders and as
original LDM single files, built once per process.

Each ``*_fixture(tmp)`` returns a namespace with:

* ``family``, ``prediction``;
* in-memory components: ``unet``, ``vae``, ``text_encoder``, ``tokenizer`` (SDXL also
  ``text_encoder_2``, ``tokenizer_2``), ``scheduler``;
* ``diffusers_dir`` (``save_pretrained`` folder), ``single_file`` (LDM ``.safetensors``, fp32),
  ``single_file_fp16``, and for SD1 ``ckpt`` (a ``{"state_dict": ...}`` pickle);
* ``pipeline()``: a fresh diffusers pipeline over the same components (for oracle tests).

The head-count rules of ENVIRONMENT.md hold: SD1 UNet 8 heads per attention layer; SD2/SDXL
UNet head size 64; CLIP text encoders head size 64; real CLIP vocabulary and 77 positions.
Call with ``tmp`` = a ``tmp_path_factory.mktemp(...)`` folder; the first call builds, later
calls (any ``tmp``) return the same namespace.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace

import torch

from nodegen.compat import torchvision as torchvision_fix

torchvision_fix.apply()

_CACHE: dict[str, SimpleNamespace] = {}
_LOCK = threading.Lock()

SD_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                    beta_schedule="scaled_linear", clip_sample=False, set_alpha_to_one=False,
                    steps_offset=1)

VAE_CONFIG = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                  up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(32, 32, 64, 64),
                  layers_per_block=1, latent_channels=4, norm_num_groups=32, sample_size=64)


def clip_config(width: int, layers: int = 2, act: str = "quick_gelu", projection_dim: int | None = None):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=49408, hidden_size=width, intermediate_size=4 * width,
                          num_hidden_layers=layers, num_attention_heads=width // 64,
                          max_position_embeddings=77, hidden_act=act,
                          projection_dim=projection_dim or width, bos_token_id=49406,
                          eos_token_id=49407, pad_token_id=1)


def _tmpdir(tmp) -> Path:
    if tmp is not None:
        return Path(tmp)
    d = tempfile.mkdtemp(prefix="nodegen-fixtures-")
    atexit.register(shutil.rmtree, d, True)
    return Path(d)


def _randomize_(module: torch.nn.Module, seed: int) -> None:
    """Give zero-initialised weights random values (so nothing is trivially zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _name, p in module.named_parameters():
            if p.ndim >= 1 and torch.count_nonzero(p) == 0:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)


def _save_single(ns: SimpleNamespace, sd: dict, root: Path, stem: str, ckpt: bool = False) -> None:
    from safetensors.torch import save_file

    ns.ldm_state_dict = sd
    ns.single_file = root / f"{stem}.safetensors"
    save_file(sd, str(ns.single_file))
    ns.single_file_fp16 = root / f"{stem}-fp16.safetensors"
    save_file({k: v.half() if v.is_floating_point() else v for k, v in sd.items()}, str(ns.single_file_fp16))
    if ckpt:
        ns.ckpt = root / f"{stem}.ckpt"
        torch.save({"state_dict": sd, "global_step": 1}, str(ns.ckpt))


def _build_sd1(root: Path, in_channels: int = 4) -> SimpleNamespace:
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    from nodegen.models.clip_tokenizer import load_clip_tokenizer
    from nodegen.models.ldm_export import convert_pipeline_to_ldm

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=in_channels, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=64,
        attention_head_dim=8, norm_num_groups=32)
    torch.manual_seed(1)
    vae = AutoencoderKL(**VAE_CONFIG, scaling_factor=0.18215)
    torch.manual_seed(2)
    te = CLIPTextModel(clip_config(64))
    for m in (unet, vae, te):
        _randomize_(m, 3)
        m.eval()
    tok = load_clip_tokenizer()
    sched = DDIMScheduler(**SD_SCHEDULER, prediction_type="epsilon")
    ns = SimpleNamespace(family="sd1", prediction="epsilon", unet=unet, vae=vae, text_encoder=te,
                         tokenizer=tok, scheduler=sched)
    ns.pipeline = lambda: StableDiffusionPipeline(
        vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    stem = {4: "sd1", 8: "sd1-ip2p", 9: "sd1-inpaint"}[in_channels]
    ns.diffusers_dir = root / f"{stem}-diffusers"
    ns.pipeline().save_pretrained(str(ns.diffusers_dir))
    _save_single(ns, convert_pipeline_to_ldm(unet, vae, te, "sd1"), root, stem, ckpt=in_channels == 4)
    return ns


def _build_sd2(root: Path) -> SimpleNamespace:
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    from nodegen.models.clip_tokenizer import load_clip_tokenizer
    from nodegen.models.ldm_export import convert_pipeline_to_ldm, open_clip_to_ldm

    torch.manual_seed(10)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(64, 128), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=64,
        attention_head_dim=(1, 2), use_linear_projection=True, upcast_attention=True,
        norm_num_groups=32)
    torch.manual_seed(11)
    vae = AutoencoderKL(**VAE_CONFIG, scaling_factor=0.18215)
    torch.manual_seed(12)
    te = CLIPTextModel(clip_config(64, act="gelu"))
    # the 24th layer of a real SD2 file, unused by diffusers (SD2 conditions on the penultimate)
    torch.manual_seed(13)
    extra = CLIPTextModel(clip_config(64, layers=1, act="gelu"))
    extra_layer = {k.split(".", 4)[-1]: v for k, v in
                   open_clip_to_ldm(extra.state_dict(), "x.").items() if ".resblocks.0." in k}
    for m in (unet, vae, te):
        _randomize_(m, 14)
        m.eval()
    tok = load_clip_tokenizer(pad_token="!")
    sched = DDIMScheduler(**SD_SCHEDULER, prediction_type="v_prediction")
    ns = SimpleNamespace(family="sd2", prediction="v_prediction", unet=unet, vae=vae, text_encoder=te,
                         tokenizer=tok, scheduler=sched)
    ns.pipeline = lambda: StableDiffusionPipeline(
        vae=vae, text_encoder=te, tokenizer=tok, unet=unet, scheduler=sched, safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    ns.diffusers_dir = root / "sd2-diffusers"
    ns.pipeline().save_pretrained(str(ns.diffusers_dir))
    sd = convert_pipeline_to_ldm(unet, vae, te, "sd2", extra_text_layer=extra_layer)
    # real SD2 files carry OpenCLIP's projection (unused for SD2)
    sd["cond_stage_model.model.text_projection"] = torch.randn(64, 64, generator=torch.Generator().manual_seed(15))
    _save_single(ns, sd, root, "sd2-v")
    return ns


def _build_sdxl(root: Path) -> SimpleNamespace:
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from nodegen.models.clip_tokenizer import load_clip_tokenizer
    from nodegen.models.ldm_export import convert_pipeline_to_ldm

    torch.manual_seed(20)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(64, 128), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=64 + 128,
        transformer_layers_per_block=(1, 2), attention_head_dim=(1, 2), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=128 + 6 * 8, norm_num_groups=32)
    torch.manual_seed(21)
    vae = AutoencoderKL(**VAE_CONFIG, scaling_factor=0.13025)
    torch.manual_seed(22)
    te = CLIPTextModel(clip_config(64))
    torch.manual_seed(23)
    te2 = CLIPTextModelWithProjection(clip_config(128, act="gelu", projection_dim=128))
    for m in (unet, vae, te, te2):
        _randomize_(m, 24)
        m.eval()
    tok = load_clip_tokenizer()
    tok2 = load_clip_tokenizer(pad_token="!")
    sched = EulerDiscreteScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                   beta_schedule="scaled_linear", steps_offset=1, prediction_type="epsilon")
    ns = SimpleNamespace(family="sdxl", prediction="epsilon", unet=unet, vae=vae, text_encoder=te,
                         tokenizer=tok, text_encoder_2=te2, tokenizer_2=tok2, scheduler=sched)
    ns.pipeline = lambda: StableDiffusionXLPipeline(
        vae=vae, text_encoder=te, text_encoder_2=te2, tokenizer=tok, tokenizer_2=tok2, unet=unet,
        scheduler=sched, force_zeros_for_empty_prompt=False)
    ns.diffusers_dir = root / "sdxl-diffusers"
    ns.pipeline().save_pretrained(str(ns.diffusers_dir))
    _save_single(ns, convert_pipeline_to_ldm(unet, vae, te, "sdxl", text_encoder_2=te2), root, "sdxl")
    return ns


def _build_sdxl_refiner(root: Path) -> SimpleNamespace:
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLImg2ImgPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModelWithProjection

    from nodegen.models.clip_tokenizer import load_clip_tokenizer
    from nodegen.models.ldm_export import convert_pipeline_to_ldm

    torch.manual_seed(30)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(64, 128), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=128,
        transformer_layers_per_block=2, attention_head_dim=(1, 2), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=128 + 5 * 8, norm_num_groups=32)
    torch.manual_seed(31)
    vae = AutoencoderKL(**VAE_CONFIG, scaling_factor=0.13025)
    torch.manual_seed(32)
    te2 = CLIPTextModelWithProjection(clip_config(128, act="gelu", projection_dim=128))
    for m in (unet, vae, te2):
        _randomize_(m, 33)
        m.eval()
    tok2 = load_clip_tokenizer(pad_token="!")
    sched = EulerDiscreteScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                   beta_schedule="scaled_linear", steps_offset=1, prediction_type="epsilon")
    ns = SimpleNamespace(family="sdxl_refiner", prediction="epsilon", unet=unet, vae=vae, text_encoder=None,
                         tokenizer=None, text_encoder_2=te2, tokenizer_2=tok2, scheduler=sched)
    ns.pipeline = lambda: StableDiffusionXLImg2ImgPipeline(
        vae=vae, text_encoder=None, text_encoder_2=te2, tokenizer=None, tokenizer_2=tok2, unet=unet,
        scheduler=sched, requires_aesthetics_score=True, force_zeros_for_empty_prompt=False)
    ns.diffusers_dir = root / "sdxl-refiner-diffusers"
    ns.pipeline().save_pretrained(str(ns.diffusers_dir))
    _save_single(ns, convert_pipeline_to_ldm(unet, vae, None, "sdxl_refiner", text_encoder_2=te2), root,
                 "sdxl-refiner")
    return ns


_BUILDERS = {"sd1": _build_sd1, "sd2": _build_sd2, "sdxl": _build_sdxl,
             "sdxl_refiner": _build_sdxl_refiner, "sd1_inpaint": lambda root: _build_sd1(root, in_channels=9),
             "sd1_ip2p": lambda root: _build_sd1(root, in_channels=8)}


def fixture(name: str, tmp=None) -> SimpleNamespace:
    """The fixture ``name`` ("sd1", "sd2", "sdxl", "sdxl_refiner", "sd1_inpaint", "sd1_ip2p"), built on
    first use."""
    with _LOCK:
        if name not in _CACHE:
            torch.set_num_threads(1)
            root = _tmpdir(tmp)
            root.mkdir(parents=True, exist_ok=True)
            _CACHE[name] = _BUILDERS[name](root)
        return _CACHE[name]


def sd1_fixture(tmp=None) -> SimpleNamespace:
    return fixture("sd1", tmp)


def sd2_fixture(tmp=None) -> SimpleNamespace:
    return fixture("sd2", tmp)


def sdxl_fixture(tmp=None) -> SimpleNamespace:
    return fixture("sdxl", tmp)


def sdxl_refiner_fixture(tmp=None) -> SimpleNamespace:
    return fixture("sdxl_refiner", tmp)


def sd1_inpaint_fixture(tmp=None) -> SimpleNamespace:
    return fixture("sd1_inpaint", tmp)
