"""A LoRA extracted from a weight difference, by the rule of ComfyUI's LoraSave node ("Extract and
Save Lora", ``comfy_extras/nodes_lora_extract.py``).

The inputs are a MODEL and/or a CLIP whose weights, patches applied, *are* a difference, as
ModelMergeSubtract / CLIPMergeSubtract make them (``multiplier * (model1 - model2)``). Each weight
``D`` (as used: :func:`nodegen.models.merge.effective_weight`) becomes:

* ``standard``, a weight of 2 or more dimensions: two factors from the singular value
  decomposition ``U S Vh`` of ``D`` (a convolution's flattened to ``[out, in * kh * kw]``):
  ``up = U[:, :r] * S[:r]`` and ``down = Vh[:r]``, with ``r = min(rank, out, in)`` where ``out``
  and ``in`` are the weight's first two sizes (a 3x3 convolution is capped by its channel counts,
  as in ComfyUI), both clamped to ``[-q, q]``, ``q`` the 0.99 quantile of their values together. A
  convolution's factors are shaped ``[out, r, 1, 1]`` and ``[r, in, kh, kw]``. A 1-D weight (a norm)
  is stored whole (``.diff``) when ``bias_diff`` is on, else left out;
* ``full_diff``: every weight stored whole (``<module>.diff``);
* ``bias_diff``: every bias stored whole (``<module>.diff_b``).

Keys are ComfyUI's: ``diffusion_model.<original (LDM) UNet name>`` and
``text_encoders.clip_<l|h|g>.transformer.<transformers name>``, then ``.lora_up.weight`` /
``.lora_down.weight`` (no alpha: scale 1), ``.diff`` or ``.diff_b``; tensors float16, as ComfyUI
writes them. ComfyUI and :mod:`nodegen.models.lora` read these files.

Where this differs from ComfyUI's code, the result does not: the reduced SVD gives the same
leading ``r`` singular vectors (ComfyUI computes the full one, whose ``U`` is ``out x out``: 9.8 GB
for CLIP's token embedding); a quantile of more than 2**24 values, which ``torch.quantile``
refuses (ComfyUI then skips the weight with a warning), is computed by selection with the same
interpolation; a 1x1 convolution is reshaped, not squeezed. ``comfyui_limits=False`` (not a node
input) drops the clamp and caps the rank by the flattened matrix only: a full-rank extraction is
then lossless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from nodegen.models.merge import effective_weight

#: ComfyUI's ``CLAMP_QUANTILE``.
CLAMP_QUANTILE = 0.99
LORA_TYPES = ("standard", "full_diff")
#: ComfyUI's bounds of the ``rank`` input.
MIN_RANK, MAX_RANK = 1, 4096
#: What ``torch.quantile`` accepts.
_QUANTILE_LIMIT = 2 ** 24
#: Each text encoder's ComfyUI name, per family and nodegen encoder name.
CLIP_NAMES = {
    "sd1": {"text_encoder": "clip_l"},
    "sd2": {"text_encoder": "clip_h"},
    "sdxl": {"text_encoder": "clip_l", "text_encoder_2": "clip_g"},
    "sdxl_refiner": {"text_encoder_2": "clip_g"},
}
_UNET_FAMILIES = ("sd1", "sd2", "sdxl", "sdxl_refiner")

log = logging.getLogger(__name__)


class ExtractError(ValueError):
    """A MODEL or CLIP this extraction cannot turn into a LoRA; ``what`` names the input."""

    def __init__(self, what: str, message: str) -> None:
        super().__init__(message)
        self.what = what


@dataclass
class ExtractedLora:
    state_dict: dict[str, torch.Tensor] = field(default_factory=dict)
    #: weights whose factors could not be computed (ComfyUI warns and leaves them out too)
    skipped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Weight:
    module: str  # ComfyUI's module name (with its prefix), e.g. diffusion_model.input_blocks.1.1.proj_in
    leaf: str  # "weight" or "bias"
    patch_key: str  # the weight's key in the object's patch dicts
    owner: object  # the DiffusionModel or TextEncoder holding it


def quantile(values: torch.Tensor, q: float) -> torch.Tensor:
    """``torch.quantile(values, q)`` (linear interpolation) for 1-D ``values`` of any size."""
    if values.numel() <= _QUANTILE_LIMIT:
        return torch.quantile(values, q)
    # torch.quantile's arithmetic: the rank in the values' dtype, the two neighbours, lerp
    rank = torch.tensor(q, dtype=values.dtype, device=values.device) * (values.numel() - 1)
    below, above = int(rank), int(torch.ceil(rank))
    lower = torch.kthvalue(values, below + 1).values
    upper = torch.kthvalue(values, above + 1).values
    return torch.lerp(lower, upper, rank - below)


def low_rank_factors(diff: torch.Tensor, rank: int, *,
                     comfyui_limits: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """``(up, down)`` with ``up @ down`` the rank-``rank`` approximation of ``diff`` (float32),
    by ComfyUI's rule (see the module doc)."""
    out_dim, in_dim = diff.shape[0], diff.shape[1]
    matrix = diff.float().reshape(out_dim, -1)
    cap = min(out_dim, in_dim) if comfyui_limits else min(matrix.shape)
    rank = min(rank, cap)
    u, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    up = u[:, :rank] @ torch.diag(s[:rank])
    down = vh[:rank, :]
    if comfyui_limits:
        hi = quantile(torch.cat([up.flatten(), down.flatten()]), CLAMP_QUANTILE)
        up, down = up.clamp(-hi, hi), down.clamp(-hi, hi)
    if diff.ndim > 2:
        up = up.reshape(out_dim, rank, *([1] * (diff.ndim - 2)))
        down = down.reshape(rank, *diff.shape[1:])
    return up, down


