"""Hand-built nodegen equivalents of the ComfyUI test workflows in tests/data/comfy/ (our node
names, our named inputs, our output names), written independently of the importer's tables."""

from __future__ import annotations


def lk(nid, out: str) -> dict:
    return {"from": [str(nid), out]}


def _base(ckpt="tiny-sd1.safetensors", prefix="txt2img") -> dict:
    return {
        "4": ("CheckpointLoader", {"ckpt_name": ckpt}),
        "5": ("EmptyLatentImage", {"width": 64, "height": 64, "batch_size": 1}),
        "6": ("CLIPTextEncode", {"text": "a red circle on a blue sky", "clip": lk(4, "clip")}),
        "7": ("CLIPTextEncode", {"text": "blurry", "clip": lk(4, "clip")}),
        "3": ("KSampler", {"seed": 42, "steps": 4, "cfg": 7.5, "sampler_name": "euler", "scheduler": "normal",
                           "denoise": 1.0, "model": lk(4, "model"), "positive": lk(6, "conditioning"),
                           "negative": lk(7, "conditioning"), "latent_image": lk(5, "latent")}),
        "8": ("VAEDecode", {"samples": lk(3, "latent"), "vae": lk(4, "vae")}),
        "9": ("SaveImage", {"filename_prefix": prefix, "images": lk(8, "image")}),
    }


def txt2img() -> dict:
    return _base()


def img2img() -> dict:
    g = _base(prefix="img2img")
    del g["5"]
    g["10"] = ("LoadImage", {"image": "photo.png"})
    g["11"] = ("ImageScaleBy", {"method": "bilinear", "scale_by": 0.5, "image": lk(10, "image")})
    g["12"] = ("VAEEncode", {"pixels": lk(11, "image"), "vae": lk(4, "vae")})
    g["3"][1].update(latent_image=lk(12, "latent"), denoise=0.6, seed=7)
    return g


def inpaint() -> dict:
    g = _base(prefix="inpaint")
    del g["5"]
    g["10"] = ("LoadImage", {"image": "photo.png"})
    g["13"] = ("LoadImageMask", {"image": "mask.png", "channel": "red"})
    g["12"] = ("VAEEncodeForInpaint", {"grow_mask_by": 6, "pixels": lk(10, "image"), "vae": lk(4, "vae"),
                                       "mask": lk(13, "mask")})
    g["3"][1]["latent_image"] = lk(12, "latent")
    return g


def hires_fix() -> dict:
    g = _base(prefix="hires")
    g["10"] = ("LatentUpscale", {"upscale_method": "nearest-exact", "width": 96, "height": 96,
                                 "crop": "disabled", "samples": lk(3, "latent")})
    g["11"] = ("KSampler", {"seed": 43, "steps": 4, "cfg": 7.5, "sampler_name": "euler", "scheduler": "karras",
                            "denoise": 0.5, "model": lk(4, "model"), "positive": lk(6, "conditioning"),
                            "negative": lk(7, "conditioning"), "latent_image": lk(10, "latent")})
    g["8"][1]["samples"] = lk(11, "latent")
    return g


def lora() -> dict:
    g = _base(prefix="lora")
    g["10"] = ("LoraLoader", {"lora_name": "tiny-lora.safetensors", "strength_model": 0.8, "strength_clip": 0.6,
                              "model": lk(4, "model"), "clip": lk(4, "clip")})
    g["11"] = ("LoraLoaderModelOnly", {"lora_name": "tiny-lora-2.safetensors", "strength_model": 0.5,
                                       "model": lk(10, "model")})
    g["12"] = ("CLIPSetLastLayer", {"stop_at_clip_layer": -2, "clip": lk(10, "clip")})
    g["6"][1]["clip"] = lk(12, "clip")
    g["7"][1]["clip"] = lk(12, "clip")
    g["3"][1]["model"] = lk(11, "model")
    return g


