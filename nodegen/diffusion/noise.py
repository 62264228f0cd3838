"""Noise drawn on the CPU from a seed, so a seed gives the same image on every device.

The rule (per batch item):

* One ``torch.Generator("cpu")`` seeded with ``seed`` draws the initial noise of the whole batch
  in **one** ``torch.randn([B, C, h, w])`` call, exactly as diffusers'
  ``randn_tensor(shape, generator=torch.Generator("cpu").manual_seed(seed))`` does. The values come
  out in order, so batch item ``i`` holds draws ``i*C*h*w ... (i+1)*C*h*w - 1`` of that generator:
  item 0 of a batch equals a batch-of-1 run with the same seed, and item ``i`` equals the ``i``-th
  of ``B`` successive per-item draws (torch's CPU normal sampler fills blocks of 16 values; a
  latent item holds ``C*h*w`` values, a multiple of 16 for every latent of 4 channels and even
  size, so the per-item draws line up exactly).
* Samplers that need fresh noise while sampling (ancestral, LCM) continue **the same
  generator** after the initial draw (diffusers' pipelines pass their one generator to the
  scheduler, which draws the step noise from it). With this rule euler_ancestral and
  dpm_2_ancestral reproduce diffusers' ``EulerAncestralDiscreteScheduler`` and
  ``KDPM2AncestralDiscreteScheduler`` with the same seed.
* The SDE samplers (dpmpp_sde, dpmpp_2m_sde, dpmpp_3m_sde and their ``_gpu`` names) instead read
  their step noise from a Brownian tree per batch item seeded ``seed + item index`` (the index
  in ``batch_index`` when the latent has one), as k-diffusion / ComfyUI do; see
  :mod:`nodegen.diffusion.brownian`. dpmpp_sde then reproduces diffusers'
  ``DPMSolverSDEScheduler(noise_sampler_seed=seed)``.
* A latent that carries ``batch_index`` (items taken out of, or repeated from, a bigger batch by
  LatentFromBatch / RepeatLatentBatch) gets, for each item, the noise that item index has in a
  batch of ``max(batch_index) + 1`` items with the same seed (so re-running one item of a batch
  reproduces it).
* The initial noise is drawn even when it is not added (KSamplerAdvanced ``add_noise=False``),
  so the step noise of a seed does not depend on that switch.
"""

from __future__ import annotations

import torch


def make_generator(seed: int) -> torch.Generator:
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in 0 .. 2**64-1, got {seed}")
    return torch.Generator("cpu").manual_seed(seed)


def initial_noise(shape, seed: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal float32 CPU noise of ``shape`` from ``generator`` or a new one for ``seed``."""
    gen = generator if generator is not None else make_generator(seed if seed is not None else 0)
    return torch.randn(tuple(shape), generator=gen, dtype=torch.float32)


def prepare_noise(latent: torch.Tensor, seed: int, batch_index: list[int] | None = None
                  ) -> tuple[torch.Tensor, torch.Generator]:
    """Initial noise shaped like ``latent`` (on the CPU) and the generator to continue from."""
    gen = make_generator(seed)
    if batch_index is None:
        return initial_noise(latent.shape, generator=gen), gen
    idx = [int(i) for i in batch_index]
    if len(idx) != latent.shape[0] or min(idx) < 0:
        raise ValueError(f"batch_index {idx} does not fit a batch of {latent.shape[0]}")
    full = initial_noise((max(idx) + 1, *latent.shape[1:]), generator=gen)
    return full[idx].clone(), gen


class GeneratorNoiseSampler:
    """``noise_sampler(sigma, sigma_next)`` for the samplers: standard normal noise shaped like
    the sample, drawn on the CPU from ``generator`` and moved to the sample's device/dtype."""

    def __init__(self, generator: torch.Generator, shape, device=None, dtype=None):
        self.generator = generator
        self.shape = tuple(shape)
        self.device = device
        self.dtype = dtype

    def __call__(self, sigma=None, sigma_next=None) -> torch.Tensor:
        n = torch.randn(self.shape, generator=self.generator, dtype=torch.float32)
        return n.to(device=self.device, dtype=self.dtype or torch.float32)
