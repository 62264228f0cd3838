"""Oracle for the samplers that draw noise while sampling.

Equivalence (documented in nodegen/diffusion/noise.py): our step noise continues the seed's CPU
generator after the initial noise, as diffusers' pipelines do with their one generator. So
euler_ancestral == ``EulerAncestralDiscreteScheduler``, dpm_2_ancestral ==
``KDPM2AncestralDiscreteScheduler`` and dpmpp_2m_sde ==
``DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++")`` for the same seed.
"""

from __future__ import annotations

import pytest
import torch

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


def test_dpmpp_2m_sde_matches_diffusers(sd1):
    ours, ref = run_pair(sd1, "dpmpp_2m_sde", "karras", 6, "DPMSolverMultistepScheduler",
                         dict(use_karras_sigmas=True, algorithm_type="sde-dpmsolver++"))
    assert (ours - ref).abs().max() <= 1e-3


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
