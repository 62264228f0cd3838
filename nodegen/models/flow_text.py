"""CLIP for SD3 / SD 3.5 (CLIP-L + CLIP-G + optional T5-XXL) and Flux.1 (CLIP-L + T5-XXL): encoding
as diffusers' StableDiffusion3Pipeline / FluxPipeline do, plus ``(word:1.2)`` weights.

* SD3: CLIP-L and CLIP-G each take 77 tokens (longer prompts are truncated, as diffusers does) and
  give their penultimate hidden layer (``layer_idx``, default -2) and projected pooled output; the
  features are concatenated (768 + 1280), zero-padded to the T5 width and followed by 256 T5 tokens
  (zeros without T5). Pooled: CLIP-L's and CLIP-G's concatenated.
* Flux: CLIP-L's pooled output (the final-normed EOS token, no projection) and 512 T5 tokens.

Weights use ComfyUI's rule (``z_empty + w * (z - z_empty)`` per weighted token, against the empty
prompt's embedding); an unweighted prompt equals diffusers' encoding bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import torch

from nodegen.diffusion.conditioning import CondItem
from nodegen.diffusion.prompt_weights import is_weighted, parse_weights
from nodegen.models.clip_encode import apply_weights, tokenize_weighted
from nodegen.models.objects import _LayeredText, use_module
from nodegen.models.patching import PatchList, patched

if TYPE_CHECKING:
    from nodegen.models.manager import ModelManager

#: family -> (roles in order, diffusers component names, T5 length)
FLOW_TEXT = {
    "sd3": (("clip_l", "clip_g", "t5"), ("text_encoder", "text_encoder_2", "text_encoder_3"), 256),
    "flux": (("clip_l", "t5"), ("text_encoder", "text_encoder_2"), 512),
    "chroma": (("t5",), ("text_encoder",), 0),  # no fixed length: nodegen.models.chroma_text
}
REQUIRED = {"sd3": (), "flux": ("clip_l", "t5"), "chroma": ("t5",)}
#: widths of the real CLIP-L / CLIP-G, for the zeros that stand in for a missing SD3 CLIP (as ComfyUI)
SD3_CLIP_WIDTHS = {"clip_l": (768, 768), "clip_g": (1280, 1280)}
CLIP_LENGTH = 77


def _row(tokenizer, ids: list[int], weights: list[float], length: int, bos: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """One padded sequence as the tokenizer with ``truncation=True, padding="max_length"`` gives it."""
    body = length - (2 if bos else 1)
    ids, weights = ids[:body], weights[:body]
    row = ([tokenizer.bos_token_id] if bos else []) + ids + [tokenizer.eos_token_id]
    roww = ([1.0] if bos else []) + weights + [1.0]
    pad = length - len(row)
    return (torch.tensor([row + [tokenizer.pad_token_id] * pad]),
            torch.tensor([roww + [1.0] * pad], dtype=torch.float32))


class FlowTextEncoder(_LayeredText):
    """The CLIP value of SD3 and Flux models. ``parts`` maps a role ("clip_l", "clip_g", "t5") to
    ``(tokenizer, encoder)``; SD3 may lack T5."""

    def __init__(self, family: str, parts: dict[str, tuple[Any, torch.nn.Module]], *, layer_idx: int | None = None,
                 source: str = "", manager: ModelManager | None = None) -> None:
        if family not in FLOW_TEXT:
            raise ValueError(f"unknown text encoder family {family!r}; expected one of {', '.join(FLOW_TEXT)}")
        missing = [r for r in REQUIRED[family] if r not in parts] or ([] if parts else ["every encoder"])
        if missing:
            raise ValueError(f"{family} text encoding needs {' and '.join(REQUIRED[family])}; missing "
                             f"{', '.join(missing)}")
        self.family = family
        self.parts = dict(parts)
        self.layer_idx = layer_idx
        self.source = source
        self.manager = manager
        self.patches: PatchList = []

    # -- the CLIP socket API shared with TextEncoder ------------------------------------------
    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(r for r in FLOW_TEXT[self.family][0] if r in self.parts)

    @property
    def encoder_names(self) -> tuple[str, ...]:
        roles, names, _ = FLOW_TEXT[self.family]
        return tuple(n for r, n in zip(roles, names, strict=True) if r in self.parts)

    @property
    def encoders(self) -> list[torch.nn.Module]:
        return [self.parts[r][1] for r in self.roles]

    @property
    def tokenizers(self) -> list:
        return [self.parts[r][0] for r in self.roles]

    @property
    def num_layers(self) -> int:
        clips = [int(self.parts[r][1].config.num_hidden_layers) for r in self.roles if r != "t5"]
        return min(clips) if clips else 1

    @contextmanager
    def use(self, device=None, dtype=None) -> Iterator[dict[str, torch.nn.Module]]:
        with ExitStack() as stack:
            out = {}
            for role, name in zip(self.roles, self.encoder_names, strict=True):
                e = stack.enter_context(use_module(self.manager, self.parts[role][1], device, dtype))
                out[role] = stack.enter_context(patched(e, self.patches, prefix=name + "."))
            yield out

    # -- encoding -------------------------------------------------------------------------------
    def _encode_one(self, role: str, encoder, text: str) -> tuple[torch.Tensor, torch.Tensor | None]:
        tok = self.parts[role][0]
        t5 = role == "t5"
        length = FLOW_TEXT[self.family][2] if t5 else CLIP_LENGTH
        ids, weights = tokenize_weighted(tok, text)
        row, roww = _row(tok, ids, weights, length, bos=not t5)

        def run(r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            r = r.to(next(encoder.parameters()).device)
            if t5:
                return encoder(r)[0], None
            if self.family == "flux":
                out = encoder(r, output_hidden_states=False)
                return out.last_hidden_state, out.pooler_output
            out = encoder(r, output_hidden_states=True)
            layer = self.layer_idx if self.layer_idx is not None else -2
            return out.hidden_states[layer], out.text_embeds

        z, pooled = run(row)
        if is_weighted(parse_weights(text)):
            e_row, _ = _row(tok, [], [], length, bos=not t5)
            z_empty, _ = run(e_row)
            z = apply_weights(z, roww, z_empty)
        return z.float().cpu(), None if pooled is None else pooled.float().cpu()

    def encode_parts(self, texts: dict[str, str], device=None, dtype=None) -> list[CondItem]:
        """CONDITIONING from one prompt per role (``clip_l``, ``clip_g``, ``t5``)."""
        with torch.no_grad(), self.use(device, dtype) as encs:
            out = {role: self._encode_one(role, enc, texts.get(role, "")) for role, enc in encs.items()}
        if self.family == "flux":
            return [CondItem(out["t5"][0], out["clip_l"][1], {})]
        for role in ("clip_l", "clip_g"):
            if role not in out:
                width, pooled_width = SD3_CLIP_WIDTHS[role]
                out[role] = (torch.zeros(1, CLIP_LENGTH, width), torch.zeros(1, pooled_width))
        clip = torch.cat([out["clip_l"][0], out["clip_g"][0]], dim=-1)
        pooled = torch.cat([out["clip_l"][1], out["clip_g"][1]], dim=-1)
        if "t5" in out:
            t5 = out["t5"][0]
            clip = torch.nn.functional.pad(clip, (0, max(t5.shape[-1] - clip.shape[-1], 0)))
            t5 = torch.nn.functional.pad(t5, (0, clip.shape[-1] - t5.shape[-1]))  # only for T5s narrower than CLIP
        else:
            t5 = torch.zeros(1, FLOW_TEXT["sd3"][2], clip.shape[-1])
        return [CondItem(torch.cat([clip, t5], dim=1), pooled, {})]

    def encode(self, text: str, device=None, dtype=None, embeddings: Any = None) -> list[CondItem]:
        """The same prompt for every encoder. ``embeddings`` (textual inversion) is accepted for the
        CLIP socket's API; SD3 / Flux textual-inversion files are not applied (the words stay text)."""
        return self.encode_parts(dict.fromkeys(self.roles, text), device, dtype)

    def __repr__(self) -> str:
        return f"FlowTextEncoder({self.family}, {'+'.join(self.roles)}, patches={len(self.patches)})"
