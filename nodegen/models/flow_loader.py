"""Loading SD3 / SD 3.5, Flux.1 and Chroma: diffusion models alone (UNETLoader), text encoders from
one, two or three files (CLIPLoader / DualCLIPLoader / TripleCLIPLoader), all-in-one single files and
diffusers folders (CheckpointLoader), 16-channel VAEs.

Modules are built on the meta device and given the file's tensors (``load_state_dict(assign=True)``),
read one at a time (:class:`nodegen.models.files.LazyStateDict`: plain reads, no memory map) and cast
as they are read: no random init, no second copy. Weights are cast
to the manager's compute dtype (fp32 on the CPU), except fp8 storage (an fp8 file with
``weight_dtype="default"``, or ``weight_dtype="fp8_e4m3fn"``/``"fp8_e5m2"``): the transformer's linear
weights then stay fp8 and are upcast layer by layer for compute (:mod:`nodegen.models.fp8`).
Quantized GGUF diffusion models and ComfyUI's fp8 scaled ones keep their Linear weights quantized the
same way, dequantized layer by layer (:mod:`nodegen.models.gguf_linear`, :mod:`nodegen.models.fp8_scaled`);
fp8 scaled text encoders are dequantized at load, as plain fp8 ones are upcast.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from nodegen.compat import torchvision as torchvision_fix
from nodegen.models import flow_configs
from nodegen.models.detect import FLOW_TEXT_PREFIX, T5_MARKER, Detected, ModelKindError, detect
from nodegen.models.files import open_state_dict, shapes_of
from nodegen.models.flow_text import FlowTextEncoder
from nodegen.models.module_build import _build, _cast, _target_dtype, realign_
from nodegen.models.objects import DiffusionModel, VAEModel

if TYPE_CHECKING:
    from nodegen.models.manager import ModelManager

WEIGHT_DTYPES = {"default": None, "fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e4m3fn_fast": torch.float8_e4m3fn,
                 "fp8_e5m2": torch.float8_e5m2}
FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)


def _take(sd, prefix: str) -> dict:
    """Pop (read) the tensors under ``prefix`` with the prefix removed."""
    return {k[len(prefix):]: sd.pop(k) for k in [k for k in sd if k.startswith(prefix)]}


def _storage_dtype(sd, weight_dtype: str) -> torch.dtype | None:
    if weight_dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weight_dtype must be one of {', '.join(WEIGHT_DTYPES)}, got {weight_dtype!r}")
    want = WEIGHT_DTYPES[weight_dtype]
    if want is not None:
        return want
    first = next((sd[k] for k in sd if k.endswith(".weight")), None)
    return first.dtype if first is not None and first.dtype in FP8 else None


def open_weights(path, weight_dtype: str, dtype: torch.dtype, prefix: str = ""):
    """The file's tensors (read one at a time, without a memory map) and the fp8 storage dtype (None:
    cast to ``dtype``). Without fp8 storage each tensor is cast as it is read, so no full-size copy in
    the file's dtype is held."""
    sd = open_state_dict(path)
    if getattr(sd, "quantized_layers", None):  # ComfyUI's fp8 scaled: kept fp8 with their scales, whatever
        sd.dtype = dtype                      # weight_dtype says (nodegen.models.fp8_scaled)
        sd.keep_quantized = True
        return sd, None
    first = next((k for k in sd if k.startswith(prefix) and k.endswith(".weight")), None)
    probe = {first: sd[first]} if first is not None else {}
    storage = _storage_dtype(probe, weight_dtype)
    if storage is None and hasattr(sd, "dtype"):
        sd.dtype = dtype
    return sd, storage


