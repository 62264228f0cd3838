"""The sigma of the step being denoised, for model patches that act only in part of the schedule
(ComfyUI hands its patches ``transformer_options["sigmas"]`` for the same purpose): the denoiser
sets it around each prediction; a patch inside the UNet reads it. None outside a denoiser call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

current_sigma: ContextVar[float | None] = ContextVar("nodegen_current_sigma", default=None)

#: Per chunk of the batch of the UNet call being made, whether it is an unconditional (negative)
#: prediction (ComfyUI's ``transformer_options["cond_or_uncond"]``); the denoiser sets it around
#: each call; Self-Attention Guidance reads it. None outside a denoiser call.
batch_layout: ContextVar[tuple[bool, ...] | None] = ContextVar("nodegen_batch_layout", default=None)

#: The generator that model patches drawing random numbers during sampling use (Token Merging,
#: HyperTile). ComfyUI's draw from torch's global generator, which its sampler has just seeded
#: with the noise seed and used for the initial noise; the sampler sets this to a copy of the
#: seed's CPU generator right after the initial noise, which is the same stream (on the CPU). None
#: outside sampling.
patch_generator: ContextVar = ContextVar("nodegen_patch_generator", default=None)


@contextmanager
def setting(var: ContextVar, value) -> Iterator[None]:
    """``var`` holds ``value`` within the block."""
    token = var.set(value)
    try:
        yield
    finally:
        var.reset(token)
