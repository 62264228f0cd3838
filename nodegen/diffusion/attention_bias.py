"""Attention biases on ranges of text tokens, as ComfyUI's StyleModelApply builds them with
``strength_type="attn_bias"`` (Flux.1 Redux): the image-prompt tokens are weighted by adding
``log(strength)`` to every attention score that looks at them, instead of scaling the tokens.

A conditioning carries the ranges in ``extras["attention_bias"]``: ``(start, count, bias)`` for
each StyleModelApply in the order they were applied (``start``: the first token of the range in the
text sequence). :func:`bias_mask` builds the joint attention's additive mask over ``[text, image]``
tokens exactly as ComfyUI's quadrant copies do: a range's columns get its bias in the rows that
existed when it was added (the text before it and every image token), not in its own rows nor in
the rows of ranges added after it. ``log(0)`` is ``-inf``: those tokens are not looked at at all.
"""

from __future__ import annotations

import math

import torch

KEY = "attention_bias"


def with_range(extras: dict, start: int, count: int, strength: float) -> dict:
    """``extras`` with one more biased range (a copy)."""
    bias = math.log(strength) if strength > 0 else -math.inf
    return {**extras, KEY: (*extras.get(KEY, ()), (int(start), int(count), float(bias)))}


def bias_mask(ranges, n_txt: int, n_img: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """The additive attention mask ``[1, 1, L, L]`` (``L = n_txt + n_img``; text tokens first)."""
    size = n_txt + n_img
    mask = torch.zeros(size, size, dtype=dtype, device=device)
    for start, count, bias in ranges:
        if start + count > n_txt:
            raise ValueError(f"an attention-biased token range ({start}..{start + count}) lies beyond the "
                             f"{n_txt} text tokens")
        cols = slice(start, start + count)
        mask[:start, cols] = bias
        mask[n_txt:, cols] = bias
    return mask[None, None]
