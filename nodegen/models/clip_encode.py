"""Text encoding for :class:`nodegen.models.objects.TextEncoder`: tokenize with weights, split
into 77-token chunks, run the CLIP encoder(s), pick the hidden layer, apply weights.

Weighting rule (ComfyUI's): for every token whose weight ``w`` is not 1, its embedding ``z`` is
moved away from the empty prompt's embedding at the same position:
``z' = z_empty + w * (z - z_empty)``. An unweighted prompt is not touched at all, so it equals
diffusers' ``encode_prompt`` bit for bit.

Chunking: prompt tokens (without BOS/EOS) are split into pieces of 75; each becomes
``[BOS] + piece + [EOS] + padding`` (77 tokens, the tokenizer's pad token) and the chunk
embeddings are concatenated along the token axis. The pooled output (SDXL) is the first
chunk's.

Textual-inversion embeddings: a word ``embedding:name`` (trailing commas are text) takes as many
token positions as the embedding has vectors; there the encoder's token embedding is replaced
by the vectors (a forward hook, only during the call), weights apply as to any token.
"""

from __future__ import annotations

import re
from contextlib import contextmanager

import torch

from nodegen.diffusion.prompt_weights import is_weighted, parse_weights

CHUNK = 77
BODY = CHUNK - 2


EMBEDDING_WORD = re.compile(r"(?<!\S)embedding:(\S+)")
#: Token id put where an embedding vector goes (replaced before the encoder sees it).
PLACEHOLDER = 0


def tokenize_weighted(tokenizer, text: str) -> tuple[list[int], list[float]]:
    """Token ids (no BOS/EOS) and one weight per token."""
    ids, weights, _ = tokenize_with_embeddings(tokenizer, text, None)
    return ids, weights


