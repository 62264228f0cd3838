"""The CLIP text encoder in plain torch: SD1's CLIP-L, SD2's OpenCLIP-H, SDXL's CLIP-L and
OpenCLIP-bigG (with the text projection), SD3's CLIP-L/G and Flux's CLIP-L.

Why not transformers' ``CLIPTextModel``: importing it pulls ``transformers.modeling_utils`` and with
it ``torch.distributed.tensor``, sympy, scipy and ``torch._dynamo`` (a first image in a fresh
process spends 1.4 s less CPU on imports without it: bench/RESULTS.md). This module computes the
same thing with the same modules, parameter names and outputs, so every state dict, LoRA key,
embedding hook and export written for transformers' classes works unchanged:

* :class:`ClipTextModel` has transformers 5's ``CLIPTextModel`` keys (``embeddings.*``,
  ``encoder.layers.N.*``, ``final_layer_norm.*``, no ``text_model.`` prefix);
  :class:`ClipTextModelWithProjection` holds one as ``text_model`` plus ``text_projection``.
* ``forward(input_ids, output_hidden_states=False)`` returns :class:`ClipTextOutput`:
  ``last_hidden_state`` (after the final layer norm), ``pooler_output`` (the EOS token's),
  ``text_embeds`` (projected, with projection only), ``hidden_states`` (the embeddings and every
  layer's output, not normed) when asked; indexing by position skips missing fields, as
  transformers' ``ModelOutput`` does (``out[0]``: ``last_hidden_state``, or ``text_embeds`` with
  projection).
* The arithmetic follows transformers' (SDPA attention with the causal mask, the same
  activations, the same EOS rule) so outputs are equal to transformers' for the same weights.

Weights may be stored in a narrower dtype than the computation runs in: each layer casts its
weights to the activations' dtype as it runs (ComfyUI's "manual cast" idea). On the CPU the
computation is always float32, so a half-precision file can stay half precision in memory and
still give exactly the outputs of the float32 model (fp16 -> fp32 is exact). Elsewhere the
computation runs in the weights' dtype.

Written after transformers' CLIP (Apache-2.0), whose module and parameter names and arithmetic it
keeps; ComfyUI's ``comfy/clip_model.py`` showed the approach (a plain-torch CLIP text model with the
same names, weights cast per layer); read for reference, not copied.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: ``hidden_act`` values (transformers' names) and their functions.
ACTIVATIONS = {
    "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    "gelu": F.gelu,
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_new": lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0)))),
}


@dataclass
class ClipTextConfig:
    """The fields of transformers' ``CLIPTextConfig`` that the text encoder uses (same names)."""

    vocab_size: int = 49408
    hidden_size: int = 768
    intermediate_size: int = 3072
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    max_position_embeddings: int = 77
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    projection_dim: int = 768
    bos_token_id: int = 49406
    eos_token_id: int = 49407
    pad_token_id: int = 1

    def __post_init__(self) -> None:
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"unsupported CLIP activation {self.hidden_act!r} (expected one of "
                             f"{', '.join(ACTIVATIONS)})")
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"CLIP width {self.hidden_size} is not a multiple of its "
                             f"{self.num_attention_heads} attention heads")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ClipTextConfig:
        """From a ``CLIPTextConfig`` dict or ``config.json`` (unknown keys ignored; a full
        ``CLIPConfig``'s ``text_config`` is taken)."""
        if isinstance(values.get("text_config"), dict):
            values = {**values["text_config"], "projection_dim": values.get("projection_dim",
                                                                              values["text_config"].get("projection_dim"))}
        names = {f.name for f in fields(cls)}
        kw = {k: v for k, v in values.items() if k in names and v is not None}
        if isinstance(kw.get("eos_token_id"), list):
            kw["eos_token_id"] = kw["eos_token_id"][0]
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """A transformers ``CLIPTextConfig`` dict (``config.json`` of a ``text_encoder`` folder)."""
        return {"model_type": "clip_text_model", **asdict(self)}


# ---- layers that cast their weights to the activations' dtype --------------------------------

class Linear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)


class LayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


def compute_dtype_for(weight: torch.Tensor) -> torch.dtype:
    """float32 on the CPU (half precision there is slower and less accurate), else the weights'."""
    return torch.float32 if weight.device.type == "cpu" else weight.dtype


class Embedding(nn.Embedding):
    """A lookup in the stored dtype, cast to the compute dtype (exact: a cast commutes with a gather)."""

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight).to(compute_dtype_for(self.weight))


# ---- the model -------------------------------------------------------------------------------

