"""The names the sampling nodes offer as choices, as plain data (no torch).

Node schemas are built when node types are listed (``nodes``, ``validate``, the server, the editor's
palette), long before anything samples: they read these lists so that listing imports no torch. The
modules that implement the names keep their own tables (``samplers.SAMPLERS``,
``schedules.SCHEDULER_NAMES``, ``align_your_steps.NOISE_LEVELS``); tests/test_lean_imports.py checks
that both agree, in order, so a name added there must be added here too.
"""

from __future__ import annotations

#: ``nodegen.diffusion.samplers.SAMPLER_NAMES`` (the SAMPLERS table, ComfyUI's "_gpu" aliases last).
SAMPLER_NAMES: list[str] = [
    "euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpmpp_2s_ancestral",
    "dpmpp_sde", "dpmpp_2m", "dpmpp_2m_sde", "dpmpp_3m_sde", "ddim", "uni_pc", "uni_pc_bh2", "lcm",
    "euler_cfg_pp", "euler_ancestral_cfg_pp", "dpmpp_2s_ancestral_cfg_pp", "dpmpp_2m_cfg_pp", "ddpm",
    "deis", "res_multistep", "res_multistep_cfg_pp", "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp", "ipndm", "ipndm_v", "heunpp2", "gradient_estimation",
    "dpm_fast", "dpm_adaptive", "er_sde", "seeds_2", "seeds_3", "sa_solver",
    "sa_solver_pece", "dpmpp_sde_gpu", "dpmpp_2m_sde_gpu", "dpmpp_3m_sde_gpu",
]

#: ``nodegen.diffusion.schedules.SCHEDULER_NAMES``.
SCHEDULER_NAMES: list[str] = ["normal", "karras", "exponential", "sgm_uniform", "simple", "ddim_uniform",
                              "beta", "kl_optimal", "linear_quadratic"]

#: ``nodegen.diffusion.align_your_steps.MODEL_TYPES`` (the families with published schedules).
AYS_MODEL_TYPES: list[str] = ["SD1", "SDXL", "SVD"]
