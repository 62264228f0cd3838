"""ComfyUI core nodes added to close the gap to published SD1/SDXL/SD3/Flux workflows: Perp-Neg
(comfy_extras/nodes_perpneg.py), SIGMAS edits and per-sampler nodes (nodes_custom_sampler.py),
latent operations (nodes_latent.py), Epsilon Scaling (nodes_eps.py), and ControlNetApplySD3
(nodes_sd3.py: ControlNetApplyAdvanced with a required VAE), attention multipliers
(nodes_attention_multiply.py), MaskPreview (nodes_mask.py) and LoadImageOutput (nodes.py: LoadImage
whose file names carry ComfyUI's " [output]" folder suffix, which LoadImage resolves),
OptimalStepsScheduler (nodes_optimalsteps.py), TemporalScoreRescaling (nodes_eps.py),
SamplerEulerCFGpp / SamplerLCMUpscale (nodes_advanced_samplers.py), ModelMergeSD2 (nodes_model_merging_model_specific.py),
LatentConcat / LatentCut (nodes_latent.py), Mahiro (nodes_mahiro.py) and ModelSave / VAESave /
CLIPSave (nodes_model_merging.py), TCFG (nodes_tcfg.py), FreSca (nodes_fresca.py) and
SkipLayerGuidanceDiTSimple (nodes_slg.py), DiffControlNetLoader (nodes.py), and the newer
BatchImagesNode / BatchMasksNode / BatchLatentsNode and ResizeImageMaskNode (nodes_post_processing.py),
whose "autogrow" and "dynamic combo" inputs ComfyUI names ``images.image0`` and ``resize_type.width``,
ResolutionSelector (nodes_resolution.py), the Switch (nodes_logic.py's ComfySwitchNode), and
ImageCropV2 / PrimitiveBoundingBox (nodes_images.py)."""

from nodegen.formats.comfy.node_map import nm
from nodegen.image.resize_rules import RESIZE_TYPES

MAPS = [
    nm("PerpNegGuider", "PerpNegGuider", "cfg neg_scale", "guider"),
    nm("PerpNeg", "PerpNeg", "neg_scale", "model"),
    nm("SetFirstSigma", "SetFirstSigma", "sigma", "sigmas"),
    nm("ExtendIntermediateSigmas", "ExtendIntermediateSigmas", "steps start_at_sigma end_at_sigma spacing", "sigmas"),
    nm("ManualSigmas", "ManualSigmas", "sigmas", "sigmas"),
    nm("SamplingPercentToSigma", "SamplingPercentToSigma", "sampling_percent return_actual_sigma", "sigma_value"),
    nm("SamplerDPMAdaptative", "SamplerDPMAdaptative",
       "order rtol atol h_init pcoeff icoeff dcoeff accept_safety eta s_noise", "sampler"),
    nm("SamplerER_SDE", "SamplerER_SDE", "solver_type max_stage eta s_noise", "sampler"),
    nm("SamplerSASolver", "SamplerSASolver",
       "eta sde_start_percent sde_end_percent s_noise predictor_order corrector_order use_pece simple_order_2",
       "sampler"),
    nm("SamplerSEEDS2", "SamplerSEEDS2", "solver_type eta s_noise r", "sampler"),
    nm("LatentApplyOperation", "LatentApplyOperation", "", "latent"),
    nm("LatentApplyOperationCFG", "LatentApplyOperationCFG", "", "model"),
    nm("LatentOperationTonemapReinhard", "LatentOperationTonemapReinhard", "multiplier", "operation"),
    nm("LatentOperationSharpen", "LatentOperationSharpen", "sharpen_radius sigma alpha", "operation"),
    nm("Epsilon Scaling", "EpsilonScaling", "scaling_factor", "model"),
    nm("ControlNetApplySD3", "ControlNetApplyAdvanced", "strength start_percent end_percent", "positive negative",
       export=False),
    nm("UNetSelfAttentionMultiply", "UNetSelfAttentionMultiply", "q k v out", "model"),
    nm("UNetCrossAttentionMultiply", "UNetCrossAttentionMultiply", "q k v out", "model"),
    nm("CLIPAttentionMultiply", "CLIPAttentionMultiply", "q k v out", "clip"),
    nm("MaskPreview", "MaskPreview", "", ""),
    nm("LoadImageOutput", "LoadImage", "image - -", "image mask", export=False),
    nm("OptimalStepsScheduler", "OptimalStepsScheduler", "model_type steps denoise", "sigmas"),
    nm("TemporalScoreRescaling", "TemporalScoreRescaling", "tsr_k tsr_sigma", "patched_model"),
    nm("SamplerEulerCFGpp", "SamplerEulerCFGpp", "version", "sampler"),
    nm("SamplerLCMUpscale", "SamplerLCMUpscale", "scale_ratio scale_steps upscale_method", "sampler"),
    nm("LatentConcat", "LatentConcat", "dim", "latent"),
    nm("LatentCut", "LatentCut", "dim index amount", "latent"),
    nm("Mahiro", "Mahiro", "", "patched_model"),
    nm("ModelSave", "ModelSave", "filename_prefix", ""),
    nm("VAESave", "VAESave", "filename_prefix", ""),
    nm("CLIPSave", "CLIPSave", "filename_prefix", ""),
    nm("TCFG", "TCFG", "", "patched_model"),
    nm("FreSca", "FreSca", "scale_low scale_high freq_cutoff", "model"),
    nm("DiffControlNetLoader", "DiffControlNetLoader", "control_net_name", "control_net"),
    nm("SkipLayerGuidanceDiTSimple", "SkipLayerGuidanceDiTSimple", "double_layers single_layers start_percent "
       "end_percent", "model"),
]


