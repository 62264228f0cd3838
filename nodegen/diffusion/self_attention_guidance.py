"""Self-Attention Guidance (Hong et al. 2023, "Improving Sample Quality of Diffusion Models Using
Self-Attention Guidance", ICCV; arXiv:2210.00939), as ComfyUI's SelfAttentionGuidance node
(comfy_extras/nodes_sag.py) applies it after CFG.

Per step:

1. the unconditional prediction's self-attention map is kept from the step's own model call: the
   first self-attention (``attn1``) of the UNet's middle block, softmax probabilities
   ``[batch * heads, tokens, tokens]`` of the first unconditional chunk of the batch;
2. the mask: averaged over heads, summed over the queries (how much attention each token
   receives), ``> 1.0``, shaped to the middle block's grid (ComfyUI's size rule), scaled up to the
   latent (nearest);
3. ``degraded``: the unconditional denoised prediction ``x0`` blurred (9x9 Gaussian, ``blur_sigma``,
   reflected borders) where the mask is set, ``x0`` elsewhere;
4. one more model call: the negative conditioning on ``degraded + (x - x0)`` (the blurred image
   noised again with the unconditional prediction's own noise);
5. ``denoised = cfg_result + scale * (degraded - sag)`` with ``sag`` that call's denoised output.

In noise terms this is the paper's ``eps_cfg + s * (eps_uncond - eps_degraded)``: diffusers'
StableDiffusionSAGPipeline computes the same with its fixed ``sigma=1.0`` blur (and a VP-space
``add_noise``, the same re-noising on DDIM's timesteps).

As in ComfyUI: the attention of a step's calls that hold an unconditional chunk is kept (the last
such call wins); at cfg 1 the unconditional prediction is still made (ComfyUI's
``disable_cfg1_optimization``; here the hook makes it itself, with the attention kept); latents of
side 4 or less are left alone (too small for the blur's reflected borders). Where nodegen differs:
``blur_sigma = 0`` leaves ``x0`` unblurred (ComfyUI's kernel is NaN there). Flow transformers (SD3,
Flux) have no middle-block self-attention: ComfyUI fails on them; the node refuses them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from nodegen.diffusion.step_context import batch_layout

KERNEL_SIZE = 9
THRESHOLD = 1.0


# -- the rule on tensors -------------------------------------------------------------------------------
def gaussian_blur_2d(img: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """A separable Gaussian blur of ``[B,C,H,W]`` with reflected borders (ComfyUI's and diffusers'
    ``gaussian_blur_2d``); ``sigma <= 0``: ``img`` as it is."""
    if sigma <= 0:
        return img
    half = (kernel_size - 1) * 0.5
    pdf = torch.exp(-0.5 * (torch.linspace(-half, half, steps=kernel_size) / sigma).pow(2))
    kernel = (pdf / pdf.sum()).to(device=img.device, dtype=img.dtype)
    kernel2d = torch.mm(kernel[:, None], kernel[None, :]).expand(img.shape[-3], 1, kernel_size, kernel_size)
    pad = kernel_size // 2
    return F.conv2d(F.pad(img, [pad] * 4, mode="reflect"), kernel2d, groups=img.shape[-3])


def middle_grid(latent_h: int, latent_w: int, tokens: int) -> tuple[int, int]:
    """The middle block's grid for ``tokens`` on a latent (ComfyUI's rule: the downscale is the
    power of two the token count implies, sides rounded up)."""
    ratio = 2 ** (math.ceil(math.sqrt(latent_h * latent_w / tokens)) - 1).bit_length()
    return math.ceil(latent_h / ratio), math.ceil(latent_w / ratio)


def attention_mask(attn: torch.Tensor, latent_h: int, latent_w: int, batch: int,
                   threshold: float = THRESHOLD) -> torch.Tensor:
    """``[batch, 1, latent_h, latent_w]``: 1 where a token of the attention map ``attn``
    (``[batch * heads, tokens, tokens]``) receives more than ``threshold`` attention on average over
    the heads, scaled up (nearest) from the middle block's grid."""
    _, queries, keys = attn.shape
    grid = middle_grid(latent_h, latent_w, queries)
    if grid[0] * grid[1] != keys:
        raise ValueError(f"SelfAttentionGuidance: the attention map has {keys} tokens, which is no grid of "
                         f"the {latent_h}x{latent_w} latent; the negative conditioning must cover the whole "
                         "latent")
    received = attn.float().reshape(batch, -1, queries, keys).mean(1).sum(1)
    mask = (received > threshold).reshape(batch, 1, *grid).to(attn.dtype)
    return F.interpolate(mask, (latent_h, latent_w))


def degrade(x0: torch.Tensor, attn: torch.Tensor, blur_sigma: float,
            threshold: float = THRESHOLD) -> torch.Tensor:
    """``x0`` blurred where the attention mask is set (ComfyUI's ``create_blur_map``)."""
    b, _, h, w = x0.shape
    mask = attention_mask(attn, h, w, b, threshold).to(x0)
    return gaussian_blur_2d(x0, KERNEL_SIZE, blur_sigma) * mask + x0 * (1 - mask)


