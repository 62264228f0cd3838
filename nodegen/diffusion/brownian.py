"""Brownian-tree noise for the SDE samplers (dpmpp_sde, dpmpp_2m_sde, dpmpp_3m_sde).

k-diffusion and ComfyUI draw the step noise of their SDE samplers from one Brownian motion
``W(t)`` over the whole sigma range (``torchsde.BrownianTree``), not from fresh Gaussian draws.
The noise for a step from ``sigma`` to ``sigma_next`` is the increment
``W(sigma_next) - W(sigma)`` normalised to unit variance::

    noise(sigma, sigma_next) = (W(sigma_next) - W(sigma)) / sqrt(|sigma_next - sigma|)

Because every step reads the *same* path, the noise a sampler accumulates over an interval of
sigmas does not depend on how finely the interval is cut into steps, so a seed gives nearly the
same image at 20 and at 40 steps (with i.i.d. Gaussian step noise it does not). The path is
deterministic for a seed: torchsde builds it lazily by Brownian-bridge bisection from a seed
sequence (``entropy``), so any query of any interval gives the same values every time.

Conventions here (k-diffusion's ``BrownianTreeNoiseSampler`` / ``BatchedBrownianTree``, which
diffusers' ``DPMSolverSDEScheduler`` copies):

* The tree spans ``[transform(sigma_min), transform(sigma_max)]`` where ``sigma_min`` is the
  smallest *positive* sigma of the schedule and ``sigma_max`` the largest; ``transform`` is the
  identity by default (as in k-diffusion's dpmpp_sde / 2m_sde / 3m_sde). torchsde clamps
  queries just outside the span (float round-off of ``exp(-log(sigma))``) to it; we only
  silence its warning about them.
* ``torchsde.BrownianTree(t0, w0, t1, entropy=seed)`` with its defaults (tol 1e-6, pool 24;
  the same tree as diffusers' ``BrownianInterval(..., tol=1e-6, pool_size=24,
  halfway_tree=True)``).
* **One tree per batch item**, item ``i`` seeded ``seed + i`` (or ``seeds[i]`` when a list is
  given), each the shape of one item. So an item's noise does not depend on the batch it is in:
  item 0 of a batch equals a batch-of-1 run with the same seed. k-diffusion / ComfyUI given a
  single int seed use one tree for the whole batch instead; for a batch of 1 the two are the
  same (one tree of ``C*h*w`` values either way), for bigger batches items ``>= 1`` differ.
* The trees live on the CPU in float32 (as ComfyUI's ``cpu=True``), so a seed gives the same
  noise on every device; the result is moved to the sample's device and dtype.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
import torchsde


def _identity(t):
    return t


class BatchedBrownianTree:
    """One ``torchsde.BrownianTree`` per batch item; ``tree(t0, t1)`` returns ``W(t1) - W(t0)``
    for every item, shaped like ``x`` (on ``x``'s device and dtype).

    ``seed`` is an int (item ``i`` gets ``seed + i``), a list of one seed per item, or ``None``
    (a random seed: not reproducible)."""

    def __init__(self, x: torch.Tensor, t0, t1, seed: int | Sequence[int] | None = None):
        t0, t1 = float(t0), float(t1)
        self.t0, self.t1, self.sign = (t0, t1, 1.0) if t0 < t1 else (t1, t0, -1.0)
        if not self.t0 < self.t1:
            raise ValueError(f"a Brownian tree needs t0 != t1, got {t0} and {t1}")
        batch = x.shape[0]
        if seed is None:
            seed = int(torch.randint(0, 2**63 - 1, []).item())
        if isinstance(seed, Sequence):
            seeds = [int(s) for s in seed]
            if len(seeds) != batch:
                raise ValueError(f"got {len(seeds)} seeds for a batch of {batch}")
        else:
            seeds = [int(seed) + i for i in range(batch)]
        if min(seeds) < 0:
            raise ValueError(f"Brownian tree seeds must be >= 0, got {seeds}")
        self.seeds = seeds
        self.device, self.dtype = x.device, x.dtype
        w0 = torch.zeros(x.shape[1:], dtype=torch.float32)  # one item, CPU, float32
        start, end = torch.tensor(self.t0, dtype=torch.float64), torch.tensor(self.t1, dtype=torch.float64)
        self.trees = [torchsde.BrownianTree(start, w0, end, entropy=s) for s in seeds]

    def __call__(self, t0, t1) -> torch.Tensor:
        t0, t1 = float(t0), float(t1)
        a, b, sign = (t0, t1, 1.0) if t0 < t1 else (t1, t0, -1.0)
        with warnings.catch_warnings():
            # torchsde clamps queries outside its (rounded) span to it, warning each time; sigmas
            # that went through exp(-log(sigma)) land just outside it in float32 every run
            warnings.filterwarnings("ignore", message="Should have t", category=UserWarning)
            w = torch.stack([tree(a, b) for tree in self.trees])
        return (w * (self.sign * sign)).to(device=self.device, dtype=self.dtype)


class BrownianTreeNoiseSampler:
    """``noise_sampler(sigma, sigma_next)`` backed by a Brownian tree (see the module docstring).

    Returns ``(W(t1) - W(t0)) / sqrt(|t1 - t0|)`` with ``t = transform(sigma)``: standard normal
    noise shaped like ``x`` whose increments over adjacent intervals add up like a Brownian
    motion's, ``noise(a, c) * sqrt|c - a| == noise(a, b) * sqrt|b - a| + noise(b, c) * sqrt|c - b|``.

    ``sigma_min`` / ``sigma_max``: the span of sigmas that will be queried (smallest positive
    sigma and largest sigma of the schedule). ``seed``: int (item ``i`` uses ``seed + i``), one
    seed per batch item, or ``None`` for a random one.
    """

    def __init__(self, x: torch.Tensor, sigma_min, sigma_max, seed: int | Sequence[int] | None = None,
                 transform: Callable = _identity):
        self.transform = transform
        t0 = self.transform(torch.as_tensor(sigma_min))
        t1 = self.transform(torch.as_tensor(sigma_max))
        self.tree = BatchedBrownianTree(x, t0, t1, seed)

    def __call__(self, sigma, sigma_next) -> torch.Tensor:
        t0, t1 = self.transform(torch.as_tensor(sigma)), self.transform(torch.as_tensor(sigma_next))
        return self.tree(t0, t1) / (t1 - t0).abs().sqrt().to(device=self.tree.device, dtype=self.tree.dtype)


def brownian_noise_sampler_for(x: torch.Tensor, sigmas: torch.Tensor, seed: int | Sequence[int] | None = None
                               ) -> BrownianTreeNoiseSampler | None:
    """The default noise sampler of the SDE samplers: a Brownian tree over the positive sigmas of
    ``sigmas`` (k-diffusion's ``sigmas[sigmas > 0].min()`` .. ``sigmas.max()``). ``None`` when
    the schedule has fewer than two distinct positive sigmas: such a run never draws step noise
    (its only step ends at sigma 0)."""
    positive = sigmas[sigmas > 0]
    if positive.numel() == 0:
        return None
    sigma_min, sigma_max = positive.min(), sigmas.max()
    if not sigma_min < sigma_max:
        return None
    return BrownianTreeNoiseSampler(x, sigma_min, sigma_max, seed=seed)


def ensure_brownian_noise_sampler(noise_sampler, x: torch.Tensor, sigmas: torch.Tensor, extra_args):
    """``noise_sampler`` if one is given, otherwise a Brownian tree seeded from
    ``extra_args["seed"]`` (an int, or one seed per batch item; a random one if absent)."""
    if noise_sampler is not None:
        return noise_sampler
    ns = brownian_noise_sampler_for(x, sigmas, (extra_args or {}).get("seed"))
    if ns is None:  # no interval to span: every step's noise is scaled by 0 (or never drawn)
        return lambda sigma, sigma_next: torch.zeros_like(x)
    return ns
