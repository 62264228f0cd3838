"""DPM-Solver (Lu et al. 2022, "DPM-Solver: A Fast ODE Solver for Diffusion Probabilistic Model
Sampling in Around 10 Steps", arXiv:2206.00927), singlestep, in noise prediction and
``t = lambda = -log sigma``, as k-diffusion's ``DPMSolver`` (MIT) and ComfyUI's ``dpm_fast`` /
``dpm_adaptive`` run it.

Both take only the ends of the schedule: they integrate from ``sigmas[0]`` down to the smallest
nonzero sigma (and stop there, like ComfyUI: no final step to sigma 0).

* ``dpm_fast`` (the paper's "DPM-Solver-fast", Sec. 3.4): ``len(sigmas) - 1`` model evaluations
  spread over ``K = nfe // 3 + 1`` steps uniform in lambda, of order 3 but the last ones (orders
  ``[3, ..., 3, 2, 1]`` when ``nfe`` divides by 3, else ``[3, ..., 3, nfe % 3]``).
* ``dpm_adaptive`` (Sec. 3.4 / Appendix, "DPM-Solver-12 / 23"): embedded pairs of orders (1, 2) or
  (2, 3) with a PID step-size controller (Söderlind's, after k-diffusion) on the scaled error
  ``||(x_low - x_high) / max(atol, rtol max(|x_low|, |x_prev|))|| / sqrt(numel)``.

The callback reports once per model evaluation for ``dpm_fast`` (so progress counts the
requested steps) and once per attempted step for ``dpm_adaptive`` (its index is the share of the
lambda range covered, on the ``len(sigmas) - 1`` scale).
"""

from __future__ import annotations

import math

import torch

from nodegen.diffusion.samplers._common import ensure_noise_sampler, get_ancestral_step, report


def _sigma(t: torch.Tensor) -> torch.Tensor:
    return t.neg().exp()


def _lam(sigma: torch.Tensor) -> torch.Tensor:
    return -sigma.log()


