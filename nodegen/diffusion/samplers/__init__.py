"""Sampling algorithms, one file per algorithm (k-diffusion signature):

``sample_<name>(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None, **options)``

where ``model(x, sigma, **extra_args)`` returns the denoised prediction. :data:`SAMPLERS` maps the
public sampler names (KSampler's ``sampler_name`` choices) to these functions; a :class:`Sampler`
is the value of a SAMPLER socket.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nodegen.diffusion.samplers._common import default_noise_sampler, get_ancestral_step, to_d
from nodegen.diffusion.samplers.ddim import sample_ddim
from nodegen.diffusion.samplers.ddpm import sample_ddpm
from nodegen.diffusion.samplers.deis import sample_deis
from nodegen.diffusion.samplers.dpm_2 import sample_dpm_2
from nodegen.diffusion.samplers.dpm_2_ancestral import sample_dpm_2_ancestral
from nodegen.diffusion.samplers.dpm_solver import sample_dpm_adaptive, sample_dpm_fast
from nodegen.diffusion.samplers.dpmpp_2m import sample_dpmpp_2m
from nodegen.diffusion.samplers.dpmpp_2m_cfg_pp import sample_dpmpp_2m_cfg_pp
from nodegen.diffusion.samplers.dpmpp_2m_sde import sample_dpmpp_2m_sde
from nodegen.diffusion.samplers.dpmpp_2s_ancestral import sample_dpmpp_2s_ancestral
from nodegen.diffusion.samplers.dpmpp_2s_ancestral_cfg_pp import sample_dpmpp_2s_ancestral_cfg_pp
from nodegen.diffusion.samplers.dpmpp_3m_sde import sample_dpmpp_3m_sde
from nodegen.diffusion.samplers.dpmpp_sde import sample_dpmpp_sde
from nodegen.diffusion.samplers.er_sde import sample_er_sde
from nodegen.diffusion.samplers.euler import sample_euler
from nodegen.diffusion.samplers.euler_ancestral import sample_euler_ancestral
from nodegen.diffusion.samplers.euler_ancestral_cfg_pp import sample_euler_ancestral_cfg_pp
from nodegen.diffusion.samplers.euler_cfg_pp import sample_euler_cfg_pp
from nodegen.diffusion.samplers.gradient_estimation import sample_gradient_estimation
from nodegen.diffusion.samplers.heun import sample_heun
from nodegen.diffusion.samplers.heunpp2 import sample_heunpp2
from nodegen.diffusion.samplers.ipndm import sample_ipndm, sample_ipndm_v
from nodegen.diffusion.samplers.lcm import sample_lcm
from nodegen.diffusion.samplers.lms import sample_lms
from nodegen.diffusion.samplers.res_multistep import (
    sample_res_multistep,
    sample_res_multistep_ancestral,
    sample_res_multistep_ancestral_cfg_pp,
    sample_res_multistep_cfg_pp,
)
from nodegen.diffusion.samplers.sa_solver import sample_sa_solver, sample_sa_solver_pece
from nodegen.diffusion.samplers.seeds import sample_seeds_2, sample_seeds_3
from nodegen.diffusion.samplers.uni_pc import sample_uni_pc, sample_uni_pc_bh2

SAMPLERS: dict[str, Callable[..., Any]] = {
    "euler": sample_euler,
    "euler_ancestral": sample_euler_ancestral,
    "heun": sample_heun,
    "dpm_2": sample_dpm_2,
    "dpm_2_ancestral": sample_dpm_2_ancestral,
    "lms": sample_lms,
    "dpmpp_2s_ancestral": sample_dpmpp_2s_ancestral,
    "dpmpp_sde": sample_dpmpp_sde,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "dpmpp_3m_sde": sample_dpmpp_3m_sde,
    "ddim": sample_ddim,
    "uni_pc": sample_uni_pc,
    "uni_pc_bh2": sample_uni_pc_bh2,
    "lcm": sample_lcm,
    # the samplers ComfyUI added later, with their ComfyUI names
    "euler_cfg_pp": sample_euler_cfg_pp,
    "euler_ancestral_cfg_pp": sample_euler_ancestral_cfg_pp,
    "dpmpp_2s_ancestral_cfg_pp": sample_dpmpp_2s_ancestral_cfg_pp,
    "dpmpp_2m_cfg_pp": sample_dpmpp_2m_cfg_pp,
    "ddpm": sample_ddpm,
    "deis": sample_deis,
    "res_multistep": sample_res_multistep,
    "res_multistep_cfg_pp": sample_res_multistep_cfg_pp,
    "res_multistep_ancestral": sample_res_multistep_ancestral,
    "res_multistep_ancestral_cfg_pp": sample_res_multistep_ancestral_cfg_pp,
    "ipndm": sample_ipndm,
    "ipndm_v": sample_ipndm_v,
    "heunpp2": sample_heunpp2,
    "gradient_estimation": sample_gradient_estimation,
    "dpm_fast": sample_dpm_fast,
    "dpm_adaptive": sample_dpm_adaptive,
    "er_sde": sample_er_sde,
    "seeds_2": sample_seeds_2,
    "seeds_3": sample_seeds_3,
    "sa_solver": sample_sa_solver,
    "sa_solver_pece": sample_sa_solver_pece,
}

#: ComfyUI's "_gpu" variants draw their noise on the GPU there; ours is always drawn on the CPU
#: from the seed, so they are the same algorithms (kept so imported workflows validate).
ALIASES = {"dpmpp_sde_gpu": "dpmpp_sde", "dpmpp_2m_sde_gpu": "dpmpp_2m_sde", "dpmpp_3m_sde_gpu": "dpmpp_3m_sde"}
SAMPLERS.update({alias: SAMPLERS[name] for alias, name in ALIASES.items()})

SAMPLER_NAMES: list[str] = list(SAMPLERS)

#: Samplers that draw fresh noise while sampling (results depend on the seed's noise stream).
STOCHASTIC = {"euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde",
              "dpmpp_3m_sde", "lcm", "euler_ancestral_cfg_pp", "dpmpp_2s_ancestral_cfg_pp", "ddpm",
              "res_multistep_ancestral", "res_multistep_ancestral_cfg_pp", "er_sde", "seeds_2", "seeds_3",
              "sa_solver", "sa_solver_pece", *ALIASES}

#: SDE samplers whose step noise comes from a Brownian tree seeded by the sampling seed
#: (k-diffusion / ComfyUI; see nodegen.diffusion.brownian), not from the seed's Gaussian stream.
BROWNIAN = {"dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde", *ALIASES}


@dataclass(frozen=True)
class Sampler:
    """A sampling algorithm with its options (the SAMPLER socket value)."""

    name: str
    function: Callable[..., Any] = field(compare=False)
    options: dict = field(default_factory=dict, compare=False)

    def __call__(self, model, x, sigmas, extra_args=None, callback=None, noise_sampler=None):
        return self.function(model, x, sigmas, extra_args=extra_args, callback=callback,
                             noise_sampler=noise_sampler, **self.options)

    @property
    def stochastic(self) -> bool:
        return self.name in STOCHASTIC

    @property
    def brownian(self) -> bool:
        """Step noise from a Brownian tree (see :data:`BROWNIAN`)."""
        return self.name in BROWNIAN


def get_sampler(name: str, **options) -> Sampler:
    try:
        fn = SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLER_NAMES)}") from None
    return Sampler(name, fn, dict(options))


__all__ = ["SAMPLERS", "SAMPLER_NAMES", "STOCHASTIC", "BROWNIAN", "Sampler", "get_sampler", "default_noise_sampler",
           "get_ancestral_step", "to_d"]
