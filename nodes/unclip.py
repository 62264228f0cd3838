"""unCLIPCheckpointLoader and unCLIPConditioning with ComfyUI's names, inputs and outputs: SD 2.1
unCLIP models (``sd21-unclip-h`` / ``-l``) conditioned on a CLIP image embedding.

The checkpoint loader gives MODEL, CLIP and VAE as CheckpointLoaderSimple does (which also loads
these files) plus the CLIP image tower the checkpoint carries. unCLIPConditioning adds an encoded
image (CLIPVisionEncode) to every entry of a conditioning; the sampler turns the entries into the
UNet's class label (:mod:`nodegen.diffusion.unclip`)."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node
from nodegen.models.resolve import choices_for, fingerprint_for, resolve_model
from nodegen.sharing.hashing import prefetch

from .loaders import _manager

NODE = "unCLIPCheckpointLoader"


@node(NODE, category="loaders",
      description="Load an SD 2.1 unCLIP checkpoint: model, text encoder, VAE and its CLIP image tower.",
      inputs=[Input.file("ckpt_name", "checkpoints", choices=choices_for("checkpoints"),
                         description="An unCLIP checkpoint (sd21-unclip-h / -l) in the checkpoints folder")],
      outputs=[Output("model", T.MODEL), Output("clip", T.CLIP), Output("vae", T.VAE),
               Output("clip_vision", T.CLIP_VISION)],
      fingerprint=fingerprint_for("checkpoints", "ckpt_name"),
      keywords=("unclip", "image variation", "sd21-unclip", "checkpoint"))
def unclip_checkpoint_loader(ctx, ckpt_name):
    from nodegen.clip.unclip_vision import load_unclip_vision
    from nodegen.diffusion.unclip import augmentor_of
    from nodegen.models.manager import file_key

    path = resolve_model(ctx.paths, "checkpoints", ckpt_name, NODE, "ckpt_name")
    prefetch(path)
    mgr = _manager(ctx)
    try:
        model, clip, vae = mgr.load_checkpoint(path)
        if augmentor_of(model) is None:
            raise ValueError(f"{path} is a {model.family} checkpoint without unCLIP image conditioning (no "
                             "class-label embedding in its UNet); load it with CheckpointLoaderSimple")
        vision = mgr.cached(("unclip_vision", *file_key(path)), lambda: load_unclip_vision(path, manager=mgr))
    except ValueError as e:
        raise ValueError(f"{NODE}: ckpt_name {ckpt_name!r}: {e}") from e
    return {"model": model, "clip": clip, "vae": vae, "clip_vision": vision}


@node("unCLIPConditioning", category="conditioning",
      description="Add an image prompt (a CLIP image encoding) to a conditioning for an SD 2.1 unCLIP model.",
      inputs=[Input.link("conditioning", T.CONDITIONING),
              Input.link("clip_vision_output", T.CLIP_VISION_OUTPUT),
              Input.float("strength", 1.0, min=-10.0, max=10.0, step=0.01,
                          description="Scale of the image embedding (0: the conditioning unchanged)"),
              Input.float("noise_augmentation", 0.0, min=0.0, max=1.0, step=0.01,
                          description="Noise added to the image embedding: higher keeps less of the image")],
      outputs=[Output("conditioning", T.CONDITIONING)],
      keywords=("unclip", "image variation", "image prompt", "clip vision"))
def unclip_conditioning(ctx, conditioning, clip_vision_output, strength=1.0, noise_augmentation=0.0):
    from nodegen.diffusion.unclip import EXTRAS_KEY

    if strength == 0:
        return conditioning
    if getattr(clip_vision_output, "image_embeds", None) is None:
        raise ValueError("unCLIPConditioning: input 'clip_vision_output' has no image embeddings "
                         "(connect CLIPVisionEncode)")
    entry = {"clip_vision_output": clip_vision_output, "strength": float(strength),
             "noise_augmentation": float(noise_augmentation)}
    out = []
    for item in conditioning:
        entries = [*(item.extras.get(EXTRAS_KEY) or []), entry]
        out.append(item.copy(extras=dict(item.extras, **{EXTRAS_KEY: entries})))
    return out
