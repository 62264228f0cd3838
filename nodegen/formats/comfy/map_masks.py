"""ComfyUI mask, compositing and inpainting helpers, image batch/size helpers, and Canny."""

from nodegen.formats.comfy.node_map import nm


def _canny_to_ours(value):
    """ComfyUI's Canny thresholds are on the unnormalised Sobel magnitude (a unit step scores 4);
    ours divide it by 4 (see nodegen.preprocess.edges.canny_map). Exact in binary both ways."""
    return value / 4 if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _canny_to_comfy(value):
    return value * 4 if isinstance(value, (int, float)) and not isinstance(value, bool) else value


MAPS = [
    nm("GrowMask", "GrowMask", "expand tapered_corners", "mask"),
    nm("SolidMask", "SolidMask", "value width height", "mask"),
    nm("CropMask", "CropMask", "x y width height", "mask"),
    nm("ThresholdMask", "ThresholdMask", "value", "mask"),
    nm("EmptyImage", "EmptyImage", "width height batch_size color", "image"),
    nm("ImageFromBatch", "ImageFromBatch", "batch_index length", "image"),
    nm("FeatherMask", "FeatherMask", "left top right bottom", "mask"),
    nm("ImageColorToMask", "ImageColorToMask", "color", "mask"),
    nm("MaskComposite", "MaskComposite", "x y operation", "mask"),
    nm("ImageCompositeMasked", "ImageCompositeMasked", "x y resize_source", "image"),
    nm("ImagePadForOutpaint", "ImagePadForOutpaint", "left top right bottom feathering", "image mask"),
    nm("DifferentialDiffusion", "DifferentialDiffusion", "strength", "model"),
    nm("LatentBlend", "LatentBlend", "blend_factor", "latent"),
    nm("LatentComposite", "LatentComposite", "x y feather", "latent"),
    nm("LatentCompositeMasked", "LatentCompositeMasked", "x y resize_source", "latent"),
    nm("ImageScaleToTotalPixels", "ImageScaleToTotalPixels", "upscale_method megapixels resolution_steps", "image"),
    nm("ImageBatch", "ImageBatch", "", "image"),
    nm("SplitImageWithAlpha", "SplitImageWithAlpha", "", "image mask"),
    nm("JoinImageWithAlpha", "JoinImageWithAlpha", "", "image"),
    nm("PorterDuffImageComposite", "PorterDuffImageComposite", "mode", "image mask"),
    nm("Canny", "CannyEdges", "low_threshold high_threshold", "image",
       to_ours={"low_threshold": _canny_to_ours, "high_threshold": _canny_to_ours},
       to_comfy={"low_threshold": _canny_to_comfy, "high_threshold": _canny_to_comfy}),
]