# -- keeping the attention map ---------------------------------------------------------------------
def attention_with_probs(attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                         temb=None) -> tuple[torch.Tensor, torch.Tensor]:
    """diffusers' plain ``AttnProcessor`` computation, also returning the attention probabilities
    ``[batch * heads, queries, keys]`` (batch-major, as ComfyUI's ``attention_basic_with_sim``)."""
    residual = hidden_states
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    input_ndim = hidden_states.ndim
    if input_ndim == 4:
        batch, channel, height, width = hidden_states.shape
        hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
    batch_size, sequence_length, _ = (hidden_states.shape if encoder_hidden_states is None
                                      else encoder_hidden_states.shape)
    attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    query = attn.to_q(hidden_states)
    if encoder_hidden_states is None:
        encoder_hidden_states = hidden_states
    elif attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    key, value = attn.to_k(encoder_hidden_states), attn.to_v(encoder_hidden_states)
    query, key, value = (attn.head_to_batch_dim(t) for t in (query, key, value))
    probs = attn.get_attention_scores(query, key, attention_mask)
    hidden_states = attn.batch_to_head_dim(torch.bmm(probs, value))
    hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
    if input_ndim == 4:
        hidden_states = hidden_states.transpose(-1, -2).reshape(batch, channel, height, width)
    if attn.residual_connection:
        hidden_states = hidden_states + residual
    return hidden_states / attn.rescale_output_factor, probs


class AttentionRecorder:
    """An attention processor that keeps the probabilities of the first unconditional chunk of
    each call whose batch holds one (see :data:`nodegen.diffusion.step_context.batch_layout`), or of
    the first chunk of every call while ``force`` is set; other calls go to ``inner``."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.probs: torch.Tensor | None = None
        self.force = False

    def __call__(self, attn, hidden_states: torch.Tensor, encoder_hidden_states=None, attention_mask=None,
                 temb=None, **kwargs) -> torch.Tensor:
        layout = batch_layout.get() or (False,)
        if not self.force and True not in layout:
            return self.inner(attn, hidden_states, encoder_hidden_states=encoder_hidden_states,
                              attention_mask=attention_mask, temb=temb, **kwargs)
        out, probs = attention_with_probs(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
        index = 0 if self.force else layout.index(True)
        size = probs.shape[0] // len(layout)
        self.probs = probs[size * index : size * (index + 1)]
        return out


def recorded_layer(unet):
    """The self-attention whose map SAG uses: the middle block's first (ComfyUI's ``("middle", 0, 0)``
    attn1 replacement, diffusers' ``mid_block.attentions[0].transformer_blocks[0].attn1``); None
    where the model has none."""
    attentions = getattr(getattr(unet, "mid_block", None), "attentions", None)
    if not attentions or not getattr(attentions[0], "transformer_blocks", None):
        return None
    return attentions[0].transformer_blocks[0].attn1


@contextmanager
def installed(unet, guidances: list | None) -> Iterator[None]:
    """Within the block, ``unet``'s middle self-attention keeps its maps (when one of ``guidances``,
    the MODEL's ``self_attention_guidance`` option, acts: scale not 0); the processor is restored
    after."""
    layer = recorded_layer(unet) if any(g.scale != 0 for g in guidances or ()) else None
    if layer is None:
        yield
        return
    saved = layer.processor
    layer.set_processor(AttentionRecorder(saved))
    try:
        yield
    finally:
        layer.set_processor(saved)


# -- the hook -------------------------------------------------------------------------------------------
class SelfAttentionGuidance:
    """A ``denoise_hooks`` entry (see :mod:`nodegen.diffusion.denoiser`); needs the MODEL's
    ``self_attention_guidance`` option to hold it (so the model call keeps the attention map)."""

    def __init__(self, scale: float, blur_sigma: float) -> None:
        self.scale = float(scale)
        self.blur_sigma = float(blur_sigma)

    def __call__(self, den, x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
        if self.scale == 0 or min(denoised.shape[2:]) <= 4:
            return denoised
        layer = recorded_layer(den.unet)
        recorder = getattr(layer, "processor", None)
        if not isinstance(recorder, AttentionRecorder):
            raise ValueError("SelfAttentionGuidance: the model's middle-block self-attention is not recorded "
                             "(the MODEL lacks its 'self_attention_guidance' option)")
        uncond = den.last_uncond
        if not den.ran_uncond:  # cfg 1: make the unconditional prediction, as ComfyUI does for SAG
            if not den.negative:
                raise ValueError("SelfAttentionGuidance: the sampler gives no negative conditioning; SAG blurs "
                                 "the unconditional prediction (use a sampler or guider with one)")
            recorder.force = True
            try:
                uncond = den.predict(den.negative, x, sigma, active_only=True)
            finally:
                recorder.force = False
        if recorder.probs is None:
            return denoised
        degraded = degrade(uncond, recorder.probs, self.blur_sigma)
        sag = den.predict(den.negative, degraded + x - uncond, sigma, active_only=True)
        return denoised + (degraded - sag) * self.scale