def controlnet() -> dict:
    g = _base(prefix="controlnet")
    g["10"] = ("LoadImage", {"image": "edges.png"})
    g["11"] = ("ControlNetLoader", {"control_net_name": "tiny-controlnet.safetensors"})
    g["12"] = ("ControlNetApplyAdvanced", {"strength": 0.9, "start_percent": 0.0, "end_percent": 0.8,
                                           "positive": lk(15, "conditioning"), "negative": lk(7, "conditioning"),
                                           "control_net": lk(11, "control_net"), "image": lk(10, "image")})
    g["13"] = ("CLIPTextEncode", {"text": "a tree", "clip": lk(4, "clip")})
    g["14"] = ("ConditioningSetArea", {"width": 64, "height": 64, "x": 0, "y": 0, "strength": 1.0,
                                       "conditioning": lk(13, "conditioning")})
    g["15"] = ("ConditioningCombine", {"conditioning_1": lk(6, "conditioning"),
                                       "conditioning_2": lk(14, "conditioning")})
    g["16"] = ("ControlNetApply", {"strength": 0.5, "conditioning": lk(12, "positive"),
                                   "control_net": lk(11, "control_net"), "image": lk(10, "image")})
    g["3"][1].update(positive=lk(16, "conditioning"), negative=lk(12, "negative"))
    return g


def esrgan_upscale() -> dict:
    g = _base(prefix="esrgan")
    g["10"] = ("UpscaleModelLoader", {"model_name": "tiny-esrgan.safetensors"})
    g["11"] = ("ImageUpscaleWithModel", {"upscale_model": lk(10, "upscale_model"), "image": lk(8, "image")})
    g["12"] = ("ImageScale", {"method": "bicubic", "width": 128, "height": 128, "crop": "center",
                              "image": lk(11, "image")})
    g["9"][1]["images"] = lk(12, "image")
    g["13"] = ("PreviewImage", {"images": lk(8, "image")})
    return g


