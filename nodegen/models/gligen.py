"""GLIGEN box grounding (Li et al. 2023, "GLIGEN: Open-Set Grounded Text-to-Image Generation"), the
text-box model as ComfyUI's GLIGENLoader / GLIGENTextBoxApply use it (comfy/gligen.py,
comfy/samplers.py), computed with diffusers' own GLIGEN modules.

A GLIGEN file (``gligen_sd14_textbox_pruned.safetensors``) holds, in the LDM layout,

* one *fuser* per spatial transformer of an SD1.x UNet (``input_blocks.1.1.transformer_blocks.0.fuser.*``,
  ... ``middle_block.1...``, ``output_blocks.N.1...``): a gated self-attention over the image tokens
  and the box tokens, ``x += tanh(alpha_attn) * attn(norm1([x, linear(objs)]))[:n_image]`` then
  ``x += tanh(alpha_dense) * ff(norm2(x))`` (diffusers' ``GatedSelfAttentionDense``: the same
  parameter names);
* the *position net* (``position_net.*``): each box's Fourier embedding (8 frequencies of
  ``x1, y1, x2, y2`` in [0, 1]) beside its phrase's CLIP pooled text embedding (the final layer's
  EOS token, no text projection), through an MLP into one token per box; 30 slots, the unused ones
  filled with learnt null features (diffusers' ``GLIGENTextBoundingboxProjection``).

While sampling, the fuser runs in every transformer block right after the self-attention's residual
add, at every step (ComfyUI's rule; diffusers' ``gligen_scheduled_sampling_beta=1``). The k-th fuser
of the file (input, middle, output blocks in order) sits in the UNet's k-th spatial transformer,
with that block's number of attention heads (diffusers' gated UNet; ComfyUI's rule agrees for SD1).

Boxes are kept in latent units, ``(embedding, height, width, y, x)`` as ComfyUI stores them, and are
normalised by the size of the latent (or of the conditioning's area) being denoised. A negative
conditioning without an area and without boxes takes the positive's boxes (ComfyUI's
``apply_empty_x_to_equal_area``): the unconditional prediction is grounded too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import torch

#: Box slots of the position net (ComfyUI's and diffusers' ``max_objs``).
MAX_OBJECTS = 30
_FUSER_KEY = re.compile(r"(?:^|\.)(input_blocks|middle_block|output_blocks)\.(\d+)\.(.*?)\.?fuser\.(.+)$")
_SECTIONS = ("input_blocks", "middle_block", "output_blocks")
_POSITION_PREFIX = "position_net."


class Box(NamedTuple):
    """One grounded phrase, in latent units (ComfyUI's ``(pooled, h // 8, w // 8, y // 8, x // 8)``)."""

    embedding: torch.Tensor  # [dim]: the phrase's pooled text embedding
    height: int
    width: int
    y: int
    x: int
    text: str = ""


class Gligen:
    """GLIGEN: the fusers (diffusers ``GatedSelfAttentionDense``, in UNet order) and the position net."""

    def __init__(self, fusers: list[torch.nn.Module], position_net: torch.nn.Module, source: str = "") -> None:
        self.fusers = fusers
        self.position_net = position_net
        self.source = source

    @property
    def text_width(self) -> int:
        """The width of the phrase embeddings the position net takes."""
        return int(self.position_net.positive_len)

    def fusers_with_heads(self, heads: list[int]) -> list[torch.nn.Module]:
        """The fusers, each with the given number of attention heads (rebuilt where it differs;
        the heads change no weight shapes)."""
        for i, (fuser, n) in enumerate(zip(self.fusers, heads, strict=True)):
            if fuser.attn.heads != n:
                self.fusers[i] = _fuser(fuser.state_dict(), n)
        return self.fusers

    def __repr__(self) -> str:
        return f"Gligen({len(self.fusers)} fusers, text width {self.text_width}, source={self.source!r})"


def load_gligen(path: str | Path) -> Gligen:
    """Read a GLIGEN text-box file (ComfyUI's key layout; a ``model.diffusion_model.`` prefix is allowed)."""
    from nodegen.models.files import load_state_dict

    sd = load_state_dict(path)
    return gligen_from_state_dict(sd, str(path))


def gligen_from_state_dict(sd: dict[str, torch.Tensor], source: str = "") -> Gligen:
    from diffusers.models.embeddings import GLIGENTextBoundingboxProjection

    fuser_sds = _fuser_state_dicts(sd, source)
    position = {k[k.index(_POSITION_PREFIX) + len(_POSITION_PREFIX):]: v for k, v in sd.items()
                if _POSITION_PREFIX in k}
    if not fuser_sds or "null_positive_feature" not in position or "linears.4.weight" not in position:
        raise ValueError(f"{source or 'this file'} is not a GLIGEN text-box model (no fuser / position_net weights)")
    in_dim, out_dim = position["null_positive_feature"].shape[0], position["linears.4.weight"].shape[0]
    net = GLIGENTextBoundingboxProjection(positive_len=in_dim, out_dim=out_dim, feature_type="text-only")
    try:  # tensors GLIGEN does not use are left out, as ComfyUI does (strict=False); none may lack
        missing, _ = net.load_state_dict({k: v.float() for k, v in position.items()}, strict=False)
    except RuntimeError as e:
        raise ValueError(f"{source}: the position net does not match GLIGEN's text-box layout ({e})") from e
    if missing:
        raise ValueError(f"{source}: the position net lacks {', '.join(missing)}")
    fusers = []
    for name, fsd in fuser_sds:
        if fsd.get("linear.weight") is None or fsd["linear.weight"].shape[1] != out_dim:
            raise ValueError(f"{source}: fuser {name} does not take the position net's {out_dim}-wide tokens")
        try:
            fusers.append(_fuser(fsd, _comfy_heads(fsd)))
        except (RuntimeError, KeyError) as e:
            raise ValueError(f"{source}: fuser {name} is not a GLIGEN gated self-attention ({e})") from e
    return Gligen(fusers, net.eval().requires_grad_(False), source)


def _fuser_state_dicts(sd: dict, source: str) -> list[tuple[str, dict[str, torch.Tensor]]]:
    """``(block name, fuser state dict)`` in UNet order: input, middle, output blocks by index."""
    groups: dict[tuple[int, int, str], dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        m = _FUSER_KEY.search(key)
        if m:
            section, index, inner, param = m.groups()
            groups.setdefault((_SECTIONS.index(section), int(index), inner), {})[param] = value
    blocks: dict[tuple[int, int], str] = {}
    for section, index, inner in groups:
        if (section, index) in blocks:
            raise ValueError(f"{source}: {_SECTIONS[section]}.{index} holds more than one fuser (not GLIGEN's layout)")
        blocks[(section, index)] = inner
    return [(f"{_SECTIONS[s]}.{i}.{inner}", {k: v.float() for k, v in groups[(s, i, inner)].items()})
            for (s, i, inner) in sorted(groups)]


def _comfy_heads(fsd: dict) -> int:
    """ComfyUI's heads for a fuser: 8 for SD1 (768-wide tokens), else 64 channels per head (8, or
    1, where that does not divide). Installing sets the heads of the UNet's block instead."""
    query_dim, key_dim = fsd["linear.weight"].shape
    if key_dim != 768 and query_dim % 64 == 0:
        return query_dim // 64
    return 8 if query_dim % 8 == 0 else 1


def _fuser(fsd: dict, heads: int) -> torch.nn.Module:
    from diffusers.models.attention import GatedSelfAttentionDense

    query_dim, key_dim = fsd["linear.weight"].shape
    fuser = GatedSelfAttentionDense(query_dim, key_dim, heads, query_dim // heads)
    missing, _ = fuser.load_state_dict(fsd, strict=False)  # extra tensors ignored, as ComfyUI does
    if missing:
        raise KeyError(f"missing {', '.join(missing)}")
    return fuser.eval().requires_grad_(False)


# -- phrases and boxes ------------------------------------------------------------------------

def phrase_embedding(clip: Any, text: str, device=None, embeddings=None) -> torch.Tensor:
    """The pooled text embedding GLIGEN takes for a phrase: the final layer's (normed) hidden state
    at the first EOS token, without the text projection (ComfyUI's ``return_pooled="unprojected"``;
    diffusers' ``pooler_output``), of the prompt's first 77-token chunk; ``embedding:name`` words are
    resolved by ``embeddings`` (an ``EmbeddingLookup``). ``[dim]``, float32 CPU."""
    from nodegen.models.clip_encode import _slot_vectors, injected, make_chunks, tokenize_with_embeddings
    from nodegen.models.embeddings import ENCODER_KEYS

    tok = clip.tokenizers[0]
    ids, weights, slots = tokenize_with_embeddings(tok, text, embeddings)
    chunk_ids, _ = make_chunks(tok, ids, weights)
    first = chunk_ids[:1]
    key = ENCODER_KEYS.get(clip.family, (None,))[0]
    with torch.no_grad(), clip.use(device) as encs:
        enc = encs[0]
        vectors = {at: v for at, v in _slot_vectors(slots, key, int(enc.config.hidden_size)).items() if at[0] == 0}
        with injected(enc, vectors):
            hidden = enc(input_ids=first.to(next(enc.parameters()).device)).last_hidden_state
    eos = int((first[0] == tok.eos_token_id).nonzero()[0, 0])
    return hidden[0, eos].to("cpu", torch.float32)


def pixel_box(embedding: torch.Tensor, width: int, height: int, x: int, y: int, text: str = "") -> Box:
    """A box given in pixels, kept in latent units as ComfyUI keeps it."""
    return Box(embedding, height // 8, width // 8, y // 8, x // 8, text)


def normalised_boxes(boxes: list[Box], h: int, w: int) -> torch.Tensor:
    """``[n, 4]`` ``(x1, y1, x2, y2)`` as fractions of a ``h x w`` latent (diffusers' ``gligen_boxes``)."""
    return torch.tensor([[b.x / w, b.y / h, (b.x + b.width) / w, (b.y + b.height) / h] for b in boxes],
                        dtype=torch.float32)


def position_inputs(boxes: list[Box], h: int, w: int, text_width: int) -> dict[str, torch.Tensor]:
    """The position net's inputs for one conditioning: ``boxes [30, 4]``, ``masks [30]``,
    ``positive_embeddings [30, dim]`` (unused slots zero, masked)."""
    if len(boxes) > MAX_OBJECTS:
        raise ValueError(f"GLIGENTextBoxApply: {len(boxes)} boxes on one conditioning; GLIGEN takes at most "
                         f"{MAX_OBJECTS}")
    for b in boxes:
        if b.x >= w or b.y >= h:
            raise ValueError(f"GLIGENTextBoxApply: the box for {b.text!r} at x={b.x * 8}, y={b.y * 8} lies outside "
                             f"the {w * 8}x{h * 8} image (x and y must be inside it)")
        if b.embedding.shape[-1] != text_width:
            raise ValueError(f"GLIGENTextBoxApply: the phrase {b.text!r} is encoded {b.embedding.shape[-1]} wide; "
                             f"the GLIGEN model takes {text_width}")
    n = len(boxes)
    out = {"boxes": torch.zeros(MAX_OBJECTS, 4), "masks": torch.zeros(MAX_OBJECTS),
           "positive_embeddings": torch.zeros(MAX_OBJECTS, text_width)}
    if n:
        out["boxes"][:n] = normalised_boxes(boxes, h, w)
        out["masks"][:n] = 1.0
        out["positive_embeddings"][:n] = torch.stack([b.embedding.float().reshape(-1) for b in boxes])
    return out


# -- the conditioning side --------------------------------------------------------------------

def _has_area(extras: dict) -> bool:
    return ("area" in extras or "area_fraction" in extras
            or (extras.get("mask") is not None and bool(extras.get("set_area_to_bounds"))))


def ground_negative(positive: list, negative: list) -> list:
    """ComfyUI's ``apply_empty_x_to_equal_area(positive, negative, 'gligen', ...)``: unless a
    negative item (without an area) already has boxes, the k-th positive item with boxes and no
    area gives its boxes to the (k mod n)-th negative item without area and boxes."""
    grounded = [it.extras["gligen"] for it in positive
                if getattr(it, "extras", None) and not _has_area(it.extras) and it.extras.get("gligen")]
    if not grounded:
        return negative
    plain = [i for i, it in enumerate(negative) if not _has_area(it.extras) and not it.extras.get("gligen")]
    if len(plain) < sum(1 for it in negative if not _has_area(it.extras)) or not plain:
        return negative  # a negative with boxes of its own (or none to ground): left as it is
    out = list(negative)
    for k, boxes in enumerate(grounded):
        i = plain[k % len(plain)]
        out[i] = negative[i].copy(extras=dict(negative[i].extras, gligen=boxes))
    return out


class _Grounding(NamedTuple):
    objs: torch.Tensor  # [batch, 30, dim] box tokens
    active: torch.Tensor  # [batch] bool: which chunks of the batch are grounded


class _PositionNet(torch.nn.Module):
    """Stands in as ``unet.position_net``: box tokens for the batch, and which chunks take them."""

    def __init__(self, gligen: Gligen, net: torch.nn.Module) -> None:
        super().__init__()
        self.gligen = gligen
        self.net = net

    def forward(self, boxes, masks, positive_embeddings, active) -> _Grounding:
        return _Grounding(self.net(boxes=boxes, masks=masks, positive_embeddings=positive_embeddings), active)


class _Fuser(torch.nn.Module):
    """Stands in as a transformer block's ``fuser``: GLIGEN's gated self-attention on the grounded
    chunks of the batch; the other chunks pass unchanged."""

    def __init__(self, fuser: torch.nn.Module) -> None:
        super().__init__()
        self.fuser = fuser

    def forward(self, x: torch.Tensor, grounding: _Grounding) -> torch.Tensor:
        out = self.fuser(x, grounding.objs.to(x.dtype))
        if bool(grounding.active.all()):
            return out
        return torch.where(grounding.active.to(x.device)[:, None, None], out, x)


def unet_inputs(unet: torch.nn.Module, items: list, batch: int, h: int, w: int, device, dtype) -> dict | None:
    """The UNet's ``cross_attention_kwargs["gligen"]`` for a batch of conditioning ``items`` (one
    chunk of ``batch`` each) on a ``h x w`` latent; None when none has boxes."""
    entries = [it.extras.get("gligen") for it in items]
    models = [e[1] for e in entries if e]
    if not models:
        return None
    net = getattr(unet, "_modules", {}).get("position_net")
    if not isinstance(net, _PositionNet) or any(m is not net.gligen for m in models):
        raise ValueError("GLIGENTextBoxApply: boxes on a conditioning that is not the sampler's positive or "
                         "negative (e.g. a guider's extra conditioning); give the boxes to the positive")
    width = models[0].text_width
    per_chunk = [position_inputs(e[2] if e else [], h, w, width) for e in entries]
    stacked = {k: torch.stack([p[k] for p in per_chunk]).repeat_interleave(batch, dim=0).to(device, dtype)
               for k in per_chunk[0]}
    stacked["active"] = torch.tensor([bool(e) for e in entries], device=device).repeat_interleave(batch)
    return stacked


@contextmanager
def installed(unet: torch.nn.Module, items: list) -> Iterator[None]:
    """Within the block, ``unet`` carries the fusers and position net of the GLIGEN model the
    conditioning ``items`` use (diffusers' gated-UNet attributes ``fuser`` / ``position_net``),
    run by passing :func:`unet_inputs` as ``cross_attention_kwargs["gligen"]``; restored after."""
    models = {id(e[1]): e[1] for it in items if (e := it.extras.get("gligen"))}
    if not models:
        yield
        return
    if len(models) > 1:
        raise ValueError("GLIGENTextBoxApply: the conditionings of one sampler use different GLIGEN models; "
                         "use one gligen_textbox_model")
    gligen = next(iter(models.values()))
    spatial = spatial_transformers(unet)
    _check_fits(gligen, spatial, unet)
    param = next(unet.parameters())
    fusers = gligen.fusers_with_heads([t.transformer_blocks[0].attn1.heads for t in spatial])
    saved = []
    for transformer, fuser in zip(spatial, fusers, strict=True):
        wrapped = _Fuser(fuser.to(param.device, param.dtype))
        for block in transformer.transformer_blocks:  # one fuser per spatial transformer (ComfyUI's transformer_index)
            saved.append((block, "fuser", block._modules.get("fuser")))
            block.fuser = wrapped
    saved.append((unet, "position_net", unet._modules.get("position_net")))
    unet.position_net = _PositionNet(gligen, gligen.position_net.to(param.device, param.dtype))
    try:
        yield
    finally:
        for module, name, old in reversed(saved):
            delattr(module, name)
            if old is not None:
                setattr(module, name, old)


def spatial_transformers(unet: torch.nn.Module) -> list[torch.nn.Module]:
    """The UNet's spatial transformers in the order the forward pass meets them (down, mid, up:
    ComfyUI's ``transformer_index``; diffusers registers the mid block after the up blocks)."""
    from diffusers.models.transformers.transformer_2d import Transformer2DModel

    blocks = [*getattr(unet, "down_blocks", ()), getattr(unet, "mid_block", None), *getattr(unet, "up_blocks", ())]
    return [t for blk in blocks if blk is not None for t in getattr(blk, "attentions", None) or ()
            if isinstance(t, Transformer2DModel)]


def _check_fits(gligen: Gligen, spatial: list, unet) -> None:
    where = f"GLIGENTextBoxApply: gligen_textbox_model {Path(gligen.source).name or 'GLIGEN'}"
    if len(spatial) != len(gligen.fusers):
        raise ValueError(f"{where} has {len(gligen.fusers)} fusers but the MODEL has {len(spatial)} attention "
                         "blocks: GLIGEN fits the SD1.x UNet it was trained for")
    cross = getattr(unet.config, "cross_attention_dim", None)
    for k, (t, f) in enumerate(zip(spatial, gligen.fusers, strict=True)):
        dim = t.transformer_blocks[0].attn1.to_q.in_features
        if f.linear.out_features != dim:
            raise ValueError(f"{where}: fuser {k} is {f.linear.out_features} wide, the MODEL's attention block "
                             f"{k} is {dim} wide: GLIGEN fits the SD1.x UNet it was trained for")
    if cross is not None and isinstance(cross, int) and gligen.position_net.out_dim != cross:
        raise ValueError(f"{where} makes {gligen.position_net.out_dim}-wide box tokens; the MODEL's text is "
                         f"{cross} wide")
