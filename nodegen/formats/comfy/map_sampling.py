"""ComfyUI samplers, sampler/sigma helpers and latent nodes."""

from nodegen.formats.comfy.node_map import nm

MAPS = [
    nm("KSampler", "KSampler", "seed steps cfg sampler_name scheduler denoise", "latent", seeds="seed"),
    nm("KSamplerAdvanced", "KSamplerAdvanced",
       "add_noise noise_seed steps cfg sampler_name scheduler start_at_step end_at_step "
       "return_with_leftover_noise", "latent", seeds="noise_seed",
       enable="add_noise return_with_leftover_noise"),
    nm("SamplerCustom", "SamplerCustom", "add_noise noise_seed cfg", "output denoised_output",
       seeds="noise_seed"),
    nm("KSamplerSelect", "KSamplerSelect", "sampler_name", "sampler"),
    nm("BasicScheduler", "BasicScheduler", "scheduler steps denoise", "sigmas"),
    nm("KarrasScheduler", "KarrasScheduler", "steps sigma_max sigma_min rho", "sigmas"),
    nm("EmptyLatentImage", "EmptyLatentImage", "width height batch_size", "latent"),
    nm("LatentUpscale", "LatentUpscale", "upscale_method width height crop", "latent"),
    nm("LatentCrop", "LatentCrop", "width height x y", "latent"),
    nm("LatentUpscaleBy", "LatentUpscaleBy", "upscale_method scale_by", "latent"),
    nm("SetLatentNoiseMask", "SetLatentNoiseMask", "", "latent"),
    nm("VAEDecode", "VAEDecode", "", "image"),
    nm("VAEEncode", "VAEEncode", "", "latent"),
    nm("VAEEncodeForInpaint", "VAEEncodeForInpaint", "grow_mask_by", "latent"),
    nm("RepeatLatentBatch", "RepeatLatentBatch", "amount", "latent"),
    nm("LatentFromBatch", "LatentFromBatch", "batch_index length", "latent"),
    nm("SplitSigmas", "SplitSigmas", "step", "high_sigmas low_sigmas"),
    nm("ExponentialScheduler", "ExponentialScheduler", "steps sigma_max sigma_min", "sigmas"),
    nm("PolyexponentialScheduler", "PolyexponentialScheduler", "steps sigma_max sigma_min rho", "sigmas"),
    nm("VPScheduler", "VPScheduler", "steps beta_d beta_min eps_s", "sigmas"),
    # ComfyUI's tiled VAE nodes gained video (temporal) widgets; images ignore them
    nm("VAEDecodeTiled", "VAEDecodeTiled", "tile_size overlap temporal_size temporal_overlap", "image",
       ignore=frozenset({"temporal_size", "temporal_overlap"}),
       comfy_constants={"temporal_size": 64, "temporal_overlap": 8}),
    nm("VAEEncodeTiled", "VAEEncodeTiled", "tile_size overlap temporal_size temporal_overlap", "latent",
       ignore=frozenset({"temporal_size", "temporal_overlap"}),
       comfy_constants={"temporal_size": 64, "temporal_overlap": 8}),
]
