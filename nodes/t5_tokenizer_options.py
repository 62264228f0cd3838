"""T5TokenizerOptions (ComfyUI's node of that name): how many pad tokens a T5 prompt gets. nodegen
applies it to Chroma's text encoder (``CLIPLoader`` type "chroma"), whose prompts are not padded to a
fixed length; SD3's and Flux's T5 prompts keep diffusers' fixed lengths, so the node refuses them
rather than pass them on unchanged."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node


@node("T5TokenizerOptions", category="conditioning",
      description="Pad Chroma's T5 prompts: min_padding pad tokens after the text, then up to min_length tokens.",
      inputs=[Input.link("clip", T.CLIP),
              Input.int("min_padding", 0, min=0, max=10000, description="Pad tokens after the end of the text"),
              Input.int("min_length", 0, min=0, max=10000, description="Pad to at least this many tokens")],
      outputs=[Output("clip", T.CLIP)], keywords=("t5", "chroma", "padding", "tokenizer"))
def t5_tokenizer_options(ctx, clip, min_padding=0, min_length=0):
    if not hasattr(clip, "with_tokenizer_options"):
        raise ValueError(f"T5TokenizerOptions: input 'clip' is a {getattr(clip, 'family', type(clip).__name__)} text "
                         "encoder; nodegen applies T5 tokenizer options to Chroma text encoders (CLIPLoader type "
                         "'chroma') only: SD3 and Flux pad T5 prompts to diffusers' fixed lengths")
    return clip.with_tokenizer_options(int(min_padding), int(min_length))