def _autogrow(comfy: str, group: str, prefix: str, output: str, slots: int = 16):
    """ComfyUI's "autogrow" inputs (``images.image0``, ``images.image1``, ...) are our ``image0``, ..."""
    return nm(comfy, comfy, "", output, rename={f"{group}.{prefix}{i}": f"{prefix}{i}" for i in range(slots)})


# BatchImagesNode / BatchMasksNode / BatchLatentsNode (nodes_post_processing.py; ComfyUI's front end
# puts BatchImagesNode in place of ImageBatch)
MAPS += [_autogrow("BatchImagesNode", "images", "image", "image"),
         _autogrow("BatchMasksNode", "masks", "mask", "mask"),
         _autogrow("BatchLatentsNode", "latents", "latent", "latent")]

#: ResizeImageMaskNode's widget settings per resize type (its DynamicCombo ``resize_type``), in
#: ComfyUI's order: the node's own table less ``match``, which is a link, not a widget.
_RESIZE_SETTINGS = {kind: tuple(s for s in settings if s != "match") for kind, settings in RESIZE_TYPES.items()}
_RESIZE_ALL = tuple(dict.fromkeys(s for settings in _RESIZE_SETTINGS.values() for s in settings))


def _resize_widgets(values: list) -> tuple:
    """The editor saves the chosen type's settings right after ``resize_type``."""
    chosen = values[0] if values else None
    return ("resize_type", *(f"resize_type.{s}" for s in _RESIZE_SETTINGS.get(chosen, ())), "scale_method")


MAPS.append(nm("ResizeImageMaskNode", "ResizeImageMaskNode",
               " ".join(["resize_type", *(f"resize_type.{s}" for s in _RESIZE_ALL), "scale_method"]), "resized",
               rename={f"resize_type.{s}": s for s in (*_RESIZE_ALL, "match")}, positional=_resize_widgets))

MAPS += [nm("ResolutionSelector", "ResolutionSelector", "aspect_ratio megapixels multiple minimum", "width height"),
         nm("ComfySwitchNode", "ComfySwitchNode", "switch", "output")]

_BOX = ("x", "y", "width", "height")
_BOX_DEFAULTS = {"x": 0, "y": 0, "width": 512, "height": 512}


def _split_box(value: dict) -> dict:
    return {k: value[k] for k in _BOX if k in value}


def _join_box(values: dict) -> dict:
    return {k: values.get(k, _BOX_DEFAULTS[k]) for k in _BOX}


# ImageCropV2 and PrimitiveBoundingBox (nodes_images.py): ImageCropV2's ``crop_region`` widget holds
# a dict, which is our x / y / width / height
MAPS += [nm("PrimitiveBoundingBox", "PrimitiveBoundingBox", "x y width height", "bounding_box"),
         nm("ImageCropV2", "ImageCropV2", "crop_region", "image", split={"crop_region": _split_box},
            join={"crop_region": (_BOX, _join_box)})]

# Old names ComfyUI's front end still renames on load (comfy_extras/nodes_replacements.py): the
# T2I-Adapter loader (ControlNetLoader reads adapters) and ConditioningAverage's early name with a space.
MAPS += [nm("T2IAdapterLoader", "ControlNetLoader", "t2i_adapter_name", "control_net",
            rename={"t2i_adapter_name": "control_net_name"}, export=False),
         nm("ConditioningAverage ", "ConditioningAverage", "conditioning_to_strength", "conditioning", export=False)]

# ComfyMathExpression (nodes_math.py): its autogrow inputs values.a ... are our a ...
MAPS.append(nm("ComfyMathExpression", "ComfyMathExpression", "expression", "float int",
               rename={f"values.{n}": n for n in "abcdefghij"}))