class ClipTextEmbeddings(nn.Module):
    def __init__(self, config: ClipTextConfig) -> None:
        super().__init__()
        self.token_embedding = Embedding(config.vocab_size, config.hidden_size)
        self.position_embedding = nn.Embedding(config.max_position_embeddings, config.hidden_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        n = input_ids.shape[-1]
        if n > self.position_embedding.num_embeddings:
            raise ValueError(f"{n} tokens, but this CLIP text encoder has "
                             f"{self.position_embedding.num_embeddings} positions")
        tokens = self.token_embedding(input_ids)
        return tokens + self.position_embedding.weight[:n].to(tokens.dtype)


class ClipAttention(nn.Module):
    def __init__(self, config: ClipTextConfig) -> None:
        super().__init__()
        width = config.hidden_size
        self.num_heads = config.num_attention_heads
        self.head_dim = width // self.num_heads
        self.scale = self.head_dim**-0.5
        self.k_proj = Linear(width, width)
        self.v_proj = Linear(width, width)
        self.q_proj = Linear(width, width)
        self.out_proj = Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        heads = (*x.shape[:-1], -1, self.head_dim)
        q = self.q_proj(x).view(heads).transpose(1, 2)
        k = self.k_proj(x).view(heads).transpose(1, 2)
        v = self.v_proj(x).view(heads).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale, is_causal=True)
        out = out.transpose(1, 2).contiguous().reshape(*x.shape[:-1], -1).contiguous()
        return self.out_proj(out)


class ClipMLP(nn.Module):
    def __init__(self, config: ClipTextConfig) -> None:
        super().__init__()
        self.activation = ACTIVATIONS[config.hidden_act]
        self.fc1 = Linear(config.hidden_size, config.intermediate_size)
        self.fc2 = Linear(config.intermediate_size, config.hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation(self.fc1(x)))


class ClipEncoderLayer(nn.Module):
    def __init__(self, config: ClipTextConfig) -> None:
        super().__init__()
        self.self_attn = ClipAttention(config)
        self.layer_norm1 = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = ClipMLP(config)
        self.layer_norm2 = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class ClipEncoder(nn.Module):
    def __init__(self, config: ClipTextConfig) -> None:
        super().__init__()
        self.layers = nn.ModuleList(ClipEncoderLayer(config) for _ in range(config.num_hidden_layers))


class ClipTextOutput:
    """The outputs of a forward, by name or (skipping missing ones) by position."""

    def __init__(self, names: tuple[str, ...], **values: Any) -> None:
        self._names = names
        self.last_hidden_state: torch.Tensor = values["last_hidden_state"]
        self.pooler_output: torch.Tensor | None = values.get("pooler_output")
        self.text_embeds: torch.Tensor | None = values.get("text_embeds")
        self.hidden_states: tuple[torch.Tensor, ...] | None = values.get("hidden_states")

    def to_tuple(self) -> tuple:
        return tuple(v for v in (getattr(self, n) for n in self._names) if v is not None)

    def __getitem__(self, key: int | slice | str):
        return getattr(self, key) if isinstance(key, str) else self.to_tuple()[key]

    def __iter__(self):
        return iter(self.to_tuple())

    def __len__(self) -> int:
        return len(self.to_tuple())


class _TextModule(nn.Module):
    """What both classes share: the config, device/dtype properties, folder I/O."""

    config: ClipTextConfig

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def patch_dtype(self, weight: torch.Tensor) -> torch.dtype:
        """The dtype a patched weight (LoRA, merge) is held in while patched: the compute dtype,
        so patches on half-precision weights kept on the CPU are not rounded to half precision
        (:func:`nodegen.models.patching.patched`)."""
        return compute_dtype_for(weight)

    def save_pretrained(self, folder: str | os.PathLike, safe_serialization: bool = True) -> None:
        """Write a transformers-format folder (``config.json`` + ``model.safetensors``) that
        transformers' ``from_pretrained`` and :func:`nodegen.models.clip_text_load.load_folder` read."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        arch = "CLIPTextModelWithProjection" if isinstance(self, ClipTextModelWithProjection) else "CLIPTextModel"
        cfg = {"architectures": [arch], "torch_dtype": str(self.dtype).removeprefix("torch."), **self.config.to_dict()}
        (folder / "config.json").write_text(json.dumps(cfg, indent=2) + "\n", encoding="utf-8")
        state = {k: v.detach().contiguous() for k, v in self.state_dict().items()}
        save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


class ClipTextModel(_TextModule):
    """transformers' ``CLIPTextModel``: no projection; ``pooler_output`` is the normed EOS token."""

    def __init__(self, config: ClipTextConfig) -> None:
        super().__init__()
        self.config = config
        self.embeddings = ClipTextEmbeddings(config)
        self.encoder = ClipEncoder(config)
        self.final_layer_norm = LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.token_embedding

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False, **_: Any) -> ClipTextOutput:
        if attention_mask is not None and not bool(attention_mask.all()):
            raise ValueError("this CLIP text encoder does not take a padding mask (CLIP text encoders "
                             "attend causally to the whole padded sequence)")
        ids = input_ids.reshape(-1, input_ids.shape[-1])
        x = self.embeddings(ids)
        hidden = [x] if output_hidden_states else None
        for layer in self.encoder.layers:
            x = layer(x)
            if hidden is not None:
                hidden.append(x)
        last = self.final_layer_norm(x)
        return ClipTextOutput(("last_hidden_state", "pooler_output", "hidden_states"), last_hidden_state=last,
                              pooler_output=last[torch.arange(last.shape[0], device=last.device), self._eos_index(ids)],
                              hidden_states=tuple(hidden) if hidden is not None else None)

    def _eos_index(self, ids: torch.Tensor) -> torch.Tensor:
        """transformers' rule: configs from before its fix (``eos_token_id == 2``) take the largest
        id (CLIP's EOS is the last entry of the vocabulary); others the first EOS token."""
        ids = ids.to(torch.int)
        if self.config.eos_token_id == 2:
            return ids.argmax(dim=-1)
        return (ids == self.config.eos_token_id).int().argmax(dim=-1)