def build_transformer(family: str, sd: dict, path, dtype: torch.dtype, storage: torch.dtype | None = None,
                      layout: str = "original"):
    """The diffusers transformer of ``family`` from its tensors (bare keys, original or diffusers layout)."""
    torchvision_fix.apply()
    from diffusers import ChromaTransformer2DModel, FluxTransformer2DModel, SD3Transformer2DModel

    if layout == "original":
        if family == "sd3":
            from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

            sd = convert_sd3_transformer_checkpoint_to_diffusers(sd)  # pops from sd: no second copy
        elif family == "chroma":
            from nodegen.models.chroma_convert import chroma_to_diffusers

            try:
                sd = chroma_to_diffusers(sd)
            except KeyError as e:  # e.g. Chroma Radiance (pixel space: no img_in), which nodegen does not run
                raise ModelKindError(f"{path}: this Chroma file lacks the tensor {e.args[0]!r} of Chroma's latent "
                                     "models (nodegen runs Chroma / Chroma1-HD, not Chroma Radiance)") from e
        else:
            from nodegen.models.flux_convert import flux_to_diffusers

            sd = flux_to_diffusers(sd)
    shapes = {k: tuple(getattr(v, "quant_shape", v.shape)) for k, v in sd.items()}  # GGUF blocks: their values'
    cls, cfg = {"sd3": (SD3Transformer2DModel, flow_configs.sd3_config),
                "chroma": (ChromaTransformer2DModel, flow_configs.chroma_config)}.get(
                    family, (FluxTransformer2DModel, flow_configs.flux_config))
    cfg = cfg(shapes)
    if storage is None and any(getattr(v, "quant_type", None) is not None for v in sd.values()):
        from nodegen.models.gguf_linear import build_quantized

        return build_quantized(cls, cfg, sd, dtype, f"{family} transformer", path)
    if storage is None:
        return _build(cls, cfg, _cast(sd, dtype), f"{family} transformer", path)
    from accelerate import init_empty_weights

    from nodegen.models.fp8 import fp8_state, make_fp8_compute

    with init_empty_weights():
        probe = cls(**cfg)
    module = _build(cls, cfg, fp8_state(probe, sd, storage, dtype), f"{family} transformer", path)
    return make_fp8_compute(module, dtype)


def load_diffusion_model(path: str | os.PathLike, weight_dtype: str = "default",
                         manager: ModelManager | None = None) -> DiffusionModel:
    """MODEL from a file holding an SD3 / Flux / Chroma transformer (alone or inside a checkpoint)."""
    path = Path(path)
    dtype = _target_dtype(manager)
    det = detect(shapes_of(open_state_dict(path)))
    if det.kind in ("unet", "checkpoint") and det.family in ("sd1", "sd2", "sdxl", "sdxl_refiner"):
        if weight_dtype != "default":
            raise ModelKindError(f"{path}: weight_dtype {weight_dtype!r} is for SD3 / Flux models; load this "
                                 f"{det.family} UNet with weight_dtype 'default'")
        from nodegen.models.unet_loader import load_unet_only

        return load_unet_only(path, manager=manager)
    if det.family not in ("sd3", "flux", "chroma"):
        raise ModelKindError(f"{path}: this is {det.describe()}; the diffusion model loader takes SD3 / SD 3.5, "
                             "Flux.1 and Chroma diffusion models (load SD1/SD2/SDXL with CheckpointLoader)")
    prefix = det.details["prefix"]
    if det.layout == "diffusers":
        prefix = "transformer." if det.details["prefix"].startswith("transformer.") else ""
    sd, storage = open_weights(path, weight_dtype, dtype, prefix)
    if storage is None and hasattr(sd, "keep_quantized"):
        sd.keep_quantized = True  # a GGUF file: quantized Linear weights stay quantized (gguf_linear)
    # the dict is handed over (not kept here): the converter pops each tensor as it converts it
    transformer = build_transformer(det.family, _take(sd, prefix), path, dtype, storage, det.layout)
    return DiffusionModel(transformer, det.family, "flow", source=str(path), manager=manager)


# ---- text encoders ------------------------------------------------------------------------------

