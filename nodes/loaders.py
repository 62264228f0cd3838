"""Loader nodes: checkpoints (MODEL, CLIP, VAE), diffusers model folders, VAEs, LoRAs, and CLIP skip.

Files are resolved by name in the model folders (``ctx.paths``) and loaded through the model
manager (``ctx.models``), which keeps them across runs keyed by path + size + mtime.
"""

from __future__ import annotations

from typing import Any

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node
from nodegen.models.resolve import choices_for, fingerprint_for, resolve_model
from nodegen.sharing.hashing import prefetch

PREDICTIONS = ["auto", "epsilon", "v_prediction"]


def _manager(ctx: Any):
    """The run's model manager (the engine's: loaded models are shared across runs)."""
    if getattr(ctx, "models", None) is None:
        raise RuntimeError("this run has no model manager: run nodes through an Engine or Executor, "
                           "or give RunContext(models=ModelManager())")
    return ctx.models


@node("CheckpointLoader", category="loaders",
      description="Load a Stable Diffusion checkpoint (SD1, SD2, SDXL; single file or diffusers folder).",
      inputs=[Input.file("ckpt_name", "checkpoints", choices=choices_for("checkpoints"),
                         description="Checkpoint in the checkpoints folder"),
              Input.choice("prediction", PREDICTIONS, "auto",
                           description="What the model predicts; auto detects it (SD2 files: v_prediction)")],
      outputs=[Output("model", T.MODEL), Output("clip", T.CLIP), Output("vae", T.VAE)],
      fingerprint=fingerprint_for("checkpoints", "ckpt_name"),
      keywords=("model", "checkpoint", "safetensors", "load"))
def checkpoint_loader(ctx, ckpt_name, prediction="auto"):
    path = resolve_model(ctx.paths, "checkpoints", ckpt_name, "CheckpointLoader", "ckpt_name")
    prefetch(path)  # the hash saved images record, computed while the model loads and samples
    model, clip, vae = _manager(ctx).load_checkpoint(path, prediction=prediction)
    return {"model": model, "clip": clip, "vae": vae}


def _diffusers_folders(env: Any = None) -> list[str]:
    """The model folders (holding model_index.json) under the ``diffusers`` folders, as ComfyUI's
    DiffusersLoader lists them; loose files there are left out."""
    from nodegen.models.paths import ModelPaths

    paths = getattr(env, "paths", None) or ModelPaths()
    found = []
    for name in paths.list("diffusers"):
        try:
            p = paths.resolve("diffusers", name)
        except ValueError:
            continue
        if p is not None and p.is_dir():
            found.append(name)
    return found


@node("DiffusersLoader", category="advanced/loaders/deprecated",
      description="Load a diffusers-format model folder (model_index.json) from the diffusers folder.",
      inputs=[Input.file("model_path", "diffusers", choices=_diffusers_folders,
                         description="Model folder in the diffusers folder")],
      outputs=[Output("model", T.MODEL), Output("clip", T.CLIP), Output("vae", T.VAE)],
      fingerprint=fingerprint_for("diffusers", "model_path"),
      keywords=("model", "diffusers", "folder", "load"))
def diffusers_loader(ctx, model_path):
    path = resolve_model(ctx.paths, "diffusers", model_path, "DiffusersLoader", "model_path")
    if not (path / "model_index.json").is_file():
        what = "a file" if path.is_file() else "a folder without model_index.json"
        raise ValueError(f"DiffusersLoader: model_path {model_path!r} is {what} ({path}), not a diffusers model "
                         f"folder; single files load with CheckpointLoader (ComfyUI's CheckpointLoaderSimple)")
    model, clip, vae = _manager(ctx).load_checkpoint(path)
    return {"model": model, "clip": clip, "vae": vae}


#: Latent scaling of each family. A standalone VAE file cannot tell SD1/SD2 from SDXL (same
#: shapes), so the user says which models it is for; "auto" reads the file's metadata (or the
#: checkpoint's family) and otherwise assumes SD1/SD2.
VAE_LATENT_FORMATS = {"auto": None, "sd1/sd2": 0.18215, "sdxl": 0.13025}


