"""Perturbed-Attention Guidance (Ahn et al. 2024, "Self-Rectifying Diffusion Sampling with
Perturbed-Attention Guidance"), as ComfyUI's PerturbedAttentionGuidance node applies it: after CFG,

    denoised = cfg_result + scale * (cond - cond_perturbed)

where ``cond_perturbed`` is the positive prediction again with the self-attention of the UNet's
middle block replaced by the identity (each token attends only to itself: the output is the value
projection). The identity attention follows diffusers' ``PAGIdentitySelfAttnProcessor2_0``
(perturbed path); ComfyUI and diffusers' ``pag_applied_layers=["mid"]`` perturb every self-attention
of the middle block. Flow transformers (SD3, Flux) have no middle block: as in ComfyUI, nothing
changes for them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import torch

log = logging.getLogger(__name__)


class IdentitySelfAttention:
    """An attention processor whose output is ``to_out(to_v(x))``: attention to oneself only."""

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 temb=None, **_kw) -> torch.Tensor:
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        hidden_states = attn.to_out[1](attn.to_out[0](attn.to_v(hidden_states)))
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def middle_self_attentions(unet) -> list:
    """The self-attention modules (``attn1``) of the UNet's middle block (none for transformers)."""
    mid = getattr(unet, "mid_block", None)
    return [block.attn1 for t in getattr(mid, "attentions", None) or () for block in t.transformer_blocks]


@contextmanager
def perturbed_middle(unet) -> Iterator[None]:
    """Within the block, the middle block's self-attentions are identities."""
    layers = middle_self_attentions(unet)
    saved = [layer.processor for layer in layers]
    try:
        for layer in layers:
            layer.set_processor(IdentitySelfAttention())
        yield
    finally:
        for layer, processor in zip(layers, saved, strict=True):
            layer.set_processor(processor)


class PerturbedAttentionGuidance:
    """A ``denoise_hooks`` entry (see :mod:`nodegen.diffusion.denoiser`)."""

    def __init__(self, scale: float) -> None:
        self.scale = float(scale)
        self._warned = False

    def __call__(self, den, x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
        if self.scale == 0:
            return denoised
        if not middle_self_attentions(den.unet):
            if not self._warned:
                log.warning("PerturbedAttentionGuidance: this %s model has no UNet middle block; "
                            "nothing is perturbed (as in ComfyUI)", getattr(den, "family", ""))
                self._warned = True
            return denoised
        with perturbed_middle(den.unet):
            perturbed = den.predict_positive(x, sigma, active_only=True)
        return denoised + (den.last_cond - perturbed) * self.scale
