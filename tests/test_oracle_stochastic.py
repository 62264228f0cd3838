"""Oracle for the samplers that draw noise while sampling.

Equivalence (documented in nodegen/diffusion/noise.py): our step noise continues the seed's CPU
generator after the initial noise, as diffusers' pipelines do with their one generator. So
euler_ancestral == ``EulerAncestralDiscreteScheduler`` and dpm_2_ancestral ==
``KDPM2AncestralDiscreteScheduler`` for the same seed.

The SDE samplers read a Brownian tree instead (k-diffusion / ComfyUI; nodegen/diffusion/brownian.py),
which diffusers' ``DPMSolverMultistepScheduler`` does not: it draws i.i.d. Gaussian step noise from
the pipeline's generator. Its ``step`` takes that noise as ``variance_noise``, so the dpmpp_2m_sde
oracle hands it our Brownian increments (same tree, same sigmas): the solver is compared exactly
and the noise path is ours. dpmpp_sde against ``DPMSolverSDEScheduler``, which builds the same
Brownian tree itself, is in tests/test_brownian.py.
"""

from __future__ import annotations

import pytest
import torch
from diffusers import DPMSolverMultistepScheduler

from nodegen.diffusion.brownian import brownian_noise_sampler_for
from tests.support.fixtures import fixture
from tests.test_oracle_txt2img import _top_ratio, run_pair  # noqa: F401  (shared oracle runner)

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


def test_euler_ancestral_matches_diffusers(sd1):
    ours, ref = run_pair(sd1, "euler_ancestral", "normal", 4, "EulerAncestralDiscreteScheduler",
                         dict(timestep_spacing="linspace"), noise_ratio=_top_ratio)
    assert (ours - ref).abs().max() <= 1e-3


class _BrownianDPMSolverMultistep(DPMSolverMultistepScheduler):
    """diffusers' SDE-DPM-Solver++ with its step noise taken from our Brownian tree for ``seed``
    (what sample() uses for dpmpp_2m_sde): noise(sigma_i, sigma_i+1) for step i."""

    seed = 0

    def set_timesteps(self, *args, **kwargs):
        super().set_timesteps(*args, **kwargs)
        self._brownian = None

    def step(self, model_output, timestep, sample, generator=None, variance_noise=None, return_dict=True):
        if self.step_index is None:
            self._init_step_index(timestep)
        if self._brownian is None:
            self._brownian = brownian_noise_sampler_for(sample, self.sigmas.float(), self.seed)
        s, s_next = self.sigmas[self.step_index], self.sigmas[self.step_index + 1]
        noise = self._brownian(s, s_next) if s_next > 0 else torch.zeros_like(sample)
        return super().step(model_output, timestep, sample, variance_noise=noise, return_dict=return_dict)


def test_dpmpp_2m_sde_matches_diffusers(sd1):
    _BrownianDPMSolverMultistep.seed = 1234
    ours, ref = run_pair(sd1, "dpmpp_2m_sde", "karras", 6, _BrownianDPMSolverMultistep,
                         dict(use_karras_sigmas=True, algorithm_type="sde-dpmsolver++"), seed=1234,
                         sigmas_from_diffusers=True)
    assert (ours - ref).abs().max() <= 1e-3
    # the noise is really the seed's tree: another seed on diffusers' side gives another result
    _BrownianDPMSolverMultistep.seed = 99
    with pytest.raises(AssertionError, match="latents differ"):
        run_pair(sd1, "dpmpp_2m_sde", "karras", 6, _BrownianDPMSolverMultistep,
                 dict(use_karras_sigmas=True, algorithm_type="sde-dpmsolver++"), seed=1234,
                 sigmas_from_diffusers=True)


def test_dpm_2_ancestral_matches_diffusers(sd1):
    ours, ref = run_pair(sd1, "dpm_2_ancestral", "normal", 4, "KDPM2AncestralDiscreteScheduler",
                         dict(timestep_spacing="linspace"), noise_ratio=_top_ratio,
                         model_options={"discrete_timesteps": False})
    assert (ours - ref).abs().max() <= 1e-3


def test_step_noise_depends_on_seed(sd1):
    """Same initial noise scale, different seeds: ancestral results differ (noise is really drawn)."""
    a, _ = run_pair(sd1, "euler_ancestral", "normal", 4, "EulerAncestralDiscreteScheduler",
                    dict(timestep_spacing="linspace"), noise_ratio=_top_ratio, seed=1)
    b, _ = run_pair(sd1, "euler_ancestral", "normal", 4, "EulerAncestralDiscreteScheduler",
                    dict(timestep_spacing="linspace"), noise_ratio=_top_ratio, seed=2)
    assert (a - b).abs().max() > 1e-3
