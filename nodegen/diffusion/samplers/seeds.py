"""SEEDS (Gonzalez et al. 2023, "SEEDS: Exponential SDE Solvers for Fast High-Quality Sampling from
Diffusion Models", arXiv:2305.14267), the data-prediction stochastic exponential Runge-Kutta
methods ComfyUI runs as ``seeds_2`` and ``seeds_3``, in the half log-SNR
``lambda = log(alpha / sigma)`` (epsilon / v models: ``alpha = 1``; flow models: ``alpha = 1 -
sigma``, chosen automatically).

With ``h = lambda_next - lambda``, ``h_eta = (1 + eta) h``, a stage at ``lambda + c h`` is
``x_c = (sigma_c / sigma) e^(-c h eta) x + alpha_c sum_k w_k D_k``, the weights built from
``p1(z) = 1 - e^-z`` and ``p2(z) = 1 - p1(z) / z``:

* seeds_2 (stage at ``r``, default 1/2): ``x_r`` with ``p1(r h_eta) D``; then ``solver_type``
  ``phi_1``: ``p1(h_eta) ((1 - 1/2r) D + 1/2r D_r)``, or ``phi_2``:
  ``(p1(h_eta) - B) D + B D_r`` with ``B = p2(h_eta) / r``;
* seeds_3 (stages at ``r_1 = 1/3``, ``r_2 = 2/3``): ``x_r1`` with ``p1(r_1 h_eta) D``; ``x_r2`` with
  ``(p1(r_2 h_eta) - A) D + A D_r1``, ``A = (r_2 / r_1) p2(r_2 h_eta)``; then
  ``(p1(h_eta) - B) D + B D_r2``, ``B = p2(h_eta) / r_2``.

The noise is one Ornstein-Uhlenbeck path through the stages: after a stage at ``c`` it is
``z_c = e^((c' - c) h eta) z_c' + sqrt(1 - e^(2 (c' - c) h eta)) n`` (``z`` starting at 0, fresh
``n`` per stage), added as ``sigma_c s_noise z_c``. The step to sigma 0 lands on the denoised
estimate.
"""

from __future__ import annotations

import torch

from nodegen.diffusion.samplers._common import (
    ensure_noise_sampler,
    half_log_snr_fns,
    offset_first_sigma,
    report,
    s_in_like,
)


def _p1(z: torch.Tensor) -> torch.Tensor:
    return -torch.expm1(-z)


def _p2(z: torch.Tensor) -> torch.Tensor:
    return 1 - _p1(z) / z


class _Step:
    """One step's geometry: the stage points at ``lambda + c h`` and the OU noise through them."""

    def __init__(self, sigma, sigma_next, eta, s_noise, noise_sampler, flow):
        self.lam_of, self.sigma_of = half_log_snr_fns(flow)
        self.sigma = sigma
        self.lam = self.lam_of(sigma)
        self.h = self.lam_of(sigma_next) - self.lam
        self.h_eta = self.h * (1 + eta)
        self.eta, self.s_noise, self.noise_sampler = eta, s_noise, noise_sampler
        self.noisy = eta > 0 and s_noise > 0
        self.z = None
        self.c_last, self.sigma_last = 0.0, sigma

    def point(self, c: float):
        """(sigma, alpha) at ``lambda + c h`` (the end of the step exactly at ``c = 1``)."""
        lam_c = self.lam + c * self.h
        sigma_c = self.sigma_of(lam_c)
        return sigma_c, sigma_c * lam_c.exp()

    def stage(self, x, c: float, mix: torch.Tensor, sigma_c=None):
        """``x`` moved to ``lambda + c h`` with the denoised combination ``mix`` (already weighted)."""
        if sigma_c is None:
            sigma_c, alpha_c = self.point(c)
        else:
            alpha_c = sigma_c * self.lam_of(sigma_c).exp()
        out = sigma_c / self.sigma * (-c * self.h * self.eta).exp() * x + alpha_c * mix
        if self.noisy:
            seg = (self.c_last - c) * self.h * self.eta
            fresh = self.noise_sampler(self.sigma_last, sigma_c)
            decay_noise = (-torch.expm1(2 * seg)).sqrt() * fresh
            self.z = decay_noise if self.z is None else self.z * seg.exp() + decay_noise
            out = out + self.z * sigma_c * self.s_noise
        self.c_last, self.sigma_last = c, sigma_c
        return out


def _prepare(model, x, sigmas, extra_args, eta, s_noise, noise_sampler, flow):
    extra_args = extra_args or {}
    if eta > 0 and s_noise > 0:
        noise_sampler = ensure_noise_sampler(noise_sampler, x, extra_args)
    return extra_args, noise_sampler, offset_first_sigma(sigmas, flow), s_in_like(x)


@torch.no_grad()
def sample_seeds_2(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
                   eta=1.0, s_noise=1.0, r=0.5, solver_type="phi_1", flow=False):
    if solver_type not in ("phi_1", "phi_2"):
        raise ValueError(f"seeds_2: solver_type must be 'phi_1' or 'phi_2', got {solver_type!r}")
    extra_args, noise_sampler, sigmas, s_in = _prepare(model, x, sigmas, extra_args, eta, s_noise,
                                                       noise_sampler, flow)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        step = _Step(sigmas[i], sigmas[i + 1], eta, s_noise, noise_sampler, flow)
        x_r = step.stage(x, r, _p1(r * step.h_eta) * denoised)
        denoised_r = model(x_r, step.sigma_last * s_in, **extra_args)
        if solver_type == "phi_1":
            mix = _p1(step.h_eta) * torch.lerp(denoised, denoised_r, 1 / (2 * r))
        else:
            b = _p2(step.h_eta) / r
            mix = (_p1(step.h_eta) - b) * denoised + b * denoised_r
        x = step.stage(x, 1.0, mix, sigma_c=sigmas[i + 1])
    return x


@torch.no_grad()
def sample_seeds_3(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
                   eta=1.0, s_noise=1.0, r_1=1 / 3, r_2=2 / 3, flow=False):
    extra_args, noise_sampler, sigmas, s_in = _prepare(model, x, sigmas, extra_args, eta, s_noise,
                                                       noise_sampler, flow)
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        step = _Step(sigmas[i], sigmas[i + 1], eta, s_noise, noise_sampler, flow)
        x_1 = step.stage(x, r_1, _p1(r_1 * step.h_eta) * denoised)
        denoised_1 = model(x_1, step.sigma_last * s_in, **extra_args)
        a = r_2 / r_1 * _p2(r_2 * step.h_eta)
        x_2 = step.stage(x, r_2, (_p1(r_2 * step.h_eta) - a) * denoised + a * denoised_1)
        denoised_2 = model(x_2, step.sigma_last * s_in, **extra_args)
        b = _p2(step.h_eta) / r_2
        x = step.stage(x, 1.0, (_p1(step.h_eta) - b) * denoised + b * denoised_2, sigma_c=sigmas[i + 1])
    return x
