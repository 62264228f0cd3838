"""Loading checkpoints (single files and diffusers folders) and VAEs into model objects.

Single files are converted with diffusers' ``single_file_utils`` functions into modules built
with empty (meta) weights and then given the file's tensors (``load_state_dict(assign=True)``):
no network, no config download, no second copy of the weights. Configs come from
:mod:`nodegen.models.configs` (derived from the shapes). Tensors keep the file's dtype where the
target device computes in it (fp16 files stay fp16 for CUDA) and are upcast to fp32 for the CPU.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from nodegen.compat import lean_imports
from nodegen.compat import torchvision as torchvision_fix
from nodegen.diffusion import unclip as unclip_labels
from nodegen.models import configs, unclip
from nodegen.models.detect import Detected, ModelKindError, detect, require
from nodegen.models.files import check_scaling_factor, load_state_dict, open_state_dict, shapes_of
from nodegen.models.module_build import _build, _cast, _target_device, _target_dtype, realign_
from nodegen.models.objects import FLOW_FAMILIES, SCALING_FACTORS, DiffusionModel, TextEncoder, VAEModel
from nodegen.models.unused_keys import dropped, warn_unused

if TYPE_CHECKING:
    from nodegen.models.manager import ModelManager

PREDICTIONS = ("auto", "epsilon", "v_prediction")
TEXT_PREFIX = {"sd1": "cond_stage_model.transformer.", "sd2": "cond_stage_model.model.",
               "sdxl_l": "conditioner.embedders.0.transformer.", "sdxl_g": "conditioner.embedders.1.model.",
               "sdxl_refiner": "conditioner.embedders.0.model."}


def _take(sd: dict, prefix: str) -> dict:
    """Pop the entries under ``prefix`` out of ``sd`` (keys kept whole)."""
    keys = [k for k in sd if k.startswith(prefix)]
    return {k: sd.pop(k) for k in keys}


def _tokenizers(family: str) -> list:
    from nodegen.models.clip_tokenizer import ClipTokenizer

    l_tok = lambda: ClipTokenizer.standard()  # noqa: E731 - pads with <|endoftext|>
    g_tok = lambda: ClipTokenizer.standard(pad_token="!")  # noqa: E731 - OpenCLIP pads with "!" (id 0)
    return {"sd1": [l_tok], "sd2": [g_tok], "sdxl": [l_tok, g_tok], "sdxl_refiner": [g_tok]}[family]


def _clip_module(sd: dict, prefix: str, open_clip: bool, dtype, path, *, projection: bool = False,
                 drop_last: bool = False, device: torch.device | None = None) -> torch.nn.Module:
    """The text encoder under ``prefix`` (CLIP-L: transformers keys; OpenCLIP: converted), in the
    dtype :mod:`nodegen.models.clip_text_load` keeps it in."""
    from nodegen.models.clip_text_load import build_text_encoder, from_open_clip

    if open_clip and prefix + "text_projection.weight" in sd and prefix + "text_projection" not in sd:
        # some ComfyUI saves name it so; ComfyUI's loader renames it without transposing
        sd = dict(sd)
        sd[prefix + "text_projection"] = sd.pop(prefix + "text_projection.weight")
    if not open_clip:
        sd = _with_text_model(sd, prefix)
    cfg = configs.clip_config(shapes_of(sd), prefix, open_clip, drop_last=drop_last)
    if open_clip:
        state = from_open_clip(sd, prefix, cfg["num_hidden_layers"], projection)
    else:
        state = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    return build_text_encoder(state, cfg, projection, dtype, device, "text encoder", path)


def _with_text_model(sd: dict, prefix: str) -> dict:
    """Early SD1 files (and A1111 saves of them) hold CLIP-L as ``cond_stage_model.transformer.
    embeddings...`` without ``text_model.`` (older transformers); ComfyUI renames them (its
    ``load_clip_weights``), and so does this."""
    inner = prefix + "text_model."
    return {k if k.startswith(inner) or not k.startswith(prefix) else inner + k[len(prefix):]: v
            for k, v in sd.items()}


#: Per family, its text encoders: (TEXT_PREFIX key, OpenCLIP layout, projection, drop the last layer).
TEXT_ENCODERS = {"sd1": [("sd1", False, False, False)], "sd2": [("sd2", True, False, True)],
                 "sdxl": [("sdxl_l", False, False, False), ("sdxl_g", True, True, False)],
                 "sdxl_refiner": [("sdxl_refiner", True, True, False)]}


def _text_encoders(sd, family: str, dtype, path, device) -> list[torch.nn.Module]:
    out = []
    for key, open_clip, projection, drop_last in TEXT_ENCODERS[family]:
        prefix = TEXT_PREFIX[key]
        out.append(_clip_module(_take(sd, prefix), prefix, open_clip, dtype, path, projection=projection,
                                drop_last=drop_last, device=device))
    return out


@contextmanager
def _raw_reads(sd):
    """Tensors read from ``sd`` in the file's dtype inside the block (a lazy reader casts them
    otherwise): the text encoders choose their own dtype."""
    cast = getattr(sd, "dtype", None)
    if cast is not None:
        sd.dtype = None
    try:
        yield sd
    finally:
        if cast is not None:
            sd.dtype = cast


#: Markers ComfyUI's checkpoints carry for continuous-time SDXL models (CosXL, Playground v2.5).
CONTINUOUS_KEYS = ("edm_vpred.sigma_max", "edm_vpred.sigma_min", "edm_mean", "edm_std")


def continuous_markers(sd: dict) -> dict:
    """The model options an SDXL checkpoint's continuous-time markers ask for, as ComfyUI reads them
    (supported_models.SDXL.model_type): ``edm_mean`` / ``edm_std`` (Playground v2.5: EDM, sigma_data
    0.5, sigmas 0.002..80, its latent normalisation); ``edm_vpred.sigma_max`` (CosXL: EDM timing with
    v-prediction, sigma_data 1, the file's sigma range; an InstructPix2Pix model of that kind, CosXL
    edit, takes its image latents in the model's scale). None of them: no options."""
    if "edm_mean" in sd and "edm_std" in sd:
        return {"continuous_sampling": {"timing": "edm", "prediction_type": "edm", "sigma_min": 0.002,
                                        "sigma_max": 80.0, "sigma_data": 0.5},
                "latent_format": "sdxl_playground_2_5"}
    if "edm_vpred.sigma_max" in sd:
        low = sd.get("edm_vpred.sigma_min")
        return {"continuous_sampling": {"timing": "edm", "prediction_type": "v_prediction",
                                        "sigma_min": float(low.float().item()) if low is not None else 0.002,
                                        "sigma_max": float(sd["edm_vpred.sigma_max"].float().item()),
                                        "sigma_data": 1.0},
                "ip2p_image_scaled": True}
    return {}


def load_single_file(path: str | os.PathLike, prediction: str = "auto", manager: ModelManager | None = None,
                     *, state_dict: dict | None = None):
    torchvision_fix.apply()
    lean_imports.apply()
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sfu

    path = Path(path)
    dtype = _target_dtype(manager)
    device = _target_device(manager)
    sd = dict(state_dict) if state_dict is not None else open_state_dict(path, dtype)
    shapes = shapes_of(sd)
    det: Detected = detect(shapes, sd)
    if det.family in ("sd3", "flux", "chroma") and state_dict is None:
        if det.kind != "checkpoint" and det.family == "chroma":
            raise ModelKindError(f"{path}: this is a Chroma diffusion model without a VAE: load it with the diffusion "
                                 "model loader (UNETLoader), its T5-XXL with CLIPLoader (type 'chroma')")
        if det.kind != "checkpoint":
            raise ModelKindError(f"{path}: this is a {det.family} diffusion model without a VAE: load it with "
                                 "the diffusion model loader (UNETLoader) and the text encoders with "
                                 "DualCLIPLoader / TripleCLIPLoader")
        from nodegen.models.flow_loader import load_flow_single_file

        return load_flow_single_file(path, det, manager)
    require(det, "checkpoint", str(path))
    family = det.family
    pred = det.prediction if prediction == "auto" else prediction

    # text encoders first (their shapes tell SDXL's pooled width)
    with _raw_reads(sd):
        encoders = _text_encoders(sd, family, dtype, path, device)
    pooled_dim = int(encoders[-1].config.projection_dim) if family.startswith("sdxl") else None
    text = TextEncoder([t() for t in _tokenizers(family)], encoders, family, source=str(path), manager=manager)

    ucfg = configs.unet_config(shapes, family, det.inpaint, pred, pooled_dim=pooled_dim)
    augmentor = None
    if unclip.is_unclip(shapes, family):  # SD 2.1 unCLIP: an image embedding as class label
        ucfg = unclip.unet_config(ucfg, shapes)
        augmentor = unclip.take_noise_augmentor(sd, shapes)
    unet_src = _take(sd, configs.UNET)
    unet_sd = sfu.convert_ldm_unet_checkpoint(unet_src, ucfg)
    warn_unused(path, dropped(unet_src, unet_sd), "UNet")
    unet = _build(UNet2DConditionModel, ucfg, _cast(unet_sd, dtype, device), "UNet", path, device)
    del unet_sd, unet_src
    model = DiffusionModel(unet, family, pred, source=str(path), manager=manager)
    if augmentor is not None:
        model.options[unclip_labels.MODEL_OPTION] = augmentor
    if family == "sdxl":  # ComfyUI reads these markers on SDXL checkpoints only
        if prediction == "auto":
            model.options.update(continuous_markers(sd))
        for key in CONTINUOUS_KEYS:
            if key in sd:
                sd.pop(key)

    if not det.details.get("has_vae", True):
        from nodegen.models.missing_vae import MissingVAE

        warn_unused(path, list(sd), "checkpoint")
        return model, text, MissingVAE(str(path), SCALING_FACTORS[family])
    vae_prefix = "first_stage_model." if any(k.startswith("first_stage_model.") for k in sd) else "vae."
    vcfg = configs.vae_config(shapes, vae_prefix, SCALING_FACTORS[family])
    vae_src = _take(sd, vae_prefix)
    vae_sd = sfu.convert_ldm_vae_checkpoint(vae_src, vcfg)
    warn_unused(path, dropped(vae_src, vae_sd), "VAE")
    vae = _build(AutoencoderKL, vcfg, _cast(vae_sd, dtype, device), "VAE", path, device)
    warn_unused(path, list(sd), "checkpoint")
    return model, text, VAEModel(vae, source=str(path), manager=manager)


def _folder_family(folder: Path) -> str:
    index = json.loads((folder / "model_index.json").read_text("utf-8"))
    has_te = isinstance(index.get("text_encoder"), list) and index["text_encoder"][0] is not None
    has_te2 = isinstance(index.get("text_encoder_2"), list) and index["text_encoder_2"][0] is not None
    if has_te2:
        return "sdxl" if has_te else "sdxl_refiner"
    unet_cfg = json.loads((folder / "unet" / "config.json").read_text("utf-8"))
    te_cfg = json.loads((folder / "text_encoder" / "config.json").read_text("utf-8"))
    if unet_cfg.get("cross_attention_dim") == 1024 or te_cfg.get("hidden_act") == "gelu":
        return "sd2"
    return "sd1"


def load_diffusers_folder(folder: str | os.PathLike, prediction: str = "auto",
                          manager: ModelManager | None = None):
    torchvision_fix.apply()
    lean_imports.apply()
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from nodegen.models.clip_text_load import load_folder as load_text_folder
    from nodegen.models.clip_tokenizer import folder_tokenizer

    folder = Path(folder)
    if not (folder / "model_index.json").is_file():
        raise ModelKindError(f"{folder}: a folder, but not a diffusers model (no model_index.json)")
    from nodegen.models.flow_loader import folder_family, load_flow_folder

    if folder_family(folder):
        return load_flow_folder(folder, manager)
    family = _folder_family(folder)
    dtype = _target_dtype(manager)
    kw = dict(local_files_only=True, torch_dtype=dtype)
    unet = realign_(UNet2DConditionModel.from_pretrained(folder, subfolder="unet", **kw)).eval().requires_grad_(False)
    vae = realign_(AutoencoderKL.from_pretrained(folder, subfolder="vae", **kw)).eval().requires_grad_(False)
    names = {"sd1": ["", ""], "sd2": [""], "sdxl": ["", "_2"], "sdxl_refiner": ["_2"]}[family]
    names = names[:1] if family in ("sd1", "sd2") else names
    encoders, tokenizers = [], []
    for suffix, fallback in zip(names, _tokenizers(family), strict=True):
        encoders.append(load_text_folder(folder / ("text_encoder" + suffix), suffix == "_2", dtype))
        tokenizers.append(folder_tokenizer(folder / ("tokenizer" + suffix), fallback))
    if prediction == "auto":
        sched = folder / "scheduler" / "scheduler_config.json"
        prediction = "epsilon"
        if sched.is_file():
            prediction = json.loads(sched.read_text("utf-8")).get("prediction_type", "epsilon")
    src = str(folder)
    return (DiffusionModel(unet, family, prediction, source=src, manager=manager),
            TextEncoder(tokenizers, encoders, family, source=src, manager=manager),
            VAEModel(vae, source=src, manager=manager))


def load_checkpoint(path: str | os.PathLike, prediction: str = "auto", manager: ModelManager | None = None):
    """``(DiffusionModel, TextEncoder, VAEModel)`` from a single file or a diffusers folder.

    ``prediction``: "auto" (detect; SD2 defaults to v-prediction), "epsilon" or
    "v_prediction"."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {', '.join(PREDICTIONS)}, got {prediction!r}")
    p = Path(path)
    if p.is_dir():
        return load_diffusers_folder(p, prediction, manager)
    return load_single_file(p, prediction, manager)


def load_vae(path: str | os.PathLike, manager: ModelManager | None = None,
             scaling_factor: float | None = None) -> VAEModel:
    """A VAE from a VAE file (LDM or diffusers keys), a checkpoint's VAE, or a diffusers folder.

    A standalone VAE file does not say which family it belongs to (SD1/SD2 and SDXL VAEs have
    the same shapes): its scaling factor is 0.18215 unless the file's safetensors metadata
    holds ``scaling_factor``, or ``scaling_factor`` is given; when it is only assumed, the
    VAEModel says so (``scale_assumed``) and the VAE nodes take the scale of the latent's model
    family instead (:mod:`nodegen.diffusion.latent_scale`)."""
    torchvision_fix.apply()
    lean_imports.apply()
    from diffusers import AutoencoderKL
    from diffusers.loaders import single_file_utils as sfu

    p = Path(path)
    dtype = _target_dtype(manager)
    if p.is_dir():
        sub = "vae" if (p / "vae" / "config.json").is_file() else None
        vae = realign_(AutoencoderKL.from_pretrained(p, subfolder=sub, local_files_only=True, torch_dtype=dtype))
        return VAEModel(vae.eval().requires_grad_(False), scaling_factor=scaling_factor, source=str(p),
                        manager=manager)
    sd = load_state_dict(p)
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    det = detect(shapes, sd)
    if det.kind == "taesd":
        from nodegen.models.taesd import load_taesd

        hint = {0.13025: "taesdxl", 0.18215: "taesd"}.get(scaling_factor or 0.0)
        return load_taesd(p, sd, four_channel_hint=hint, dtype=dtype, manager=manager)
    if det.family in FLOW_FAMILIES or (det.kind == "vae" and det.details.get("latent_channels") == 16):
        return _load_vae16(p, sd, det, dtype, manager, scaling_factor)
    if det.kind == "checkpoint" and not det.details.get("has_vae", True):
        raise ModelKindError(f"{p}: this is {det.describe()} that holds no VAE (a 'no-VAE' release); use a VAE file")
    if det.kind == "checkpoint":
        sf = scaling_factor or SCALING_FACTORS[det.family]
        prefix = "first_stage_model."
        assumed = False
    else:
        require(det, "vae", str(p))
        sf = scaling_factor or _metadata_scaling(p)
        assumed = sf is None
        sf = sf or 0.18215
        prefix = "first_stage_model." if det.layout == "ldm_prefixed" else ""
    if det.layout == "diffusers":
        from nodegen.models.ldm_export import vae_to_ldm
        sd = vae_to_ldm(sd, prefix="")
        shapes = {k: tuple(v.shape) for k, v in sd.items()}
    vae_sd = {k: v for k, v in sd.items() if k.startswith(prefix)}
    vcfg = configs.vae_config(shapes, prefix, sf)
    conv = sfu.convert_ldm_vae_checkpoint(vae_sd if prefix else {"vae." + k: v for k, v in vae_sd.items()}, vcfg)
    warn_unused(p, dropped(vae_sd, conv), "VAE")
    if det.kind == "vae":
        warn_unused(p, [k for k in sd if not k.startswith(prefix)] if prefix else [], "VAE")
    vae = _build(AutoencoderKL, vcfg, _cast(conv, dtype), "VAE", p)
    return VAEModel(vae, scaling_factor=sf, source=str(p), manager=manager, scale_assumed=assumed)


def _load_vae16(p: Path, sd: dict, det: Detected, dtype, manager, scaling_factor) -> VAEModel:
    """A 16-channel (SD3 / Flux) VAE: from a VAE file (LDM or diffusers keys) or a checkpoint."""
    from nodegen.models.flow_loader import load_vae16

    if det.kind == "checkpoint":
        prefix = "first_stage_model." if any(k.startswith("first_stage_model.") for k in sd) else "vae."
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
    elif det.kind != "vae":
        raise ModelKindError(f"{p}: this is {det.describe()} without a VAE, not a VAE")
    elif det.layout == "diffusers":
        from nodegen.models.ldm_export import vae_to_ldm

        sd = vae_to_ldm(sd, prefix="")
    vae = load_vae16(sd, p, dtype)
    vae.manager = manager
    if scaling_factor is not None:
        vae.scaling_factor = float(scaling_factor)
    return vae


def _metadata_scaling(path: Path) -> float | None:
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception:  # noqa: BLE001 - metadata is optional
        return None
    if "scaling_factor" not in meta:
        return None
    try:
        value = float(meta["scaling_factor"])
    except ValueError:
        value = meta["scaling_factor"]
    return check_scaling_factor(value, path)
