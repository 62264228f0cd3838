"""ComfyUI's SD3 / SD 3.5, Flux.1 and Chroma nodes: loaders, text encoding, guidance, model sampling,
16-channel latents and the custom-sampling nodes their workflows use."""

from nodegen.formats.comfy.node_map import nm

MAPS = [
    nm("ReferenceLatent", "ReferenceLatent", "", "conditioning"),
    nm("FluxKontextImageScale", "FluxKontextImageScale", "", "image"),
    nm("FluxKontextMultiReferenceLatentMethod", "FluxKontextMultiReferenceLatentMethod", "reference_latents_method",
       "conditioning"),
    nm("UNETLoader", "UNETLoader", "unet_name weight_dtype", "model"),
    # newer ComfyUI versions add a "device" widget to the CLIP loaders (where to run them): ignored
    nm("CLIPLoader", "CLIPLoader", "clip_name type device", "clip", ignore=frozenset({"device"}),
       comfy_constants={"device": "default"}),
    nm("DualCLIPLoader", "DualCLIPLoader", "clip_name1 clip_name2 type device", "clip", ignore=frozenset({"device"}),
       comfy_constants={"device": "default"}),
    nm("TripleCLIPLoader", "TripleCLIPLoader", "clip_name1 clip_name2 clip_name3", "clip"),
    nm("T5TokenizerOptions", "T5TokenizerOptions", "min_padding min_length", "clip"),
    nm("CLIPTextEncodeSD3", "CLIPTextEncodeSD3", "clip_l clip_g t5xxl empty_padding", "conditioning"),
    nm("CLIPTextEncodeFlux", "CLIPTextEncodeFlux", "clip_l t5xxl guidance", "conditioning"),
    nm("FluxGuidance", "FluxGuidance", "guidance", "conditioning"),
    nm("FluxDisableGuidance", "FluxDisableGuidance", "", "conditioning"),
    nm("ModelSamplingSD3", "ModelSamplingSD3", "shift", "model"),
    nm("ModelSamplingFlux", "ModelSamplingFlux", "max_shift base_shift width height", "model"),
    nm("EmptySD3LatentImage", "EmptySD3LatentImage", "width height batch_size", "latent"),
    nm("RandomNoise", "RandomNoise", "noise_seed", "noise", seeds="noise_seed"),
    nm("DisableNoise", "DisableNoise", "", "noise"),
    nm("BasicGuider", "BasicGuider", "", "guider"),
    nm("CFGGuider", "CFGGuider", "cfg", "guider"),
    nm("DualCFGGuider", "DualCFGGuider", "cfg_conds cfg_cond2_negative style", "guider"),
    nm("SamplerCustomAdvanced", "SamplerCustomAdvanced", "", "output denoised_output"),
    nm("BetaSamplingScheduler", "BetaSamplingScheduler", "steps alpha beta", "sigmas"),
]
