"""IP-Adapter (Ye et al. 2023, "IP-Adapter: Text Compatible Image Prompt Adapter"): image prompts
through extra key/value projections in the UNet's cross-attention layers.

A file (``ip-adapter_sd15.safetensors``, ``ip-adapter-plus_sdxl_vit-h.bin``, ...) holds
``image_proj.*`` (the projection of CLIP-vision features to image tokens: a linear layer for the
base adapter, a perceiver resampler for "plus" and "plus-face", an MLP for "full face") and
``ip_adapter.<n>.to_k_ip / to_v_ip`` per cross-attention layer. The weights are turned into
diffusers' modules by diffusers' own converters (``UNet2DConditionModel``'s IP-Adapter loader),
but instead of loading them into the UNet for good they are installed only while a MODEL that
carries them is in use (:func:`installed`), so the UNet stays shared and unchanged.

Each application has its own image embeddings (positive and negative), weight and active range;
the denoiser sets each step's scales (:func:`set_scales`) and passes the embeddings per batch item
(``added_cond_kwargs["image_embeds"]``), as diffusers' pipelines do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from nodegen.models.files import ModelFileError, load_state_dict


class IPAdapterModel:
    """IPADAPTER: the file's two parts, ``{"image_proj": {...}, "ip_adapter": {...}}``, and the
    CLIP-vision model to encode its images with where a loader chose one (:attr:`clip_vision`)."""

    def __init__(self, state: dict[str, dict[str, torch.Tensor]], source: str = "") -> None:
        self.state = state
        self.source = source
        self.clip_vision = None
        proj = state["image_proj"]
        if "proj.weight" in proj:
            self.variant = "base"
        elif "proj.3.weight" in proj:
            self.variant = "full face"
        elif "latents" in proj:
            self.variant = "plus"
        else:
            self.variant = "other"

    def with_clip_vision(self, clip_vision) -> IPAdapterModel:
        """The same adapter (weights shared) carrying ``clip_vision``."""
        out = IPAdapterModel(self.state, self.source)
        out.clip_vision = clip_vision
        return out

    @property
    def uses_hidden_states(self) -> bool:
        """Plus / full-face adapters read CLIP-vision's penultimate hidden states, base the image embeds."""
        return self.variant != "base"

    @property
    def name(self) -> str:
        return os.path.basename(self.source) or "in-memory IP-Adapter"

    def __repr__(self) -> str:
        return f"IPAdapterModel({self.variant}, {self.name})"


def load_ip_adapter(path: str | os.PathLike) -> IPAdapterModel:
    p = Path(path)
    sd = load_state_dict(p) if p.suffix.lower() in (".safetensors", ".sft") else _pickled(p)
    if "image_proj" in sd and "ip_adapter" in sd and isinstance(sd["image_proj"], dict):
        state = {"image_proj": dict(sd["image_proj"]), "ip_adapter": dict(sd["ip_adapter"])}
    else:
        state = {"image_proj": {}, "ip_adapter": {}}
        for k, v in sd.items():
            head, _, rest = k.partition(".")
            if head in state and isinstance(v, torch.Tensor):
                state[head][rest] = v
    if not state["image_proj"] or not state["ip_adapter"]:
        raise ModelFileError(f"{p}: not an IP-Adapter (expected image_proj.* and ip_adapter.* weights)")
    return IPAdapterModel(state, str(p))


def _pickled(p: Path) -> dict:
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - name the file
        raise ModelFileError(f"{p}: cannot be loaded safely ({type(e).__name__}); pickled files are read with "
                             f"torch.load(weights_only=True) only; convert it to .safetensors") from e
    if not isinstance(obj, dict):
        raise ModelFileError(f"{p}: not an IP-Adapter")
    return obj


@dataclass
class IPApplication:
    """One IPAdapterApply: the adapter, image embeddings (``[1, ...]``) for the positive and the
    negative prompt, weight and range (fractions of the schedule), and the weight type
    (:mod:`nodegen.models.ip_adapter_weights`: how the weight varies over the UNet's blocks)."""

    adapter: IPAdapterModel
    positive: torch.Tensor
    negative: torch.Tensor
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0
    weight_type: str = "linear"

    def scale(self, progress: float) -> float:
        return self.weight if self.start <= progress <= self.end else 0.0

    def block_scale(self, progress: float, index: int, part: str) -> float:
        """The scale at ``progress`` in transformer block ``index`` (run order) of ``part``."""
        if not self.start <= progress <= self.end:
            return 0.0
        if self.weight_type == "linear":
            return self.weight
        from nodegen.models.ip_adapter_weights import layer_weight

        return layer_weight(self.weight_type, self.weight, index, part, self.adapter.state)


@contextmanager
def installed(unet, applications: list[IPApplication]) -> Iterator[None]:
    """Install the IP-Adapter processors and projections on ``unet`` for the block."""
    if not applications:
        yield
        return
    from diffusers.models.embeddings import MultiIPAdapterImageProjection

    before = dict(unet.attn_processors)
    device, dtype = unet.device, unet.dtype
    states = [app.adapter.state for app in applications]
    procs = unet._convert_ip_adapter_attn_to_diffusers(states, low_cpu_mem_usage=False)
    projs = [unet._convert_ip_adapter_image_proj_to_diffusers(s["image_proj"], low_cpu_mem_usage=False)
             for s in states]
    procs = {k: (v.to(device, dtype) if isinstance(v, torch.nn.Module) else v) for k, v in procs.items()}
    old_type = unet.config.encoder_hid_dim_type
    old_proj = unet.encoder_hid_proj
    unet.set_attn_processor(procs)
    unet.encoder_hid_proj = MultiIPAdapterImageProjection(projs).to(device, dtype)
    unet.config.encoder_hid_dim_type = "ip_image_proj"
    try:
        yield
    finally:  # the projection first: a resampler's own attention layers count as the UNet's
        unet.encoder_hid_proj = old_proj
        unet.config.encoder_hid_dim_type = old_type
        unet.set_attn_processor(before)


def set_scales(unet, applications: list[IPApplication], progress: float) -> None:
    from nodegen.models.ip_adapter_weights import transformer_blocks

    processors = unet.attn_processors
    blocks = transformer_blocks(processors)
    for name, proc in processors.items():
        if hasattr(proc, "to_k_ip"):
            index, part = blocks.get(name, (0, "input"))
            proc.scale = [app.block_scale(progress, index, part) for app in applications]


def image_embeds(applications: list[IPApplication], negatives: list[bool], batch: int, device, dtype) -> list:
    """``added_cond_kwargs["image_embeds"]``: per adapter ``[jobs * batch, 1, ...]`` in job order."""
    out = []
    for app in applications:
        parts = []
        for neg in negatives:
            e = (app.negative if neg else app.positive).to(device, dtype)
            parts.append(e.expand(batch, *e.shape[1:]) if e.shape[0] == 1 else e)
        out.append(torch.cat(parts)[:, None])
    return out
