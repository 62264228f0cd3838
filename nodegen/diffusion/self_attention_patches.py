"""Patches of a UNet's self-attentions (``attn1``), in the order the nodes added them: ComfyUI's
``attn1_patch`` / ``attn1_output_patch`` pairs (comfy/ldm/modules/attention.py,
``BasicTransformerBlock``), used by Token Merging (:mod:`nodegen.diffusion.token_merging`) and
HyperTile (:mod:`nodegen.diffusion.hypertile`).

Each patch has ``before(q, kv, latent_hw, generator) -> (q, kv, after)``: ``q`` is the input of the
query projection, ``kv`` that of the key and value projections (both the block's normed hidden
states at first), ``latent_hw`` the latent's size (ComfyUI's ``original_shape``) and ``after`` None
or a function applied to the attention's output (after ``to_out``), in the order of the patches.
When the queries' batch is larger than that of ``kv`` (HyperTile), ``kv`` is split into as many
runs of consecutive tokens, as ComfyUI's attention functions do.

Patches are installed for a run of the patched MODEL only (:meth:`DiffusionModel.use`) and the
processors are restored after. Flow transformers (SD3, Flux) have no such self-attentions; as in
ComfyUI, nothing changes for them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch

from nodegen.diffusion.step_context import patch_generator

log = logging.getLogger(__name__)


class _Run:
    """What the patched attentions of one run share: the latent's size and the generator."""

    def __init__(self, generator: torch.Generator) -> None:
        self.generator = generator
        self.latent_hw: tuple[int, int] | None = None

    def see_input(self, module, args, kwargs) -> None:
        sample = args[0] if args else kwargs.get("sample")
        if torch.is_tensor(sample) and sample.ndim == 4:
            self.latent_hw = (int(sample.shape[-2]), int(sample.shape[-1]))


class PatchedSelfAttention:
    """An attention processor running ``patches`` around ``inner``."""

    def __init__(self, inner, patches: list, run: _Run) -> None:
        self.inner = inner
        self.patches = patches
        self.run = run

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 temb=None, **kwargs) -> torch.Tensor:
        if encoder_hidden_states is not None or hidden_states.ndim != 3 or self.run.latent_hw is None:
            return self.inner(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                              attention_mask=attention_mask, temb=temb, **kwargs)
        q, kv, afters = hidden_states, hidden_states, []
        for patch in self.patches:
            q, kv, after = patch.before(q, kv, self.run.latent_hw, self.run.generator)
            if after is not None:
                afters.append(after)
        if not afters:
            return self.inner(attn, hidden_states, attention_mask=attention_mask, temb=temb, **kwargs)
        if q.shape[0] != kv.shape[0]:
            kv = kv.reshape(q.shape[0], -1, kv.shape[-1])
        out = self.inner(attn, q, encoder_hidden_states=kv, attention_mask=attention_mask, temb=temb, **kwargs)
        for after in afters:
            out = after(out)
        return out


def self_attentions(unet) -> list:
    """The ``attn1`` of every transformer block of a UNet (none for flow transformers)."""
    blocks = [*getattr(unet, "down_blocks", ()), getattr(unet, "mid_block", None), *getattr(unet, "up_blocks", ())]
    return [tb.attn1 for block in blocks for t in getattr(block, "attentions", None) or ()
            for tb in getattr(t, "transformer_blocks", ())]


@contextmanager
def installed(unet, patches: list | None) -> Iterator[None]:
    """Within the block, ``unet``'s self-attentions run ``patches`` (the MODEL's
    ``self_attention_patches`` option); the processors are restored after."""
    layers = self_attentions(unet) if patches else []
    if not layers:
        if patches:
            log.warning("%s: this model has no UNet self-attention blocks; nothing changes (as in ComfyUI)",
                        ", ".join(type(p).__name__ for p in patches))
        yield
        return
    run = _Run(patch_generator.get() or torch.Generator().manual_seed(0))
    saved = [layer.processor for layer in layers]
    hook = unet.register_forward_pre_hook(run.see_input, with_kwargs=True)
    try:
        for layer, processor in zip(layers, saved, strict=True):
            layer.set_processor(PatchedSelfAttention(processor, list(patches or ()), run))
        yield
    finally:
        hook.remove()
        for layer, processor in zip(layers, saved, strict=True):
            layer.set_processor(processor)