def _clip_module(sd: dict, role: str, dtype, path, projection: bool = True) -> torch.nn.Module:
    """CLIP-L / CLIP-G weights (transformers keys, with or without ``text_model.``); Flux uses
    CLIP-L's pooled output without the projection."""
    from nodegen.models.clip_text_load import build_text_encoder

    sd = {k if k.startswith(("text_model.", "text_projection")) else "text_model." + k: v for k, v in sd.items()}
    sd = {k: v for k, v in sd.items() if not k.endswith("position_ids")}
    if not projection:
        sd.pop("text_projection.weight", None)
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    cfg = flow_configs.clip_config(shapes, "", role)
    return build_text_encoder(sd, cfg, "text_projection.weight" in sd, dtype, None, f"{role} text encoder", path)


def _t5_module(sd: dict, dtype, path) -> torch.nn.Module:
    """T5-XXL encoder weights (transformers keys; ``shared.weight`` or ``encoder.embed_tokens.weight``)."""
    from accelerate import init_empty_weights
    from transformers import T5Config, T5EncoderModel

    sd = {k.removeprefix("transformer."): v for k, v in sd.items()}
    if "shared.weight" not in sd and "encoder.embed_tokens.weight" in sd:
        sd["shared.weight"] = sd["encoder.embed_tokens.weight"]
    sd.pop("encoder.embed_tokens.weight", None)
    sd = {k: v for k, v in sd.items() if not k.startswith(("decoder.", "lm_head."))}
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    cfg = T5Config(**flow_configs.t5_config(shapes))
    sd = {k: (v.float() if v.dtype in FP8 else v) for k, v in sd.items()}
    with init_empty_weights():
        module = T5EncoderModel(cfg)
    state = _cast(sd, dtype)
    state["encoder.embed_tokens.weight"] = state["shared.weight"]
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise ModelKindError(f"{path}: the T5 weights do not fit the detected architecture: "
                             f"{str(e).splitlines()[0][:300]}") from e
    module.encoder.embed_tokens = module.shared
    return module.eval().requires_grad_(False)


def _tokenizer(role: str):
    if role == "t5":
        from nodegen.models.t5_tokenizer import load_t5_tokenizer

        return load_t5_tokenizer()
    from nodegen.models.clip_tokenizer import ClipTokenizer

    return ClipTokenizer.standard(pad_token="!") if role == "clip_g" else ClipTokenizer.standard()


def _clip_width(sd) -> int:
    k = next(k for k in sd if k.endswith("embeddings.token_embedding.weight"))
    return int(sd[k].shape[1])


def _roles_for(files: list[tuple[Path, dict]], family: str) -> list[str]:
    """The role of each text-encoder file: T5 by its keys; CLIPs in order L then G (ComfyUI's rule
    for DualCLIPLoader / TripleCLIPLoader), a lone CLIP for SD3 is G when 1280 wide."""
    roles: list[str] = []
    clips = [i for i, (_, sd) in enumerate(files) if not any(k.endswith(T5_MARKER) for k in sd)]
    for i, (p, sd) in enumerate(files):
        if any(k.endswith(T5_MARKER) for k in sd):
            roles.append("t5")
        elif not any(k.endswith("embeddings.token_embedding.weight") for k in sd):
            det = detect(sd.shapes() if hasattr(sd, "shapes") else shapes_of(sd))
            raise ModelKindError(f"{p}: this is {det.describe()}, not a CLIP or T5 text encoder")
        elif len(clips) == 1:
            roles.append("clip_g" if family == "sd3" and _clip_width(sd) >= 1280 else "clip_l")
        else:
            roles.append("clip_l" if clips.index(i) == 0 else "clip_g")
    if len(set(roles)) != len(roles):
        raise ModelKindError(f"two of the text encoder files hold the same kind of encoder ({', '.join(roles)})")
    return roles


def _text_class(family: str) -> type[FlowTextEncoder]:
    """The CLIP class of a flow family: Chroma's own (T5 alone, unpadded), else SD3's / Flux's."""
    if family == "chroma":
        from nodegen.models.chroma_text import ChromaTextEncoder

        return ChromaTextEncoder
    return FlowTextEncoder


