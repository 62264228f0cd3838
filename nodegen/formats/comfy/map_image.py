"""ComfyUI image nodes: load, save (animations too), preview, scale, model upscale."""

from nodegen.formats.comfy.node_map import nm

MAPS = [
    # "-": ComfyUI's upload button, a widget that holds no data
    nm("LoadImage", "LoadImage", "image -", "image mask"),
    nm("LoadImageMask", "LoadImageMask", "image channel -", "mask"),
    nm("SaveImage", "SaveImage", "filename_prefix", ""),
    nm("PreviewImage", "PreviewImage", "", ""),
    nm("SaveAnimatedWEBP", "SaveAnimatedWEBP", "filename_prefix fps lossless quality method", ""),
    nm("SaveAnimatedPNG", "SaveAnimatedPNG", "filename_prefix fps compress_level", ""),
    # our ImageScale v2 calls ComfyUI's ``upscale_method`` ``method`` (v1 used ComfyUI's name)
    nm("ImageScale", "ImageScale", "upscale_method width height crop", "image",
       rename={"upscale_method": "method"}, version=2),
    nm("ImageScaleBy", "ImageScaleBy", "upscale_method scale_by", "image",
       rename={"upscale_method": "method"}),
    nm("ImageUpscaleWithModel", "ImageUpscaleWithModel", "", "image"),
    nm("ImageInvert", "ImageInvert", "", "image"),
    nm("ImageBlend", "ImageBlend", "blend_factor blend_mode", "image"),
    nm("ImageCrop", "ImageCrop", "width height x y", "image"),
    nm("RepeatImageBatch", "RepeatImageBatch", "amount", "image"),
    # comfy_extras/nodes_morphology.py: class "Morphology", shown in ComfyUI as "ImageMorphology"
    nm("Morphology", "ImageMorphology", "operation kernel_size", "image"),
    nm("ImageRGBToYUV", "ImageRGBToYUV", "", "Y U V"),
    nm("ImageYUVToRGB", "ImageYUVToRGB", "", "image"),
    nm("InvertMask", "InvertMask", "", "mask"),
    nm("MaskToImage", "MaskToImage", "", "image"),
    nm("ImageToMask", "ImageToMask", "channel", "mask"),
]
