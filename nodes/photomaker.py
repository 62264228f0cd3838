"""PhotoMakerLoader and PhotoMakerEncode with ComfyUI's names, inputs and outputs: PhotoMaker v1
(TencentARC) identity prompts for SDXL. The loader reads ``models/photomaker`` (see
:mod:`nodegen.models.photomaker`); the encoder encodes the prompt without its trigger word and
fuses the face image's id embedding into the class word's token (see
:mod:`nodegen.models.photomaker_prompt`)."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node
from nodegen.models.embeddings import text_fingerprint
from nodegen.models.resolve import choices_for, fingerprint_for, load_model_file


@node("PhotoMakerLoader", category="loaders",
      description="Load a PhotoMaker v1 id encoder (photomaker-v1.bin) for identity prompts.",
      inputs=[Input.file("photomaker_model_name", "photomaker", choices=choices_for("photomaker"),
                         description="photomaker-v1.bin (or a .safetensors id encoder) in the photomaker folder")],
      outputs=[Output("photomaker", T.PHOTOMAKER)],
      fingerprint=fingerprint_for("photomaker", "photomaker_model_name"),
      keywords=("photomaker", "identity", "face", "id embedding"))
def photomaker_loader(ctx, photomaker_model_name):
    from nodegen.models.photomaker import load_photomaker

    return load_model_file(ctx, "photomaker", photomaker_model_name, "PhotoMakerLoader", "photomaker_model_name",
                           lambda path, mgr: load_photomaker(path, manager=mgr))


def _check_clip(clip) -> None:
    from nodegen.models.objects import TextEncoder

    if not isinstance(clip, TextEncoder):
        family = getattr(clip, "family", type(clip).__name__)
        raise ValueError(f"PhotoMakerEncode: clip: PhotoMaker fuses into an SDXL (or SD1) CLIP text encoding, "
                         f"not a {family} text encoder")


@node("PhotoMakerEncode", category="conditioning",
      description="Encode a prompt with a face: the id embedding of the image is fused into the word "
                  "before the trigger word 'photomaker' ('photograph of a man photomaker').",
      inputs=[Input.link("photomaker", T.PHOTOMAKER), Input.link("image", T.IMAGE), Input.link("clip", T.CLIP),
              Input.string("text", "photograph of photomaker", multiline=True,
                           description="The prompt with the trigger word 'photomaker' after the class word")],
      outputs=[Output("conditioning", T.CONDITIONING)],
      fingerprint=text_fingerprint("text"),
      keywords=("photomaker", "identity", "face", "id embedding"))
def photomaker_encode(ctx, photomaker, image, clip, text="photograph of photomaker"):
    from nodegen.diffusion.conditioning import CondItem
    from nodegen.models.embeddings import lookup_for
    from nodegen.models.photomaker_prompt import split_trigger

    _check_clip(clip)
    try:
        prompt = split_trigger(text)
    except ValueError as e:
        raise ValueError(f"PhotoMakerEncode: text: {e}") from e
    device = getattr(ctx, "device", None)
    (item,) = clip.encode(prompt.text, device=device, embeddings=lookup_for(getattr(ctx, "paths", None)))
    try:
        embeds = photomaker.fuse(item.embeds, image, prompt.position, device)
    except ValueError as e:
        raise ValueError(f"PhotoMakerEncode: clip: {e} (this CLIP is {clip.family})") from e
    return [CondItem(embeds, item.pooled, dict(item.extras))]
