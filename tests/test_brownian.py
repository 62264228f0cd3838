"""Brownian-tree step noise of the SDE samplers (nodegen/diffusion/brownian.py).

The sampler returns ``(W(t1) - W(t0)) / sqrt|t1 - t0|`` for one Brownian path ``W`` per batch
item (k-diffusion's ``BrownianTreeNoiseSampler``). The oracle is diffusers'
``DPMSolverSDEScheduler(noise_sampler_seed=seed)``, which builds the same torchsde tree (one tree
over ``[min positive sigma, max sigma]`` with entropy ``seed``) and runs k-diffusion's dpmpp_sde.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from nodegen.diffusion.brownian import BrownianTreeNoiseSampler, brownian_noise_sampler_for
from nodegen.diffusion.noise import GeneratorNoiseSampler
from nodegen.diffusion.samplers import BROWNIAN, SAMPLERS, get_sampler
from nodegen.diffusion.schedules import karras_sigmas

torch.set_num_threads(1)
S2 = 0.25  # data variance of the analytic problem


def gaussian_model(x, sigma, **kw):
    """Exact denoiser of N(0, S2) data."""
    sig = sigma.reshape(-1, *([1] * (x.ndim - 1))).to(x.dtype)
    return x * S2 / (S2 + sig**2)


def _ns(seed, shape=(1, 4, 8, 8), lo=0.03, hi=14.6):
    return BrownianTreeNoiseSampler(torch.zeros(shape), torch.tensor(lo), torch.tensor(hi), seed=seed)


def test_same_seed_same_noise_other_seed_other_noise():
    a, b, c = _ns(5), _ns(5), _ns(6)
    queries = [(14.6, 7.0), (7.0, 1.0), (1.0, 0.03), (3.0, 2.5)]
    for s0, s1 in queries:
        s0, s1 = torch.tensor(s0), torch.tensor(s1)
        na, nb, nc = a(s0, s1), b(s0, s1), c(s0, s1)
        assert na.shape == (1, 4, 8, 8) and na.dtype == torch.float32
        assert torch.equal(na, nb)
        assert (na - nc).abs().max() > 0.1
    # the query order does not matter (the tree is a fixed function of the seed)
    d = _ns(5)
    rev = [d(torch.tensor(s0), torch.tensor(s1)) for s0, s1 in reversed(queries)][::-1]
    for (s0, s1), n in zip(queries, rev, strict=True):
        assert torch.equal(a(torch.tensor(s0), torch.tensor(s1)), n)
    # unit variance, zero mean
    big = BrownianTreeNoiseSampler(torch.zeros(1, 4, 64, 64), torch.tensor(0.03), torch.tensor(14.6), seed=0)
    n = big(torch.tensor(5.0), torch.tensor(4.0))
    assert abs(float(n.std()) - 1) < 0.03 and abs(float(n.mean())) < 0.03


def test_increments_add_like_a_brownian_motion():
    ns = _ns(11)
    s0, s1, s2 = torch.tensor(9.0), torch.tensor(2.5), torch.tensor(0.4)
    w02 = ns(s0, s2) * (s2 - s0).abs().sqrt()
    w01 = ns(s0, s1) * (s1 - s0).abs().sqrt()
    w12 = ns(s1, s2) * (s2 - s1).abs().sqrt()
    assert torch.allclose(w02, w01 + w12, atol=1e-5)
    # the two halves are independent, not one noise reused: they are far from proportional
    assert abs(float(torch.corrcoef(torch.stack([w01.flatten(), w12.flatten()]))[0, 1])) < 0.3
    # the increment is signed: W(s0) - W(s2) == -(W(s2) - W(s0))
    assert torch.equal(ns(s2, s0), -ns(s0, s2))


def test_batch_items_do_not_depend_on_the_batch():
    two = _ns(21, shape=(2, 4, 8, 8))
    one, next_one = _ns(21), _ns(22)
    s0, s1 = torch.tensor(6.0), torch.tensor(1.5)
    n2 = two(s0, s1)
    assert torch.equal(n2[:1], one(s0, s1))
    assert torch.equal(n2[1:], next_one(s0, s1))  # item i is seeded seed + i
    # explicit per-item seeds (what sample() passes for a latent with batch_index)
    picked = BrownianTreeNoiseSampler(torch.zeros(1, 4, 8, 8), torch.tensor(0.03), torch.tensor(14.6), seed=[22])
    assert torch.equal(picked(s0, s1), n2[1:])
    with pytest.raises(ValueError, match="seeds for a batch"):
        BrownianTreeNoiseSampler(torch.zeros(2, 4, 8, 8), torch.tensor(0.03), torch.tensor(14.6), seed=[1])
    # and through a sampler: item 0 of a batch of 2 is the batch-of-1 run (the model is per item)
    sig = karras_sigmas(6, 0.03, 14.6)
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 14.6
    for name in ("dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"):
        batch = SAMPLERS[name](gaussian_model, x, sig, extra_args={"seed": 3})
        single = SAMPLERS[name](gaussian_model, x[:1], sig, extra_args={"seed": 3})
        assert torch.allclose(batch[:1], single, atol=1e-6), name
        assert not torch.allclose(batch[0], batch[1])


@pytest.mark.parametrize("name", ["dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"])
def test_sde_samplers_default_to_the_seeded_tree(name):
    sig = karras_sigmas(8, 0.03, 14.6)
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(1)) * 14.6
    fn = SAMPLERS[name]
    a = fn(gaussian_model, x, sig, extra_args={"seed": 42})
    # exactly the tree built from the seed and the schedule's positive sigma range
    b = fn(gaussian_model, x, sig, noise_sampler=brownian_noise_sampler_for(x, sig, 42))
    assert torch.equal(a, b)
    assert not torch.allclose(a, fn(gaussian_model, x, sig, extra_args={"seed": 43}))
    # a given noise sampler still wins (the old Gaussian stream stays available)
    g = fn(gaussian_model, x, sig, noise_sampler=GeneratorNoiseSampler(torch.Generator().manual_seed(42), x.shape))
    assert not torch.allclose(a, g)
    # no torchsde warnings about queries outside the tree's span (float round-off of the sigmas)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fn(gaussian_model, x, sig, extra_args={"seed": 42})
    assert name in BROWNIAN and f"{name}_gpu" in BROWNIAN and get_sampler(f"{name}_gpu").brownian


@pytest.mark.parametrize("name", ["dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde"])
def test_result_nearly_independent_of_the_step_count(name):
    """What the tree is for: with one noise path, 30 and 60 steps land close together; with fresh
    Gaussian noise per step they are unrelated samples of the distribution."""
    x = torch.randn(1, 4, 32, 32, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def run(n, brownian):
        sig = karras_sigmas(n, 0.03, 14.6).double()
        ns = None if brownian else GeneratorNoiseSampler(torch.Generator().manual_seed(n), x.shape,
                                                          dtype=torch.float64)
        return SAMPLERS[name](gaussian_model, x * sig[0], sig, extra_args={"seed": 9}, noise_sampler=ns)

    tree = float((run(30, True) - run(60, True)).std())
    gauss = float((run(30, False) - run(60, False)).std())
    assert tree < 0.25 * gauss, (tree, gauss)
    assert gauss > 0.3 * math.sqrt(S2)  # sanity: independent noise really gives other samples


def _diffusers_dpmpp_sde(x, seed, steps):
    """diffusers' DPMSolverSDEScheduler on the analytic denoiser, with k-diffusion sigmas."""
    from diffusers import DPMSolverSDEScheduler

    sched = DPMSolverSDEScheduler(use_karras_sigmas=True, noise_sampler_seed=seed)
    sched.set_timesteps(steps)
    sample = x * sched.init_noise_sigma
    start = sample.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchsde's out-of-span query warnings
        for t in sched.timesteps:
            sched.scale_model_input(sample, t)  # initialises the step index
            sigma_in = sched.sigmas[sched.step_index] if sched.state_in_first_order else sched.mid_point_sigma
            eps = (sample - gaussian_model(sample, sigma_in.reshape(1))) / sigma_in
            sample = sched.step(eps, t, sample).prev_sample
    return start, sample, torch.unique_consecutive(sched.sigmas)


def test_dpmpp_sde_matches_diffusers_dpm_solver_sde():
    """Same tree (entropy = seed over [min positive sigma, max sigma]), same sigmas, same
    algorithm: diffusers' two half-steps per step are k-diffusion's dpmpp_sde with r = 1/2."""
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    start, ref, sigmas = _diffusers_dpmpp_sde(x, seed=1234, steps=8)
    assert len(sigmas) == 9 and float(sigmas[-1]) == 0
    ours = SAMPLERS["dpmpp_sde"](gaussian_model, start, sigmas, extra_args={"seed": 1234})
    assert (ours - ref).abs().max() <= 1e-5 * ref.abs().max()
    # the step noise is a real part of the result: another seed on our side is far off
    other = SAMPLERS["dpmpp_sde"](gaussian_model, start, sigmas, extra_args={"seed": 1235})
    assert (other - ref).abs().max() > 0.1 * ref.abs().max()
