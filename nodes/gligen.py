"""GLIGENLoader and GLIGENTextBoxApply with ComfyUI's names, inputs and outputs: GLIGEN box grounding
for SD1.x (see :mod:`nodegen.models.gligen`). GLIGENTextBoxApply adds a phrase and its box (pixels,
multiples of 8) to every entry of a conditioning; the sampler then runs GLIGEN's fusers in the UNet
with those boxes, at every step, for the positive and (as ComfyUI) the negative prediction."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node
from nodegen.models.resolve import choices_for, fingerprint_for, load_model_file

MAX_SIZE = 16384
#: Text encoder families GLIGEN text-box models exist for.
GLIGEN_FAMILIES = ("sd1",)


@node("GLIGENLoader", category="loaders",
      description="Load a GLIGEN text-box model (e.g. gligen_sd14_textbox_pruned.safetensors) for box-grounded "
                  "prompts on SD1.x.",
      inputs=[Input.file("gligen_name", "gligen", choices=choices_for("gligen"),
                         description="A GLIGEN file in the gligen folder")],
      outputs=[Output("gligen", T.GLIGEN)],
      fingerprint=fingerprint_for("gligen", "gligen_name"),
      keywords=("gligen", "box", "layout", "grounding", "region"))
def gligen_loader(ctx, gligen_name):
    from nodegen.models.gligen import load_gligen

    return load_model_file(ctx, "gligen", gligen_name, "GLIGENLoader", "gligen_name", lambda path, _mgr: load_gligen(path))


@node("GLIGENTextBoxApply", category="conditioning/gligen",
      description="Ground a phrase in a box of the image (GLIGEN, SD1.x): the phrase's text embedding and the "
                  "box go with every entry of the conditioning.",
      inputs=[Input.link("conditioning_to", T.CONDITIONING), Input.link("clip", T.CLIP),
              Input.link("gligen_textbox_model", T.GLIGEN),
              Input.string("text", "", multiline=True, description="What is in the box (best: an object of the prompt)"),
              Input.int("width", 64, min=8, max=MAX_SIZE, step=8, description="Box width in pixels"),
              Input.int("height", 64, min=8, max=MAX_SIZE, step=8, description="Box height in pixels"),
              Input.int("x", 0, min=0, max=MAX_SIZE, step=8, description="Box left edge in pixels"),
              Input.int("y", 0, min=0, max=MAX_SIZE, step=8, description="Box top edge in pixels")],
      outputs=[Output("conditioning", T.CONDITIONING)],
      keywords=("gligen", "box", "layout", "grounding", "region"))
def gligen_textbox_apply(ctx, conditioning_to, clip, gligen_textbox_model, text, width=64, height=64, x=0, y=0):
    from nodegen.models.embeddings import lookup_for
    from nodegen.models.gligen import phrase_embedding, pixel_box

    for name, v in (("width", width), ("height", height), ("x", x), ("y", y)):
        if v % 8:
            raise ValueError(f"GLIGENTextBoxApply: input '{name}' must be a multiple of 8, got {v}")
    family = getattr(clip, "family", None)
    if family not in GLIGEN_FAMILIES:
        raise ValueError(f"GLIGENTextBoxApply: clip is a {family or type(clip).__name__} text encoder; GLIGEN "
                         "text-box models are for SD1.x (CLIP ViT-L)")
    embedding = phrase_embedding(clip, text, getattr(ctx, "device", None), lookup_for(getattr(ctx, "paths", None)))
    if embedding.shape[-1] != gligen_textbox_model.text_width:
        raise ValueError(f"GLIGENTextBoxApply: clip encodes {embedding.shape[-1]}-wide text; gligen_textbox_model "
                         f"takes {gligen_textbox_model.text_width}-wide phrase embeddings")
    box = pixel_box(embedding, width, height, x, y, text)
    out = []
    for item in conditioning_to:
        prev = item.extras.get("gligen")
        boxes = [*prev[2], box] if prev else [box]
        out.append(item.copy(extras=dict(item.extras, gligen=("position", gligen_textbox_model, boxes))))
    return out