def load_text_encoders(paths: list[str | os.PathLike], family: str = "auto",
                       manager: ModelManager | None = None) -> FlowTextEncoder:
    """CLIP from separate text-encoder files (transformers key layout, as ComfyUI's
    ``models/text_encoders``). ``family`` "auto": SD3 when a CLIP-G (or three files) is given, else Flux;
    "chroma": one T5-XXL file (:class:`nodegen.models.chroma_text.ChromaTextEncoder`)."""
    torchvision_fix.apply()
    dtype = _target_dtype(manager)
    files = [(Path(p), open_state_dict(p)) for p in paths]
    for _, sd in files:
        if hasattr(sd, "dtype"):
            sd.dtype = dtype  # cast each tensor as it is read: no full copy in the file's dtype
    fam = family
    if fam == "auto":
        n_clip = sum(1 for _, sd in files if not any(k.endswith(T5_MARKER) for k in sd))
        fam = "sd3" if n_clip >= 2 or len(files) >= 3 else "flux"
    roles = _roles_for(files, fam)
    parts = {}
    for (p, sd), role in zip(files, roles, strict=True):
        if role != "t5" and hasattr(sd, "dtype"):
            sd.dtype = None  # CLIPs choose their own dtype (nodegen.models.clip_text_load)
        enc = (_t5_module(dict(sd), dtype, p) if role == "t5"
               else _clip_module(dict(sd), role, dtype, p, projection=fam == "sd3"))
        parts[role] = (_tokenizer(role), enc)
    try:
        return _text_class(fam)(fam, parts, source=";".join(str(p) for p in paths), manager=manager)
    except ValueError as e:
        raise ModelKindError(f"{', '.join(str(p) for p in paths)}: {e}") from e


# ---- checkpoints and folders --------------------------------------------------------------------

class MissingTextEncoder:
    """The CLIP output of a checkpoint that holds no text encoders (SD 3.5's own single files)."""

    def __init__(self, family: str, source: str) -> None:
        self.family = family
        self.source = source
        self.patches: list = []

    def _fail(self, *a, **k):
        raise ValueError(f"{self.source} holds no text encoders: load them with TripleCLIPLoader "
                         f"(SD3: clip_l, clip_g, t5xxl), DualCLIPLoader (Flux: clip_l, t5xxl) or CLIPLoader "
                         f"(Chroma: t5xxl, type 'chroma')")

    encode = encode_parts = set_layer = _fail
    #: nothing for a LoRA to patch (LoraLoader passes it through)
    encoder_names: tuple[str, ...] = ()
    encoders: list = []

    def clone(self):
        return self

    def __repr__(self) -> str:
        return f"MissingTextEncoder({self.family}, {self.source!r})"


def load_vae16(sd: dict, path, dtype) -> VAEModel:
    from diffusers import AutoencoderKL
    from diffusers.loaders import single_file_utils as sfu

    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    cfg = flow_configs.vae16_config(shapes)
    conv = sfu.convert_ldm_vae_checkpoint({"vae." + k: v for k, v in sd.items()}, cfg)
    return VAEModel(_build(AutoencoderKL, cfg, _cast(conv, dtype), "VAE", path), source=str(path))


