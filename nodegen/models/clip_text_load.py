"""CLIP text encoders (:mod:`nodegen.models.clip_text_model`) from checkpoint tensors and
diffusers folders, for every loader (SD1/SD2/SDXL single files and folders, SD3/Flux text encoder
files and checkpoints).

* Key layouts: transformers' (LDM checkpoints hold it under ``cond_stage_model.transformer.``;
  text encoder files and folders bare or with ``text_model.``) and OpenCLIP's
  (``transformer.resblocks.N.*`` with fused ``in_proj`` attention, ``text_projection`` transposed),
  converted to transformers' names.
* Dtype: on the CPU the weights stay in the file's dtype when it is fp16, bf16 or fp32 (the model
  computes in float32 there whatever it stores, so the outputs equal those of weights upcast at
  load, at half the memory for a half-precision file); the module is then marked so the model
  manager moves it between devices without converting it (``_nodegen_keep_dtype``). On a GPU they
  are cast to the compute dtype the loader asks for (fp16 by default), as every other model.
  ``bench/text_encoder_dtype.py`` measured why the CPU does not compute in half precision:
  fp16 was no faster, bf16 2.9x faster but its error was 6 % of the output's standard deviation.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch

from nodegen.models import clip_text_model as ctm
from nodegen.models.detect import ModelKindError
from nodegen.models.files import file_dtype
from nodegen.models.module_build import _cast

#: Dtypes kept as they are on the CPU (the model computes in float32 from any of them, exactly).
KEPT_ON_CPU = (torch.float16, torch.bfloat16, torch.float32)
#: OpenCLIP residual block names -> transformers' encoder layer names.
_OPEN_CLIP_BLOCK = {"ln_1": "layer_norm1", "ln_2": "layer_norm2", "mlp.c_fc": "mlp.fc1", "mlp.c_proj": "mlp.fc2",
                    "attn.out_proj": "self_attn.out_proj"}
#: OpenCLIP top-level tensors -> transformers' (under ``text_model.``).
_OPEN_CLIP_TOP = {"token_embedding.weight": "embeddings.token_embedding.weight",
                  "positional_embedding": "embeddings.position_embedding.weight",
                  "ln_final.weight": "final_layer_norm.weight", "ln_final.bias": "final_layer_norm.bias"}
#: OpenCLIP tensors that are not text-encoder weights (the CLIP loss scale, the causal mask buffer).
_OPEN_CLIP_IGNORED = ("logit_scale", "attn_mask")


def storage_dtype(state: dict[str, torch.Tensor], dtype: torch.dtype, device: torch.device | None) -> torch.dtype:
    """The dtype the weights are kept in: the file's on the CPU (see the module doc), else ``dtype``."""
    on_cpu = device is None or device.type == "cpu"
    found = file_dtype(state)
    return found if on_cpu and dtype == torch.float32 and found in KEPT_ON_CPU else dtype


def from_open_clip(sd: dict[str, torch.Tensor], prefix: str, layers: int, projection: bool) -> dict[str, torch.Tensor]:
    """OpenCLIP text tower tensors under ``prefix`` -> transformers keys (``text_model.*``,
    ``text_projection.weight``), the first ``layers`` residual blocks (SD2 files hold one more than
    SD2 uses). Unknown tensors are kept under their own names, so a strict load names them."""
    block = re.compile(re.escape(prefix) + r"transformer\.resblocks\.(\d+)\.(.+)")
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):]
        if name in _OPEN_CLIP_TOP:
            out["text_model." + _OPEN_CLIP_TOP[name]] = value
        elif name == "text_projection":
            if projection:
                out["text_projection.weight"] = value.T.contiguous()
        elif (m := block.fullmatch(key)) is not None:
            i, rest = int(m.group(1)), m.group(2)
            if i < layers:
                out.update(_open_clip_block(f"text_model.encoder.layers.{i}.", rest, value))
        elif name not in _OPEN_CLIP_IGNORED:
            out[name] = value
    return out


def _open_clip_block(base: str, rest: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    if rest.startswith("attn.in_proj_"):
        kind = rest.rsplit("_", 1)[1]  # weight / bias
        # copies, not views: q/k/v must not share memory (safetensors refuses shared tensors)
        return {f"{base}self_attn.{p}_proj.{kind}": part.clone()
                for p, part in zip("qkv", value.chunk(3, dim=0), strict=True)}
    module, _, leaf = rest.rpartition(".")
    if module in _OPEN_CLIP_BLOCK:
        return {f"{base}{_OPEN_CLIP_BLOCK[module]}.{leaf}": value}
    return {base + rest: value}


def build_text_encoder(state: dict[str, torch.Tensor], config: dict | ctm.ClipTextConfig, projection: bool,
                       dtype: torch.dtype, device: torch.device | None, what: str, path) -> torch.nn.Module:
    """The text encoder from transformers-layout tensors (with or without ``text_model.``), kept in
    :func:`storage_dtype`, on ``device`` (default the CPU). A ModelKindError names ``path`` when the
    tensors do not fit ``config``."""
    keep = storage_dtype(state, dtype, device)
    state = _cast(state, keep, device)
    try:
        module = ctm.build(config, projection, state)
    except (RuntimeError, ValueError) as e:
        raise ModelKindError(f"{path}: the {what} weights do not fit the detected architecture: "
                             f"{str(e).splitlines()[0][:300]}") from e
    if keep != dtype:
        module._nodegen_keep_dtype = True  # the manager must not upcast it (it computes in float32)
    return module


def load_folder(folder: str | os.PathLike, projection: bool, dtype: torch.dtype,
                device: torch.device | None = None) -> torch.nn.Module:
    """A diffusers ``text_encoder`` folder: transformers' ``config.json`` and ``model.safetensors``
    (also the ``.fp16`` variant, or a sharded / pickled ``.bin``, read through transformers)."""
    import json

    from nodegen.models.files import load_state_dict

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text("utf-8"))
    for name in ("model.safetensors", "model.fp16.safetensors", "pytorch_model.bin", "pytorch_model.fp16.bin"):
        if (folder / name).is_file():
            state = load_state_dict(folder / name)
            return build_text_encoder(state, config, projection, dtype, device, "text encoder", folder / name)
    return _load_with_transformers(folder, projection, dtype)


def _load_with_transformers(folder: Path, projection: bool, dtype: torch.dtype) -> torch.nn.Module:
    """Layouts this module does not read itself (sharded weights): transformers' loader, then the
    same weights in nodegen's model."""
    from nodegen.compat import torchvision as torchvision_fix

    torchvision_fix.apply()
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    ref = cls.from_pretrained(folder, local_files_only=True, torch_dtype=dtype)
    config = ref.config.to_dict()
    return build_text_encoder({k: v.detach() for k, v in ref.state_dict().items()}, config, projection, dtype,
                              None, "text encoder", folder)
