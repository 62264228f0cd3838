"""The sigma of the step being denoised, for model patches that act only in part of the schedule
(ComfyUI hands its patches ``transformer_options["sigmas"]`` for the same purpose): the denoiser
sets it around each prediction; a patch inside the UNet reads it. None outside a denoiser call."""

from __future__ import annotations

from contextvars import ContextVar

current_sigma: ContextVar[float | None] = ContextVar("nodegen_current_sigma", default=None)

#: Per chunk of the batch of the UNet call being made, whether it is an unconditional (negative)
#: prediction (ComfyUI's ``transformer_options["cond_or_uncond"]``); the denoiser sets it around
#: each call; Self-Attention Guidance reads it. None outside a denoiser call.
batch_layout: ContextVar[tuple[bool, ...] | None] = ContextVar("nodegen_batch_layout", default=None)