def load_flow_single_file(path: Path, det: Detected, manager: ModelManager | None = None):
    """``(MODEL, CLIP, VAE)`` of an all-in-one SD3 / Flux / Chroma checkpoint."""
    dtype = _target_dtype(manager)
    sd, storage = open_weights(path, "default", dtype, det.details["prefix"])
    transformer = build_transformer(det.family, _take(sd, det.details["prefix"]), path, dtype, storage)
    model = DiffusionModel(transformer, det.family, "flow", source=str(path), manager=manager)
    if hasattr(sd, "dtype"):
        sd.dtype = dtype  # text encoders and VAE are always cast
    if hasattr(sd, "keep_quantized"):
        sd.keep_quantized = False  # fp8 scaled text encoders are dequantized at load
    parts = {}
    for role in det.details["text"]:
        if hasattr(sd, "dtype"):  # CLIPs choose their own dtype (nodegen.models.clip_text_load)
            sd.dtype = dtype if role == "t5" else None
        t = _take(sd, FLOW_TEXT_PREFIX[role])
        parts[role] = (_tokenizer(role), _t5_module(t, dtype, path) if role == "t5"
                       else _clip_module(t, role, dtype, path, projection=det.family == "sd3"))
    if parts:
        try:
            clip = _text_class(det.family)(det.family, parts, source=str(path), manager=manager)
        except ValueError as e:
            raise ModelKindError(f"{path}: {e}") from e
    else:
        clip = MissingTextEncoder(det.family, str(path))
    if hasattr(sd, "dtype"):
        sd.dtype = dtype
    vprefix = "first_stage_model." if any(k.startswith("first_stage_model.") for k in sd) else "vae."
    vae = load_vae16(_take(sd, vprefix), path, dtype)
    vae.manager = manager
    return model, clip, vae


FOLDER_FAMILIES = {"StableDiffusion3Pipeline": "sd3", "StableDiffusion3Img2ImgPipeline": "sd3",
                   "FluxPipeline": "flux", "FluxImg2ImgPipeline": "flux", "ChromaPipeline": "chroma",
                   "ChromaImg2ImgPipeline": "chroma"}


def folder_family(folder: Path) -> str | None:
    index = json.loads((folder / "model_index.json").read_text("utf-8"))
    return FOLDER_FAMILIES.get(index.get("_class_name", ""))


def load_flow_folder(folder: Path, manager: ModelManager | None = None):
    """``(MODEL, CLIP, VAE)`` of a StableDiffusion3Pipeline / FluxPipeline / ChromaPipeline diffusers folder."""
    torchvision_fix.apply()
    from diffusers import (
        AutoencoderKL,
        ChromaTransformer2DModel,
        FluxTransformer2DModel,
        SD3Transformer2DModel,
    )
    from transformers import T5EncoderModel

    from nodegen.models.clip_text_load import load_folder as load_text_folder

    family = folder_family(folder)
    index = json.loads((folder / "model_index.json").read_text("utf-8"))
    dtype = _target_dtype(manager)
    kw = dict(local_files_only=True, torch_dtype=dtype)
    cls = {"sd3": SD3Transformer2DModel, "chroma": ChromaTransformer2DModel}.get(family, FluxTransformer2DModel)
    transformer = realign_(cls.from_pretrained(folder, subfolder="transformer", **kw)).eval().requires_grad_(False)
    vae = realign_(AutoencoderKL.from_pretrained(folder, subfolder="vae", **kw)).eval().requires_grad_(False)
    comps = {"sd3": (("clip_l", "", True), ("clip_g", "_2", True), ("t5", "_3", None)),
             "flux": (("clip_l", "", False), ("t5", "_2", None)), "chroma": (("t5", "", None),)}[family]
    parts = {}
    for role, suffix, projection in comps:
        entry = index.get("text_encoder" + suffix)
        if not (isinstance(entry, list) and entry[0] is not None):
            continue
        sub = folder / ("text_encoder" + suffix)
        enc = (realign_(T5EncoderModel.from_pretrained(sub, **kw)).eval().requires_grad_(False) if role == "t5"
               else load_text_folder(sub, projection, dtype))
        parts[role] = (_folder_tokenizer(folder, "tokenizer" + suffix, role), enc)
    src = str(folder)
    return (DiffusionModel(transformer, family, "flow", source=src, manager=manager),
            _text_class(family)(family, parts, source=src, manager=manager),
            VAEModel(vae, source=src, manager=manager))


def _folder_tokenizer(folder: Path, sub: str, role: str):
    if role == "t5":
        from transformers import AutoTokenizer

        try:
            return AutoTokenizer.from_pretrained(folder, subfolder=sub, local_files_only=True)
        except (OSError, ValueError):
            return _tokenizer(role)
    from nodegen.models.clip_tokenizer import folder_tokenizer

    return folder_tokenizer(folder / sub, lambda: _tokenizer(role))
