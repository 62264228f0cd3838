"""CLIP for Chroma: T5-XXL alone, tokenized as ComfyUI's Chroma text encoder does (ComfyUI's
``CLIPLoader`` type "chroma") and run as diffusers' ChromaPipeline runs T5.

* Tokens: the prompt's T5 tokens and the EOS token, no padding to a fixed length (ComfyUI: no
  padding, at least one token). :class:`T5TokenizerOptions <ChromaTextEncoder.with_tokenizer_options>`
  adds ``min_padding`` pad tokens after the EOS and pads to ``min_length`` (ComfyUI's node of that
  name; its Chroma workflows use ``min_padding`` 1, the one pad token Chroma was trained to see).
* T5 runs with an attention mask that hides the pad tokens (diffusers' ChromaPipeline and Chroma's
  own code do so; ComfyUI does not mask them), and the transformer sees every token given to it.
  With the same tokens, this is ChromaPipeline's encoding at ``max_sequence_length`` = that token
  count (its transformer mask then hides nothing).
* ``(word:1.2)`` weights use ComfyUI's rule against the empty prompt, which for Chroma is all pad
  tokens (ComfyUI's PixArt/Chroma T5); an unweighted prompt is unchanged.
* No pooled output and no guidance: a Chroma model takes neither.
"""

from __future__ import annotations

from typing import Any

import torch

from nodegen.diffusion.conditioning import CondItem
from nodegen.diffusion.prompt_weights import is_weighted, parse_weights
from nodegen.models.clip_encode import apply_weights, tokenize_weighted
from nodegen.models.flow_text import FlowTextEncoder

ROLE = "t5"


def chroma_tokens(tokenizer, text: str, min_padding: int = 0, min_length: int = 0) -> tuple[list[int], list[float], int]:
    """``(ids, weights, n_real)``: the prompt's tokens + EOS, then pad tokens (``min_padding`` of
    them, then up to ``min_length``, at least one token in all); ``n_real`` counts the tokens
    before the padding."""
    ids, weights = tokenize_weighted(tokenizer, text)
    ids, weights = ids + [tokenizer.eos_token_id], weights + [1.0]
    n_real = len(ids)
    pads = max(int(min_padding), int(min_length) - n_real, 0)
    return ids + [tokenizer.pad_token_id] * pads, weights + [1.0] * pads, n_real


class ChromaTextEncoder(FlowTextEncoder):
    """The CLIP value of Chroma models: ``parts`` holds ``{"t5": (tokenizer, T5EncoderModel)}``."""

    def __init__(self, family: str, parts: dict[str, tuple[Any, torch.nn.Module]], *, min_padding: int = 0,
                 min_length: int = 0, **kw: Any) -> None:
        others = [r for r in parts if r != ROLE]
        if family != "chroma" or others:
            raise ValueError(f"Chroma's text encoder is T5-XXL alone; this one would hold {', '.join(parts)} "
                             "(load one t5xxl file with CLIPLoader type 'chroma')")
        super().__init__(family, parts, **kw)
        self.min_padding = int(min_padding)
        self.min_length = int(min_length)

    def with_tokenizer_options(self, min_padding: int, min_length: int) -> ChromaTextEncoder:
        """A clone that pads as ComfyUI's T5TokenizerOptions asks."""
        if min_padding < 0 or min_length < 0:
            raise ValueError(f"min_padding and min_length must be >= 0, got {min_padding} and {min_length}")
        c = self.clone()
        c.min_padding, c.min_length = int(min_padding), int(min_length)
        return c

    def _run(self, encoder, ids: list[int], n_real: int | None) -> torch.Tensor:
        """T5's last hidden state for ``ids``; the tokens from ``n_real`` on are masked (None: none)."""
        device = next(encoder.parameters()).device
        row = torch.tensor([ids], device=device)
        mask = torch.ones_like(row)
        if n_real is not None:
            mask[:, n_real:] = 0
        return encoder(row, attention_mask=mask)[0]

    def encode_parts(self, texts: dict[str, str], device=None, dtype=None) -> list[CondItem]:
        text = texts.get(ROLE, "")
        tok = self.parts[ROLE][0]
        ids, weights, n_real = chroma_tokens(tok, text, self.min_padding, self.min_length)
        with torch.no_grad(), self.use(device, dtype) as encs:
            enc = encs[ROLE]
            z = self._run(enc, ids, n_real)
            if is_weighted(parse_weights(text)):
                z_empty = self._run(enc, [tok.pad_token_id] * len(ids), None)  # ComfyUI: all pads, unmasked
                z = apply_weights(z, torch.tensor([weights]), z_empty)
        return [CondItem(z.float().cpu(), None, {})]

    def encode(self, text: str, device=None, dtype=None, embeddings: Any = None) -> list[CondItem]:
        """``embeddings`` (textual inversion) is accepted for the CLIP socket's API and not applied."""
        return self.encode_parts({ROLE: text}, device, dtype)

    def __repr__(self) -> str:
        return (f"ChromaTextEncoder(t5, min_padding={self.min_padding}, min_length={self.min_length}, "
                f"patches={len(self.patches)})")