@node("VAELoader", category="loaders",
      description="Load a VAE (a VAE file or a checkpoint's VAE), or a TAESD tiny autoencoder (fast, coarser): "
                  "taesd, taesdxl, taesd3 and taef1 stand for madebyollin's files in vae_approx/.",
      inputs=[Input.file("vae_name", "vae", choices=choices_for("vae"), description="VAE in the vae folder"),
              Input.choice("latent_format", list(VAE_LATENT_FORMATS), "auto",
                           description="The models this VAE is for; auto: the file's metadata, else "
                                       "the scale of the model that made the latent")],
      outputs=[Output("vae", T.VAE)],
      fingerprint=fingerprint_for("vae", "vae_name"))
def vae_loader(ctx, vae_name, latent_format="auto"):
    path = resolve_model(ctx.paths, "vae", vae_name, "VAELoader", "vae_name")
    prefetch(path)
    return _manager(ctx).load_vae(path, VAE_LATENT_FORMATS[latent_format])


def _lora(ctx, lora_name: str, node_type: str):
    path = resolve_model(ctx.paths, "loras", lora_name, node_type, "lora_name")
    return _manager(ctx).load_lora(path)


@node("LoraLoader", category="loaders",
      description="Add a LoRA to the model and the text encoder.",
      inputs=[Input.link("model", T.MODEL), Input.link("clip", T.CLIP),
              Input.file("lora_name", "loras", choices=choices_for("loras"), description="LoRA in the loras folder"),
              Input.float("strength_model", 1.0, min=-10.0, max=10.0, step=0.01),
              Input.float("strength_clip", 1.0, min=-10.0, max=10.0, step=0.01)],
      outputs=[Output("model", T.MODEL), Output("clip", T.CLIP)],
      fingerprint=fingerprint_for("loras", "lora_name"), keywords=("lora", "lycoris"))
def lora_loader(ctx, model, clip, lora_name, strength_model=1.0, strength_clip=1.0):
    from nodegen.models.lora import apply_lora

    if strength_model == 0 and strength_clip == 0:
        return {"model": model, "clip": clip}
    lora = _lora(ctx, lora_name, "LoraLoader")
    new_model, new_clip = apply_lora(model, clip, lora, strength_model, strength_clip)
    return {"model": new_model, "clip": new_clip}


@node("LoraLoaderModelOnly", category="loaders", description="Add a LoRA to the model only.",
      inputs=[Input.link("model", T.MODEL),
              Input.file("lora_name", "loras", choices=choices_for("loras"), description="LoRA in the loras folder"),
              Input.float("strength_model", 1.0, min=-10.0, max=10.0, step=0.01)],
      outputs=[Output("model", T.MODEL)],
      fingerprint=fingerprint_for("loras", "lora_name"), keywords=("lora",))
def lora_loader_model_only(ctx, model, lora_name, strength_model=1.0):
    from nodegen.models.lora import apply_lora

    if strength_model == 0:
        return model
    new_model, _ = apply_lora(model, None, _lora(ctx, lora_name, "LoraLoaderModelOnly"), strength_model, 0.0)
    return new_model


@node("CLIPSetLastLayer", category="conditioning",
      description="CLIP skip: stop the text encoder at this layer (-1 = last, -2 = penultimate).",
      inputs=[Input.link("clip", T.CLIP), Input.int("stop_at_clip_layer", -1, min=-24, max=-1, step=1)],
      outputs=[Output("clip", T.CLIP)], keywords=("clip skip",))
def clip_set_last_layer(ctx, clip, stop_at_clip_layer=-1):
    try:
        return clip.set_layer(stop_at_clip_layer)
    except ValueError as e:
        raise ValueError(f"CLIPSetLastLayer: input 'stop_at_clip_layer': {e}") from e
