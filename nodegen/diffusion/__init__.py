"""Diffusion algorithms: samplers, schedules, conditioning, prompt weighting.

Map of the package (sampling side):

* :mod:`.model_sampling` - sigma <-> timestep from ``alphas_cumprod``; eps / v-prediction to
  denoised; the starting-noise rule (``noise * sqrt(1 + sigma^2)`` at the model's top sigma, else
  ``noise * sigma``, as ComfyUI).
* :mod:`.continuous_sampling` - the same for continuous-time models (EDM, continuous V, Cosmos
  rflow; ModelSamplingContinuousEDM / ModelSamplingContinuousV), a sigma range instead of a table.
* :mod:`.schedules` - ``get_sigmas(name, model_sampling, steps, denoise)`` (normal, karras,
  exponential, sgm_uniform, simple, ddim_uniform, beta, kl_optimal), split helpers.
* :mod:`.samplers` - one file per algorithm (k-diffusion signature), ``SAMPLERS``, ``Sampler``.
* :mod:`.noise` - CPU noise from the seed; the per-batch-item rule; step noise continues the
  same generator (so ancestral/SDE samplers equal diffusers' for the same seed).
* :mod:`.denoiser` / :mod:`.cfg` - the UNet as ``model(x, sigma) -> denoised`` with CFG over
  CONDITIONING lists, areas, SDXL size conditioning, ControlNet residuals, inpainting.
* :mod:`.sample` - one sampling run with progress, previews (:mod:`.preview`) and cancellation.

Equivalences with diffusers (proved by tests/test_oracle_*.py, fp32 CPU, pixels within 1e-3):

=============================================  ==========================================
diffusers scheduler (config)                   ours (sampler, scheduler)
=============================================  ==========================================
Euler / Heun / LMS, ``linspace``               euler / heun / lms, normal
Euler, ``use_karras_sigmas``                   euler, karras (+ ``discrete_timesteps=False``)
EulerAncestral, ``linspace``                   euler_ancestral, normal
KDPM2 / KDPM2Ancestral, ``linspace``           dpm_2 / dpm_2_ancestral, normal (+ fractional t)
DPMSolverMultistep (dpmsolver++), linspace     dpmpp_2m, sgm_uniform
DPMSolverMultistep, ``use_karras_sigmas``      dpmpp_2m, karras
DPMSolverMultistep, ``sde-dpmsolver++``        dpmpp_2m_sde (handed our Brownian step noise)
DPMSolverSDE, ``noise_sampler_seed=seed``      dpmpp_sde (Brownian tree, batch of 1)
UniPCMultistep (order 3, bh2), linspace        uni_pc_bh2, sgm_uniform
DDIM, leading + steps_offset 1 + alpha_to_one  ddim, ddim_uniform
EDMEuler (karras), ModelSamplingContinuousEDM  euler, karras (test_model_sampling_continuous)
EDMDPMSolverMultistep, Playground v2.5 VAE     dpmpp_2m, karras (edm_playground_v2.5)
img2img ``strength=s``, N steps                steps = int(N*s), denoise = steps / N
=============================================  ==========================================

diffusers' Euler/Heun/LMS/KDPM2 (``linspace``) start from ``noise * sigma_max`` where we start from
``noise * sqrt(1 + sigma_max^2)``; the oracle tests hand diffusers the rescaled noise.
"""