def tokenize_with_embeddings(tokenizer, text: str, embeddings=None) -> tuple[list[int], list[float], dict]:
    """Token ids (no BOS/EOS), one weight per token, and ``{index: (Embedding, vector_index)}`` for
    the positions taken by ``embedding:name`` words (with an ``EmbeddingLookup``; without one
    such words are plain text)."""
    ids: list[int] = []
    weights: list[float] = []
    slots: dict[int, tuple] = {}

    def add_text(piece: str, w: float) -> None:
        if piece:
            toks = tokenizer(piece, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
            ids.extend(toks)
            weights.extend([w] * len(toks))

    for piece, w in parse_weights(text):
        if embeddings is None or "embedding:" not in piece:
            add_text(piece, w)
            continue
        pos = 0
        for m in EMBEDDING_WORD.finditer(piece):
            add_text(piece[pos:m.start()], w)
            name = m.group(1)
            emb = embeddings.find(name)
            stripped = name.rstrip(",")
            if emb is None and stripped != name:
                emb = embeddings.find(stripped)
            if emb is None:
                embeddings.get(name)  # raises: names the embedding and the folder
            leftover = name[len(emb.name):] if name.startswith(emb.name) else ""
            for k in range(emb.length):
                slots[len(ids)] = (emb, k)
                ids.append(PLACEHOLDER)
                weights.append(w)
            add_text(leftover, w)
            pos = m.end()
        add_text(piece[pos:], w)
    return ids, weights, slots


def make_chunks(tokenizer, ids: list[int], weights: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """``[n_chunks, 77]`` ids and weights (BOS/EOS/padding weigh 1)."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    pad = tokenizer.pad_token_id
    all_ids, all_w = [], []
    starts = range(0, max(len(ids), 1), BODY)
    for s in starts:
        body = ids[s : s + BODY]
        bw = weights[s : s + BODY]
        row = [bos] + body + [eos]
        roww = [1.0] + bw + [1.0]
        row += [pad] * (CHUNK - len(row))
        roww += [1.0] * (CHUNK - len(roww))
        all_ids.append(row)
        all_w.append(roww)
    return torch.tensor(all_ids, dtype=torch.long), torch.tensor(all_w, dtype=torch.float32)


def _final_norm(encoder) -> torch.nn.Module:
    inner = getattr(encoder, "text_model", encoder)
    return inner.final_layer_norm


@contextmanager
def injected(encoder, vectors: dict[tuple[int, int], torch.Tensor] | None):
    """Replace the token embeddings at ``(chunk, position)`` by the given vectors during the block."""
    if not vectors:
        yield
        return
    module = getattr(encoder, "text_model", encoder).embeddings.token_embedding

    def hook(_mod, _inp, out):
        out = out.clone()
        for (c, p), v in vectors.items():
            out[c, p] = v.to(out.device, out.dtype)
        return out

    handle = module.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


def run_encoder(encoder, ids: torch.Tensor, layer_idx: int | None, norm_hidden: bool,
                want_pooled: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Hidden states ``[n, 77, d]`` of the chosen layer and the pooled projection (or None).

    ``layer_idx`` None: the final layer's ``last_hidden_state`` (already normed) when
    ``norm_hidden``, else ``hidden_states[-1]``. A negative index picks ``hidden_states[i]``
    (``-1`` = last layer, ``-2`` = penultimate); ``norm_hidden`` applies the final layer norm.
    """
    ids = ids.to(next(encoder.parameters()).device)
    if layer_idx is None and norm_hidden:
        out = encoder(input_ids=ids)
        hidden = out[0] if not hasattr(out, "last_hidden_state") else out.last_hidden_state
    else:
        out = encoder(input_ids=ids, output_hidden_states=True)
        idx = -1 if layer_idx is None else layer_idx
        hs = out.hidden_states
        if not -len(hs) < idx < 0:
            raise ValueError(f"CLIP layer {idx} does not exist: this text encoder has {len(hs) - 1} layers")
        hidden = hs[idx]
        if norm_hidden:
            hidden = _final_norm(encoder)(hidden)
    pooled = None
    if want_pooled:
        pooled = getattr(out, "text_embeds", None)
        if pooled is None:
            raise ValueError("this text encoder has no projection: no pooled output")
    return hidden, pooled


def apply_weights(z: torch.Tensor, weights: torch.Tensor, z_empty: torch.Tensor) -> torch.Tensor:
    """``z``: [n, 77, d]; ``weights``: [n, 77]; ``z_empty``: [1, 77, d]."""
    w = weights.to(device=z.device, dtype=torch.float32).unsqueeze(-1)
    zf = z.float()
    ze = z_empty.float()
    out = torch.where(w != 1.0, ze + (zf - ze) * w, zf)
    return out.to(z.dtype)


def _slot_vectors(slots: dict, key: str | None, width: int) -> dict[tuple[int, int], torch.Tensor]:
    """``{(chunk, position): vector}`` for the embedding slots of a token list."""
    return {(i // BODY, 1 + i % BODY): emb.for_encoder(key, width)[k] for i, (emb, k) in slots.items()}


def encode_text(tokenizers, encoders, text: str, *, layer_idx: int | None, norm_hidden: bool,
                pooled_from: int | None, embeddings=None,
                embedding_keys: tuple[str | None, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Encode ``text`` with every (tokenizer, encoder) pair and concatenate their hidden
    states on the feature axis (SDXL: CLIP-L 768 + OpenCLIP-G 1280).

    ``embeddings`` (an :class:`nodegen.models.embeddings.EmbeddingLookup`) resolves
    ``embedding:name`` words; ``embedding_keys`` names each encoder's vectors in the files
    (``clip_l`` / ``clip_g``; None: the file's only set).

    Returns ``embeds [1, 77 * n_chunks, dim]`` and ``pooled [1, dim]`` (from encoder
    ``pooled_from``) or None.
    """
    weighted = is_weighted(parse_weights(text))
    per_encoder = []
    pooled = None
    n_chunks = None
    keys = embedding_keys or (None,) * len(encoders)
    for i, (tok, enc) in enumerate(zip(tokenizers, encoders, strict=True)):
        ids, weights, slots = tokenize_with_embeddings(tok, text, embeddings)
        chunk_ids, chunk_w = make_chunks(tok, ids, weights)
        if n_chunks is not None and chunk_ids.shape[0] != n_chunks:  # pragma: no cover - same BPE
            raise ValueError("the text encoders' tokenizers disagree on the prompt length")
        n_chunks = chunk_ids.shape[0]
        want = pooled_from == i
        width = int(getattr(enc.config, "hidden_size", 0))
        with injected(enc, _slot_vectors(slots, keys[i], width)):
            z, p = run_encoder(enc, chunk_ids, layer_idx, norm_hidden, want)
        if weighted:
            e_ids, e_w = make_chunks(tok, [], [])
            z_empty, _ = run_encoder(enc, e_ids, layer_idx, norm_hidden, False)
            z = apply_weights(z, chunk_w, z_empty)
        per_encoder.append(z.reshape(1, -1, z.shape[-1]))
        if want:
            pooled = p[:1]
    embeds = torch.cat(per_encoder, dim=-1) if len(per_encoder) > 1 else per_encoder[0]
    return embeds, pooled
