"""ComfyUI's everyday core nodes for model sampling, guidance, FreeU, conditioning ranges and
masks, and image / latent transforms (nodes.py, comfy_extras/nodes_model_advanced.py,
nodes_freelunch.py, nodes_pag.py, nodes_slg.py, nodes_model_downscale.py, nodes_post_processing.py, nodes_images.py, nodes_latent.py)
and the .latent files (nodes.py's SaveLatent, LoadLatent)."""

from nodegen.formats.comfy.node_map import nm

MAPS = [
    nm("ModelSamplingDiscrete", "ModelSamplingDiscrete", "sampling zsnr", "model"),
    nm("RescaleCFG", "RescaleCFG", "multiplier", "model"),
    nm("FreeU", "FreeU", "b1 b2 s1 s2", "model"),
    nm("FreeU_V2", "FreeU_V2", "b1 b2 s1 s2", "model"),
    nm("PerturbedAttentionGuidance", "PerturbedAttentionGuidance", "scale", "model"),
    nm("PatchModelAddDownscale", "PatchModelAddDownscale", "block_number downscale_factor start_percent end_percent "
       "downscale_after_skip downscale_method upscale_method", "model"),
    nm("SkipLayerGuidanceSD3", "SkipLayerGuidanceSD3", "layers scale start_percent end_percent", "model"),
    nm("SkipLayerGuidanceDiT", "SkipLayerGuidanceDiT",
       "double_layers single_layers scale start_percent end_percent rescaling_scale", "model"),
    nm("ConditioningSetTimestepRange", "ConditioningSetTimestepRange", "start end", "conditioning"),
    nm("ConditioningAverage", "ConditioningAverage", "conditioning_to_strength", "conditioning"),
    nm("ConditioningSetMask", "ConditioningSetMask", "strength set_cond_area", "conditioning"),
    nm("ImageSharpen", "ImageSharpen", "sharpen_radius sigma alpha", "image"),
    nm("ImageBlur", "ImageBlur", "blur_radius sigma", "image"),
    nm("ImageQuantize", "ImageQuantize", "colors dither", "image"),
    nm("ImageStitch", "ImageStitch", "direction match_image_size spacing_width spacing_color", "image"),
    nm("GetImageSize", "GetImageSize", "", "width height batch_size"),
    nm("ImageScaleToMaxDimension", "ImageScaleToMaxDimension", "upscale_method largest_size", "image"),
    nm("ResizeAndPadImage", "ResizeAndPadImage", "target_width target_height padding_color interpolation", "image"),
    nm("ImageAddNoise", "ImageAddNoise", "seed strength", "image", seeds="seed"),
    nm("ImageFlip", "ImageFlip", "flip_method", "image"),
    nm("ImageRotate", "ImageRotate", "rotation", "image"),
    nm("LatentAdd", "LatentAdd", "", "latent"),
    nm("LatentInterpolate", "LatentInterpolate", "ratio", "latent"),
    nm("LatentSubtract", "LatentSubtract", "", "latent"),
    nm("LatentMultiply", "LatentMultiply", "multiplier", "latent"),
    nm("LatentBatch", "LatentBatch", "", "latent"),
    nm("LatentFlip", "LatentFlip", "flip_method", "latent"),
    nm("LatentRotate", "LatentRotate", "rotation", "latent"),
    nm("LatentBatchSeedBehavior", "LatentBatchSeedBehavior", "seed_behavior", "latent"),
    nm("SaveLatent", "SaveLatent", "filename_prefix"),
    nm("LoadLatent", "LoadLatent", "latent", "latent"),
]