class ClipTextModelWithProjection(_TextModule):
    """transformers' ``CLIPTextModelWithProjection``: ``text_embeds`` is the projected pooled output."""

    def __init__(self, config: ClipTextConfig) -> None:
        super().__init__()
        self.config = config
        self.text_model = ClipTextModel(config)
        self.text_projection = Linear(config.hidden_size, config.projection_dim, bias=False)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.text_model.embeddings.token_embedding

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                output_hidden_states: bool = False, **_: Any) -> ClipTextOutput:
        out = self.text_model(input_ids, attention_mask, output_hidden_states)
        return ClipTextOutput(("text_embeds", "last_hidden_state", "hidden_states"),
                              text_embeds=self.text_projection(out.pooler_output),
                              last_hidden_state=out.last_hidden_state, pooler_output=out.pooler_output,
                              hidden_states=out.hidden_states)


# ---- building ---------------------------------------------------------------------------------

def model_class(projection: bool) -> type[_TextModule]:
    return ClipTextModelWithProjection if projection else ClipTextModel


def build(config: ClipTextConfig | dict, projection: bool, state: dict[str, torch.Tensor]) -> _TextModule:
    """The model with ``state``'s tensors as its weights (no random init, no copy): built on the
    meta device, then ``load_state_dict(assign=True)``; strict. Keys with or without the
    ``text_model.`` prefix are accepted (and ``position_ids``, which transformers 4 saved)."""
    cfg = config if isinstance(config, ClipTextConfig) else ClipTextConfig.from_dict(config)
    state = normalize_keys(state, projection)
    with torch.device("meta"):
        module = model_class(projection)(cfg)
    module.load_state_dict(state, strict=True, assign=True)
    return module.eval().requires_grad_(False)


def normalize_keys(state: dict[str, torch.Tensor], projection: bool) -> dict[str, torch.Tensor]:
    """``state`` in this model's key layout: ``text_model.`` prefix added (projection) or removed
    (none), ``position_ids`` dropped; ``text_projection.weight`` dropped without projection."""
    out = {}
    for key, value in state.items():
        if key.endswith("position_ids"):
            continue
        if key.startswith("text_projection"):
            if projection:
                out[key] = value
            continue
        bare = key.removeprefix("text_model.")
        out["text_model." + bare if projection else bare] = value
    return out


def as_transformers(module: nn.Module) -> nn.Module:
    """The same weights in transformers' ``CLIPTextModel`` / ``CLIPTextModelWithProjection`` (for
    diffusers pipelines and other code written for transformers). A transformers model is returned
    as it is. The weights are shared, not copied."""
    if not isinstance(module, _TextModule):
        return module
    from nodegen.compat import torchvision as torchvision_fix

    torchvision_fix.apply()
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    projection = isinstance(module, ClipTextModelWithProjection)
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    with torch.device("meta"):
        out = cls(CLIPTextConfig(**asdict(module.config)))
    state = dict(module.state_dict())
    if not projection and any(k.startswith("text_model.") for k in out.state_dict()):
        state = {"text_model." + k: v for k, v in state.items()}  # transformers 4's layout
    missing, _ = out.load_state_dict(state, strict=False, assign=True)
    if [k for k in missing if not k.endswith("position_ids")]:
        raise ValueError(f"transformers' {cls.__name__} wants weights this model lacks: {missing[:5]}")
    for m in out.modules():  # the buffers transformers does not save
        if hasattr(m, "position_ids") and m.position_ids.is_meta:
            m.position_ids = torch.arange(m.position_ids.shape[-1], device=module.device).expand((1, -1))
    return out.to(module.dtype).eval().requires_grad_(False)
