"""Adaptive Projected Guidance (Sadat, Hilliges & Weber 2024, "Eliminating Oversaturation and
Artifacts of High Guidance Scales in Diffusion Models", arXiv:2410.02416), as ComfyUI's APG node
(comfy_extras/nodes_apg.py) applies it: before CFG, on the denoised (x0) predictions.

Per model call, with ``cond`` / ``uncond`` the two denoised predictions and ``cfg`` the scale:

1. ``g = cond - uncond``;
2. momentum ``m != 0``: a running sum ``avg = m * avg + g`` (the first call of a run: ``avg = g``),
   and ``g = avg`` (negative ``m`` steers away from earlier steps' guidance, as the paper advises);
3. ``norm_threshold > 0``: ``g`` is scaled down to at most that L2 norm (per batch item, over
   channels and pixels);
4. ``g`` is split into the parts parallel and orthogonal to ``cond``: ``g' = g_orth + eta * g_par``;
5. the positive prediction becomes ``uncond + g' + (cond - uncond) / cfg``, so CFG gives
   ``cond + cfg * g'``.

That last step is ComfyUI's (its pre-CFG hook does not quite follow the paper's
``cond + (cfg - 1) * g'``): it equals diffusers' ``AdaptiveProjectedGuidance`` with
``use_original_formulation=True`` and ``guidance_scale = cfg`` (tests/test_guidance_patches.py).

Where no unconditional prediction was made (cfg 1, where the negative is skipped), ComfyUI's
batch gives zeros for it, so ``g = cond``; this does the same and returns ``cond + cfg * g'``
(at the default settings that lengthens ``cond`` by ``norm_threshold`` along itself). At cfg 0
(CFG gives ``uncond``; ComfyUI divides by zero) nothing is changed.

The running sum lives with the sampling run (the :class:`~nodegen.diffusion.denoiser.Denoiser`'s
``run_state``), so a second run of the same MODEL (the cache, the server re-running a graph, a
sweep) starts afresh; within a run it is also reset when sigma goes up (restart samplers), as in
ComfyUI. One difference: ComfyUI's closure outlives a run, so two KSamplerAdvanced nodes that
split one schedule carry the running sum from the first into the second; here each starts anew.
"""

from __future__ import annotations

import torch

DIMS = (-1, -2, -3)  # channels and pixels of one batch item, as ComfyUI


def project(v: torch.Tensor, onto: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``v``'s parts parallel and orthogonal to ``onto`` (per batch item)."""
    unit = torch.nn.functional.normalize(onto, dim=DIMS)
    parallel = (v * unit).sum(dim=DIMS, keepdim=True) * unit
    return parallel, v - parallel


def limit_norm(g: torch.Tensor, threshold: float) -> torch.Tensor:
    """``g`` scaled to an L2 norm of at most ``threshold`` (per batch item); 0: unchanged."""
    if threshold <= 0:
        return g
    norm = g.norm(p=2, dim=DIMS, keepdim=True)
    return g * torch.minimum(torch.ones_like(norm), threshold / norm)


class MomentumState:
    """The running sum of guidance of one sampling run."""

    def __init__(self) -> None:
        self.average: torch.Tensor | None = None
        self.last_sigma: float | None = None

    def update(self, g: torch.Tensor, momentum: float, sigma: float) -> torch.Tensor:
        if self.last_sigma is not None and sigma > self.last_sigma:
            self.average = None  # the schedule went back up: start again, as ComfyUI
        self.last_sigma = sigma
        if momentum == 0:
            return g
        self.average = g if self.average is None else momentum * self.average + g
        return self.average


def projected_guidance(g: torch.Tensor, cond: torch.Tensor, eta: float, norm_threshold: float) -> torch.Tensor:
    """``g'``: the guidance ``g`` (after momentum) limited in norm, its part along ``cond`` scaled by ``eta``."""
    parallel, orthogonal = project(limit_norm(g, norm_threshold), cond)
    return orthogonal + eta * parallel


class AdaptiveProjectedGuidance:
    """A ``pre_cfg_hooks`` entry (see :mod:`nodegen.diffusion.denoiser`)."""

    def __init__(self, eta: float = 1.0, norm_threshold: float = 5.0, momentum: float = 0.0) -> None:
        self.eta = float(eta)
        self.norm_threshold = float(norm_threshold)
        self.momentum = float(momentum)

    def __call__(self, den, x: torch.Tensor, sigma: float, cond: torch.Tensor,
                 uncond: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        cfg = float(den.cfg)
        state = den.run_state.setdefault(self, MomentumState())
        base = torch.zeros_like(cond) if uncond is None else uncond
        g = state.update(cond - base, self.momentum, sigma)
        if cfg == 0:
            return cond, uncond
        g = projected_guidance(g, cond, self.eta, self.norm_threshold)
        if uncond is None:  # no CFG follows: give its result, as ComfyUI's zero uncond does
            return cond + cfg * g, None
        return uncond + g + (cond - uncond) / cfg, uncond
