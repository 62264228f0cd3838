"""StyleModelLoader and StyleModelApply with ComfyUI's names, inputs and outputs: Flux.1 Redux
image prompts (see :mod:`nodegen.models.redux`). A SigLIP image tower (CLIPVisionLoader) encodes
the image, the style model turns its last hidden state into tokens of the text encoder's width,
and StyleModelApply appends them to every entry of the conditioning, as ComfyUI does: the tokens of
a batch of images go one after another into one sequence; ``multiply`` scales them by
``strength``, ``attn_bias`` adds ``log(strength)`` to the attention paid to them
(:mod:`nodegen.diffusion.attention_bias`)."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node
from nodegen.models.resolve import choices_for, fingerprint_for, load_model_file

torch = lazy_import("torch")

STRENGTH_TYPES = ["multiply", "attn_bias"]


@node("StyleModelLoader", category="loaders",
      description="Load a style model (Flux.1 Redux) that turns an image encoding into prompt tokens.",
      inputs=[Input.file("style_model_name", "style_models", choices=choices_for("style_models"),
                         description="flux1-redux-dev.safetensors (or another Redux file) in style_models")],
      outputs=[Output("style_model", T.STYLE_MODEL)],
      fingerprint=fingerprint_for("style_models", "style_model_name"),
      keywords=("redux", "style model", "image prompt", "flux"))
def style_model_loader(ctx, style_model_name):
    from nodegen.models.redux import load_style_model

    return load_model_file(ctx, "style_models", style_model_name, "StyleModelLoader", "style_model_name",
                           lambda path, mgr: load_style_model(path, manager=mgr))


@node("StyleModelApply", category="conditioning/style_model",
      description="Add an image prompt to a conditioning: the style model's tokens for the encoded image "
                  "are appended to the text's (Flux.1 Redux).",
      inputs=[Input.link("conditioning", T.CONDITIONING), Input.link("style_model", T.STYLE_MODEL),
              Input.link("clip_vision_output", T.CLIP_VISION_OUTPUT),
              Input.float("strength", 1.0, min=0.0, max=10.0, step=0.001),
              Input.choice("strength_type", STRENGTH_TYPES, "multiply",
                           description="multiply: scale the image tokens by strength; attn_bias: weight "
                                       "the attention to them by strength (Flux)")],
      outputs=[Output("conditioning", T.CONDITIONING)],
      keywords=("redux", "style model", "image prompt", "flux"))
def style_model_apply(ctx, conditioning, style_model, clip_vision_output, strength=1.0, strength_type="multiply"):
    try:
        tokens = style_model.tokens(clip_vision_output.last_hidden_state, getattr(ctx, "device", None))
    except ValueError as e:
        raise ValueError(f"StyleModelApply: clip_vision_output: {e}") from e
    tokens = tokens.flatten(0, 1).unsqueeze(0)  # a batch of images: one sequence, as ComfyUI
    if strength_type == "multiply":
        tokens = tokens * strength
    out = []
    for item in conditioning:
        if item.embeds.shape[-1] != tokens.shape[-1]:
            raise ValueError(f"StyleModelApply: conditioning is {item.embeds.shape[-1]} wide but the style "
                             f"model makes {tokens.shape[-1]}-wide tokens (a Flux text encoding is needed)")
        add = tokens.to(item.embeds).expand(item.embeds.shape[0], -1, -1)
        extras = item.extras
        if strength_type == "attn_bias" and strength != 1.0:  # as ComfyUI: a bias only when it changes something
            from nodegen.diffusion.attention_bias import with_range

            extras = with_range(extras, item.embeds.shape[1], tokens.shape[1], strength)
        out.append(item.copy(embeds=torch.cat((item.embeds, add), dim=1), extras=extras))
    return out