def _model_weights(model) -> list[_Weight]:
    family = getattr(model, "family", None)
    if not hasattr(model, "unet") or family not in _UNET_FAMILIES:
        raise ExtractError("model_diff", f"extracting a LoRA from a {family or type(model).__name__} model is not "
                                         "supported yet (SD1.x, SD2 and SDXL models are)")
    from nodegen.models.ldm_export import unet_to_ldm

    config = dict(model.unet.config)
    out = []
    for name, _p in model.unet.named_parameters():
        owner, _, leaf = name.rpartition(".")
        if leaf not in ("weight", "bias"):
            continue
        try:
            ldm = next(iter(unet_to_ldm({owner + ".weight": torch.empty(0)}, config, prefix="")))
        except (KeyError, ValueError, IndexError) as e:
            raise ExtractError("model_diff", f"the UNet weight {name!r} has no original (LDM) name: {e}") from None
        out.append(_Weight("diffusion_model." + ldm[: -len(".weight")], leaf, name, model))
    return out


def _transformers_name(name: str) -> str:
    """A text-encoder parameter name as transformers' files (and ComfyUI) spell it: everything
    but the projection under ``text_model.`` (transformers 5 modules name it without)."""
    return name if name.startswith(("text_model.", "text_projection.")) else "text_model." + name


def _clip_weights(clip) -> list[_Weight]:
    family = getattr(clip, "family", None)
    names = CLIP_NAMES.get(family) if getattr(clip, "roles", None) is None else None
    if names is None or not hasattr(clip, "encoders"):
        raise ExtractError("text_encoder_diff", f"extracting a LoRA from a {family or type(clip).__name__} text "
                                                "encoder is not supported yet (SD1.x, SD2 and SDXL ones are)")
    out = []
    for comp, enc in zip(clip.encoder_names, clip.encoders, strict=True):
        prefix = f"text_encoders.{names[comp]}.transformer."
        for name, _p in enc.named_parameters():
            owner, _, leaf = _transformers_name(name).rpartition(".")
            if leaf in ("weight", "bias"):
                out.append(_Weight(prefix + owner, leaf, f"{comp}.{name}", clip))
    return out


def _entries(w: _Weight, diff: torch.Tensor, rank: int, lora_type: str, bias_diff: bool,
             comfyui_limits: bool) -> Iterator[tuple[str, torch.Tensor]]:
    """The file entries for one weight's difference (ComfyUI's ``calc_lora_model`` rule)."""
    if w.leaf == "bias":
        if bias_diff:
            yield f"{w.module}.diff_b", diff
        return
    if lora_type == "full_diff":
        yield f"{w.module}.diff", diff
    elif diff.ndim < 2:
        if bias_diff:
            yield f"{w.module}.diff", diff
    else:
        up, down = low_rank_factors(diff, rank, comfyui_limits=comfyui_limits)
        yield f"{w.module}.lora_up.weight", up
        yield f"{w.module}.lora_down.weight", down


def extract_lora(model_diff=None, clip_diff=None, *, rank: int = 8, lora_type: str = "standard",
                 bias_diff: bool = True, device: torch.device | str = "cpu", comfyui_limits: bool = True,
                 step: Callable[[int, int], None] | None = None) -> ExtractedLora:
    """The LoRA state dict of ``model_diff`` (a DiffusionModel) and/or ``clip_diff`` (a
    TextEncoder), computed on ``device`` one weight at a time; ``step(done, total)`` after each."""
    if lora_type not in LORA_TYPES:
        raise ExtractError("lora_type", f"unknown LoRA type {lora_type!r}; expected one of {', '.join(LORA_TYPES)}")
    if not MIN_RANK <= int(rank) <= MAX_RANK:
        raise ExtractError("rank", f"rank {rank} is out of range ({MIN_RANK} .. {MAX_RANK})")
    weights = (_model_weights(model_diff) if model_diff is not None else []) + \
        (_clip_weights(clip_diff) if clip_diff is not None else [])
    out = ExtractedLora()
    with torch.no_grad():
        for i, w in enumerate(weights):
            diff = effective_weight(w.owner, w.patch_key, torch.device(device))
            try:
                for key, t in _entries(w, diff, int(rank), lora_type, bool(bias_diff), comfyui_limits):
                    out.state_dict[key] = t.contiguous().to("cpu", torch.float16)
            except RuntimeError as e:  # e.g. an SVD that does not converge (NaN in the difference)
                log.warning("could not compute LoRA factors for %s (%s); it is left out", w.module, e)
                out.skipped.append(w.module)
            if step is not None:
                step(i + 1, len(weights))
    return out