class _Eps:
    """The model as noise prediction at ``t``, with a per-step cache keyed by stage name."""

    def __init__(self, model, x, extra_args: dict, on_eval=None):
        self.model, self.extra_args, self.on_eval = model, extra_args, on_eval
        self.s_in = x.new_ones([x.shape[0]])
        self.cache: dict[str, torch.Tensor] = {}

    def __call__(self, key: str, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if key not in self.cache:
            sigma = _sigma(t)
            denoised = self.model(x, sigma * self.s_in, **self.extra_args)
            self.cache[key] = (x - denoised) / sigma
            if self.on_eval is not None:
                self.on_eval(x, sigma, denoised)
        return self.cache[key]


def dpm_solver_1_step(eps: _Eps, x, t, t_next):
    h = t_next - t
    return x - _sigma(t_next) * h.expm1() * eps("eps", x, t)


def dpm_solver_2_step(eps: _Eps, x, t, t_next, r1: float = 1 / 2):
    h = t_next - t
    e0 = eps("eps", x, t)
    s1 = t + r1 * h
    u1 = x - _sigma(s1) * (r1 * h).expm1() * e0
    e1 = eps("eps_r1", u1, s1)
    return x - _sigma(t_next) * h.expm1() * e0 - _sigma(t_next) / (2 * r1) * h.expm1() * (e1 - e0)


def dpm_solver_3_step(eps: _Eps, x, t, t_next, r1: float = 1 / 3, r2: float = 2 / 3):
    h = t_next - t
    e0 = eps("eps", x, t)
    s1, s2 = t + r1 * h, t + r2 * h
    u1 = x - _sigma(s1) * (r1 * h).expm1() * e0
    e1 = eps("eps_r1", u1, s1)
    u2 = (x - _sigma(s2) * (r2 * h).expm1() * e0
          - _sigma(s2) * (r2 / r1) * ((r2 * h).expm1() / (r2 * h) - 1) * (e1 - e0))
    e2 = eps("eps_r2", u2, s2)
    return x - _sigma(t_next) * h.expm1() * e0 - _sigma(t_next) / r2 * (h.expm1() / h - 1) * (e2 - e0)


_STEP = {1: dpm_solver_1_step, 2: dpm_solver_2_step, 3: dpm_solver_3_step}


def fast_orders(nfe: int) -> list[int]:
    """The orders of DPM-Solver-fast's steps for ``nfe`` model evaluations (they sum to ``nfe``)."""
    m = nfe // 3 + 1
    return [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]


def _ends(sigmas: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigma_max, sigma_min) as ComfyUI takes them: the first and the smallest nonzero sigma."""
    sigma_min = sigmas[-1] if sigmas[-1] > 0 else sigmas[-2]
    return sigmas[0], sigma_min


def _renoise_target(t, t_next, t_end, eta: float):
    """(t to step to, noise to add after) for an ancestral step (eta > 0); (t_next, 0) otherwise."""
    if not eta:
        return t_next, 0.0
    sigma_down, _ = get_ancestral_step(_sigma(t), _sigma(t_next), eta)
    t_down = torch.minimum(t_end, _lam(sigma_down))
    return t_down, (_sigma(t_next) ** 2 - _sigma(t_down) ** 2) ** 0.5


@torch.no_grad()
def sample_dpm_fast(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
                    eta=0.0, s_noise=1.0):
    if len(sigmas) <= 1:
        return x
    extra_args = extra_args or {}
    if eta:
        noise_sampler = ensure_noise_sampler(noise_sampler, x, extra_args)
    sigma_max, sigma_min = _ends(sigmas)
    t_start, t_end = _lam(sigma_max), _lam(sigma_min)
    orders = fast_orders(len(sigmas) - 1)
    ts = torch.linspace(float(t_start), float(t_end), len(orders) + 1, dtype=x.dtype, device=x.device)
    t_end = ts[-1]
    evaluations = [0]

    def on_eval(x_in, sigma, denoised):
        report(callback, x_in, evaluations[0], sigma, sigma, denoised)
        evaluations[0] += 1

    for i, order in enumerate(orders):
        eps = _Eps(model, x, extra_args, on_eval)
        t, t_next = ts[i], ts[i + 1]
        t_to, noise_level = _renoise_target(t, t_next, t_end, eta)
        x = _STEP[order](eps, x, t, t_to)
        if eta:
            x = x + noise_level * s_noise * noise_sampler(_sigma(t), _sigma(t_next))
    return x


class PIDStepSizeController:
    """Söderlind's PID step-size control (k-diffusion's): ``h *= limiter(e0^b1 e1^b2 e2^b3)`` on the
    inverse errors of this and the last accepted steps; accepted when the factor reaches
    ``accept_safety``."""

    def __init__(self, h: float, pcoeff: float, icoeff: float, dcoeff: float, order: float,
                 accept_safety: float = 0.81, eps: float = 1e-8):
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety, self.eps = accept_safety, eps
        self.errs: list[float] = []

    def propose_step(self, error: float) -> bool:
        inv_error = 1 / (float(error) + self.eps)
        if not self.errs:
            self.errs = [inv_error] * 3
        self.errs[0] = inv_error
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2], self.errs[1] = self.errs[1], self.errs[0]
        self.h *= factor
        return accept


@torch.no_grad()
def sample_dpm_adaptive(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
                        order=3, rtol=0.05, atol=0.0078, h_init=0.05, pcoeff=0.0, icoeff=1.0, dcoeff=0.0,
                        accept_safety=0.81, eta=0.0, s_noise=1.0):
    if order not in (2, 3):
        raise ValueError(f"dpm_adaptive: order must be 2 or 3, got {order}")
    if len(sigmas) <= 1:
        return x
    extra_args = extra_args or {}
    if eta:
        noise_sampler = ensure_noise_sampler(noise_sampler, x, extra_args)
    sigma_max, sigma_min = _ends(sigmas)
    t_start = _lam(sigma_max.to(x.dtype))
    t_end = _lam(sigma_min.to(x.dtype))
    n = len(sigmas) - 1
    atol_t, rtol_t = torch.tensor(atol, dtype=x.dtype), torch.tensor(rtol, dtype=x.dtype)
    pid = PIDStepSizeController(abs(h_init), pcoeff, icoeff, dcoeff, 1.5 if eta else order, accept_safety)
    s, x_prev = t_start, x
    while s < t_end - 1e-5:
        eps = _Eps(model, x, extra_args)
        t = torch.minimum(t_end, s + pid.h)
        t_to, noise_level = _renoise_target(s, t, t_end, eta)
        e0 = eps("eps", x, s)
        denoised = x - _sigma(s) * e0
        if order == 2:
            x_low = dpm_solver_1_step(eps, x, s, t_to)
            x_high = dpm_solver_2_step(eps, x, s, t_to)
        else:
            x_low = dpm_solver_2_step(eps, x, s, t_to, r1=1 / 3)
            x_high = dpm_solver_3_step(eps, x, s, t_to)
        delta = torch.maximum(atol_t, rtol_t * torch.maximum(x_low.abs(), x_prev.abs()))
        error = torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5
        sigma_s = _sigma(s)
        if pid.propose_step(error):
            x_prev = x_low
            x = x_high
            if eta:
                x = x + noise_level * s_noise * noise_sampler(_sigma(s), _sigma(t))
            s = t
        share = float((s - t_start) / (t_end - t_start))
        report(callback, x, min(n - 1, int(share * n)), sigma_s, sigma_s, denoised)
    return x
