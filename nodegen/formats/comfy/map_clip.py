"""ComfyUI CLIP-vision nodes -> ours (the image-encoder half of IP-Adapter workflows)."""

from nodegen.formats.comfy.node_map import nm

MAPS = [
    nm("CLIPVisionLoader", "CLIPVisionLoader", "clip_name", "clip_vision"),
    nm("CLIPVisionEncode", "CLIPVisionEncode", "crop", "clip_vision_output"),
]
