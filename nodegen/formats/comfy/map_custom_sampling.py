"""ComfyUI's custom-sampling helpers: per-sampler nodes with options, published schedules, and
schedule surgery (flip, split by denoise)."""

from nodegen.formats.comfy.node_map import nm

MAPS = [
    nm("SamplerEulerAncestral", "SamplerEulerAncestral", "eta s_noise", "sampler"),
    nm("SamplerEulerAncestralCFGPP", "SamplerEulerAncestralCFGPP", "eta s_noise", "sampler"),
    nm("SamplerDPMPP_2S_Ancestral", "SamplerDPMPP_2S_Ancestral", "eta s_noise", "sampler"),
    nm("SamplerDPMPP_2M_SDE", "SamplerDPMPP_2M_SDE", "solver_type eta s_noise noise_device", "sampler"),
    nm("SamplerDPMPP_SDE", "SamplerDPMPP_SDE", "eta s_noise r noise_device", "sampler"),
    nm("SamplerDPMPP_3M_SDE", "SamplerDPMPP_3M_SDE", "eta s_noise noise_device", "sampler"),
    nm("SamplerLMS", "SamplerLMS", "order", "sampler"),
    nm("AlignYourStepsScheduler", "AlignYourStepsScheduler", "model_type steps denoise", "sigmas"),
    nm("LaplaceScheduler", "LaplaceScheduler", "steps sigma_max sigma_min mu beta", "sigmas"),
    nm("FlipSigmas", "FlipSigmas", "", "sigmas"),
    nm("SDTurboScheduler", "SDTurboScheduler", "steps denoise", "sigmas"),
    nm("SplitSigmasDenoise", "SplitSigmasDenoise", "denoise", "high_sigmas low_sigmas"),
]

# AddNoise reads a NOISE (RandomNoise / DisableNoise, mapped with the Flux custom-sampling nodes)
MAPS.append(nm("AddNoise", "AddNoise", "", "latent"))
