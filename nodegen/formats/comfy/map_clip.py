"""ComfyUI CLIP-vision, style-model and PhotoMaker nodes -> ours (the image-encoder half of
IP-Adapter and Flux.1 Redux workflows, PhotoMaker identity prompts)."""

from nodegen.formats.comfy.node_map import nm

MAPS = [
    nm("CLIPVisionLoader", "CLIPVisionLoader", "clip_name", "clip_vision"),
    nm("CLIPVisionEncode", "CLIPVisionEncode", "crop", "clip_vision_output"),
    nm("StyleModelLoader", "StyleModelLoader", "style_model_name", "style_model"),
    nm("StyleModelApply", "StyleModelApply", "strength strength_type", "conditioning"),
    nm("PhotoMakerLoader", "PhotoMakerLoader", "photomaker_model_name", "photomaker"),
    nm("PhotoMakerEncode", "PhotoMakerEncode", "text", "conditioning"),
]
