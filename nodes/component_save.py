"""Save a diffusion model, a VAE or text encoders alone, with LoRAs and merges baked in, as
ComfyUI's ModelSave, VAESave and CLIPSave; see :mod:`nodegen.models.component_save`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, node

_CATEGORY = "advanced/model_merging"


def _prefix(default: str):
    return Input.string("filename_prefix", default,
                        description="File name start inside the output folder; never overwrites")


def _save(ctx, node_type: str, what: str, build, prefix: str) -> list:
    from nodegen.models.checkpoint_save import save_exclusive

    try:
        parts = build()
    except (ValueError, AttributeError, KeyError) as e:
        raise ValueError(f"{node_type}: input '{what}': {e}") from None
    paths = [str(save_exclusive(sd, ctx.output_dir, f"{prefix}_{suffix}" if suffix else prefix))
             for suffix, sd in parts.items()]
    ctx.ui(paths=paths)
    return paths


@node("ModelSave", category=_CATEGORY, output=True,
      description="Save the diffusion model alone (SD1.x / SD2 / SDXL) as .safetensors in the output folder.",
      inputs=[Input.link("model", T.MODEL), _prefix("diffusion_models/ComfyUI")],
      keywords=("save", "export", "unet"))
def model_save(ctx, model, filename_prefix):
    from nodegen.models.component_save import diffusion_model_state_dict

    _save(ctx, "ModelSave", "model", lambda: {"": diffusion_model_state_dict(model)}, filename_prefix)
    return {}


@node("VAESave", category=_CATEGORY, output=True,
      description="Save the VAE alone as .safetensors in the output folder (the layout of vae folder files).",
      inputs=[Input.link("vae", T.VAE), _prefix("vae/ComfyUI_vae")], keywords=("save", "export"))
def vae_save(ctx, vae, filename_prefix):
    from nodegen.models.component_save import vae_state_dict

    _save(ctx, "VAESave", "vae", lambda: {"": vae_state_dict(vae)}, filename_prefix)
    return {}


@node("CLIPSave", category=_CATEGORY, output=True,
      description="Save each text encoder as its own .safetensors (prefix_clip_l, _clip_g, _t5xxl ...) in "
                  "the output folder.",
      inputs=[Input.link("clip", T.CLIP), _prefix("clip/ComfyUI")], keywords=("save", "export", "text encoder"))
def clip_save(ctx, clip, filename_prefix):
    from nodegen.models.component_save import text_encoder_state_dicts

    _save(ctx, "CLIPSave", "clip", lambda: text_encoder_state_dicts(clip), filename_prefix)
    return {}
