"""ComfyUI text encoding and conditioning nodes (ControlNet application included)."""

from nodegen.formats.comfy.node_map import nm

MAPS = [
    nm("CLIPTextEncode", "CLIPTextEncode", "text", "conditioning"),
    nm("CLIPTextEncodeSDXL", "CLIPTextEncodeSDXL",
       "width height crop_w crop_h target_width target_height text_g text_l", "conditioning"),
    nm("CLIPTextEncodeSDXLRefiner", "CLIPTextEncodeSDXLRefiner", "ascore width height text",
       "conditioning"),
    nm("ConditioningCombine", "ConditioningCombine", "", "conditioning"),
    nm("ConditioningConcat", "ConditioningConcat", "", "conditioning"),
    nm("ConditioningZeroOut", "ConditioningZeroOut", "", "conditioning"),
    nm("ConditioningSetArea", "ConditioningSetArea", "width height x y strength", "conditioning"),
    nm("GLIGENTextBoxApply", "GLIGENTextBoxApply", "text width height x y", "conditioning"),
    nm("ConditioningSetAreaStrength", "ConditioningSetAreaStrength", "strength", "conditioning"),
    nm("ConditioningSetAreaPercentage", "ConditioningSetAreaPercentage", "width height x y strength", "conditioning"),
    nm("ControlNetApply", "ControlNetApply", "strength", "conditioning"),
    # newer ComfyUI adds an optional ``vae`` link (for some ControlNet types): kept both ways
    nm("ControlNetApplyAdvanced", "ControlNetApplyAdvanced", "strength start_percent end_percent",
       "positive negative"),
    nm("SetUnionControlNetType", "SetUnionControlNetType", "type", "control_net"),
    nm("ControlNetInpaintingAliMamaApply", "ControlNetInpaintingAliMamaApply", "strength start_percent end_percent",
       "positive negative"),
    nm("InpaintModelConditioning", "InpaintModelConditioning", "noise_mask", "positive negative latent"),
    nm("InstructPixToPixConditioning", "InstructPixToPixConditioning", "", "positive negative latent"),
    nm("unCLIPConditioning", "unCLIPConditioning", "strength noise_augmentation", "conditioning"),
]