def sdxl_refiner() -> dict:
    sdxl = {"width": 1024, "height": 1024, "crop_w": 0, "crop_h": 0, "target_width": 1024, "target_height": 1024}
    adv = {"steps": 6, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal"}
    return {
        "4": ("CheckpointLoader", {"ckpt_name": "tiny-sdxl.safetensors"}),
        "12": ("CheckpointLoader", {"ckpt_name": "tiny-sdxl-refiner.safetensors"}),
        "5": ("EmptyLatentImage", {"width": 64, "height": 64, "batch_size": 1}),
        "6": ("CLIPTextEncodeSDXL", {**sdxl, "text_g": "a lighthouse at dusk", "text_l": "a lighthouse",
                                     "clip": lk(4, "clip")}),
        "7": ("CLIPTextEncodeSDXL", {**sdxl, "text_g": "blurry", "text_l": "blurry", "clip": lk(4, "clip")}),
        "15": ("CLIPTextEncodeSDXLRefiner", {"ascore": 6.0, "width": 1024, "height": 1024,
                                             "text": "a lighthouse at dusk", "clip": lk(12, "clip")}),
        "16": ("CLIPTextEncodeSDXLRefiner", {"ascore": 2.5, "width": 1024, "height": 1024, "text": "blurry",
                                             "clip": lk(12, "clip")}),
        "10": ("KSamplerAdvanced", {"add_noise": True, "noise_seed": 123, **adv, "start_at_step": 0,
                                    "end_at_step": 4, "return_with_leftover_noise": True, "model": lk(4, "model"),
                                    "positive": lk(6, "conditioning"), "negative": lk(7, "conditioning"),
                                    "latent_image": lk(5, "latent")}),
        "11": ("KSamplerAdvanced", {"add_noise": False, "noise_seed": 0, **adv, "start_at_step": 4,
                                    "end_at_step": 10000, "return_with_leftover_noise": False,
                                    "model": lk(12, "model"), "positive": lk(15, "conditioning"),
                                    "negative": lk(16, "conditioning"), "latent_image": lk(10, "latent")}),
        "18": ("VAELoader", {"vae_name": "tiny-sdxl-vae.safetensors"}),
        "17": ("VAEDecode", {"samples": lk(11, "latent"), "vae": lk(18, "vae")}),
        "19": ("SaveImage", {"filename_prefix": "sdxl", "images": lk(17, "image")}),
    }


def custom_sampler() -> dict:
    g = _base(prefix="custom")
    del g["3"]
    g["10"] = ("KSamplerSelect", {"sampler_name": "euler_ancestral"})
    g["11"] = ("BasicScheduler", {"scheduler": "normal", "steps": 4, "denoise": 1.0, "model": lk(4, "model")})
    g["12"] = ("KarrasScheduler", {"steps": 4, "sigma_max": 14.6, "sigma_min": 0.03, "rho": 7.0})
    g["13"] = ("ConditioningZeroOut", {"conditioning": lk(7, "conditioning")})
    g["14"] = ("ConditioningConcat", {"conditioning_to": lk(6, "conditioning"),
                                      "conditioning_from": lk(6, "conditioning")})
    g["15"] = ("SamplerCustom", {"add_noise": True, "noise_seed": 5, "cfg": 6.0, "model": lk(4, "model"),
                                 "positive": lk(14, "conditioning"), "negative": lk(13, "conditioning"),
                                 "sampler": lk(10, "sampler"), "sigmas": lk(12, "sigmas"),
                                 "latent_image": lk(5, "latent")})
    g["16"] = ("LatentUpscaleBy", {"upscale_method": "bilinear", "scale_by": 1.5,
                                   "samples": lk(15, "denoised_output")})
    g["8"][1]["samples"] = lk(16, "latent")
    return g


def custom_sigmas() -> dict:
    g = _base(prefix="sigmas")
    del g["3"]
    cond = {"model": lk(4, "model"), "positive": lk(6, "conditioning"), "negative": lk(7, "conditioning")}
    g["10"] = ("SamplerDPMPP_2M_SDE", {"solver_type": "heun", "eta": 0.8, "s_noise": 1.0, "noise_device": "cpu"})
    g["11"] = ("AlignYourStepsScheduler", {"model_type": "SD1", "steps": 4, "denoise": 1.0})
    g["12"] = ("SplitSigmasDenoise", {"denoise": 0.5, "sigmas": lk(11, "sigmas")})
    g["13"] = ("SamplerCustom", {"add_noise": True, "noise_seed": 5, "cfg": 6.0, **cond, "sampler": lk(10, "sampler"),
                                 "sigmas": lk(12, "high_sigmas"), "latent_image": lk(5, "latent")})
    g["14"] = ("SamplerEulerAncestral", {"eta": 0.5, "s_noise": 1.0})
    g["15"] = ("LaplaceScheduler", {"steps": 4, "sigma_max": 14.614642, "sigma_min": 0.0291675, "mu": 0.0,
                                    "beta": 0.5})
    g["16"] = ("FlipSigmas", {"sigmas": lk(15, "sigmas")})
    g["17"] = ("SamplerCustom", {"add_noise": False, "noise_seed": 0, "cfg": 6.0, **cond, "sampler": lk(14, "sampler"),
                                 "sigmas": lk(12, "low_sigmas"), "latent_image": lk(13, "output")})
    g["18"] = ("KSampler", {"seed": 8, "steps": 3, "cfg": 1.0, "sampler_name": "euler_cfg_pp", "scheduler": "normal",
                            "denoise": 0.3, **cond, "latent_image": lk(17, "output")})
    g["8"][1]["samples"] = lk(18, "latent")
    return g


def masks_outpaint() -> dict:
    g = _base(prefix="outpaint")
    del g["5"]
    g["10"] = ("LoadImage", {"image": "photo.png"})
    g["11"] = ("ImageScaleToTotalPixels", {"upscale_method": "bilinear", "megapixels": 0.0025, "resolution_steps": 8,
                                           "image": lk(10, "image")})
    g["12"] = ("ImagePadForOutpaint", {"left": 8, "top": 0, "right": 8, "bottom": 0, "feathering": 8,
                                       "image": lk(11, "image")})
    g["13"] = ("GrowMask", {"expand": 2, "tapered_corners": True, "mask": lk(12, "mask")})
    g["14"] = ("FeatherMask", {"left": 4, "top": 0, "right": 4, "bottom": 0, "mask": lk(13, "mask")})
    g["15"] = ("LoadImage", {"image": "edges.png"})
    g["16"] = ("ImageColorToMask", {"color": 16777215, "image": lk(15, "image")})
    g["17"] = ("MaskComposite", {"x": 0, "y": 0, "operation": "add", "destination": lk(14, "mask"),
                                 "source": lk(16, "mask")})
    g["18"] = ("VAEEncode", {"pixels": lk(12, "image"), "vae": lk(4, "vae")})
    g["19"] = ("SetLatentNoiseMask", {"samples": lk(18, "latent"), "mask": lk(17, "mask")})
    g["20"] = ("DifferentialDiffusion", {"strength": 1.0, "model": lk(4, "model")})
    g["3"][1].update(steps=3, model=lk(20, "model"), latent_image=lk(19, "latent"))
    g["21"] = ("LatentBlend", {"blend_factor": 0.8, "samples1": lk(3, "latent"), "samples2": lk(18, "latent")})
    g["22"] = ("EmptyLatentImage", {"width": 64, "height": 64, "batch_size": 1})
    g["23"] = ("LatentComposite", {"x": 0, "y": 8, "feather": 8, "samples_to": lk(22, "latent"),
                                   "samples_from": lk(21, "latent")})
    g["24"] = ("LatentCompositeMasked", {"x": 0, "y": 0, "resize_source": False, "destination": lk(23, "latent"),
                                         "source": lk(21, "latent"), "mask": lk(14, "mask")})
    g["8"][1]["samples"] = lk(24, "latent")
    g["25"] = ("ImageCompositeMasked", {"x": 8, "y": 8, "resize_source": False, "destination": lk(8, "image"),
                                        "source": lk(10, "image"), "mask": lk(16, "mask")})
    g["26"] = ("ImageBatch", {"image1": lk(25, "image"), "image2": lk(11, "image")})
    g["9"][1]["images"] = lk(26, "image")
    g["27"] = ("CannyEdges", {"low_threshold": 0.1, "high_threshold": 0.2, "image": lk(10, "image")})  # ComfyUI / 4
    g["28"] = ("PreviewImage", {"images": lk(27, "image")})
    return g


def merging() -> dict:
    g = _base(prefix="merged")
    g["12"] = ("CheckpointLoader", {"ckpt_name": "tiny-sd1.safetensors"})
    g["13"] = ("ModelMergeSimple", {"ratio": 0.4, "model1": lk(4, "model"), "model2": lk(12, "model")})
    g["14"] = ("ModelMergeSubtract", {"multiplier": 0.5, "model1": lk(13, "model"), "model2": lk(12, "model")})
    g["15"] = ("ModelMergeAdd", {"model1": lk(4, "model"), "model2": lk(14, "model")})
    g["16"] = ("ModelMergeBlocks", {"input": 0.2, "middle": 0.5, "out": 0.9, "model1": lk(15, "model"),
                                    "model2": lk(13, "model")})
    g["17"] = ("CLIPMergeSimple", {"ratio": 0.3, "clip1": lk(4, "clip"), "clip2": lk(12, "clip")})
    g["18"] = ("CLIPMergeSubtract", {"multiplier": 0.1, "clip1": lk(17, "clip"), "clip2": lk(12, "clip")})
    g["19"] = ("CLIPMergeAdd", {"clip1": lk(17, "clip"), "clip2": lk(18, "clip")})
    g["6"][1]["clip"] = lk(19, "clip")
    g["7"][1]["clip"] = lk(19, "clip")
    g["3"][1]["model"] = lk(16, "model")
    g["20"] = ("CheckpointSave", {"filename_prefix": "checkpoints/merged", "model": lk(16, "model"),
                                  "clip": lk(19, "clip"), "vae": lk(4, "vae")})
    return g


EXPECTED = {f.__name__: f for f in (txt2img, img2img, inpaint, hires_fix, lora, controlnet, esrgan_upscale,
                                    sdxl_refiner, custom_sampler, custom_sigmas, masks_outpaint, merging)}
