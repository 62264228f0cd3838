"""Join latents side by side and cut regions out of them, as ComfyUI's LatentConcat and LatentCut
(comfy_extras/nodes_latent.py), on image latents ``[B,C,h,w]``: ``x`` is the width, ``y`` the
height (ComfyUI's ``t``, the time axis of video latents, does not exist here)."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

torch = lazy_import("torch")

_AXES = {"x": -1, "y": -2}


def _axis(dim: str, node_type: str) -> int:
    axis = _AXES.get(dim.lstrip("-"))
    if axis is None:
        raise ValueError(f"{node_type}: input 'dim' {dim!r}: image latents have no time axis; use x or y")
    return axis


@node("LatentConcat", category="latent/advanced",
      description="Join two latents along the width (x) or height (y); '-' puts the second first. The "
                  "second is repeated or cut to the first's batch.",
      inputs=[Input.link("samples1", T.LATENT), Input.link("samples2", T.LATENT),
              Input.choice("dim", ["x", "-x", "y", "-y", "t", "-t"], "x")],
      outputs=[Output("latent", T.LATENT)], keywords=("join latents", "stitch latents"))
def latent_concat(ctx, samples1, samples2, dim="x"):
    from nodegen.image.composite import repeat_to_batch

    axis = _axis(dim, "LatentConcat")
    s1 = samples1["samples"]
    s2 = repeat_to_batch(samples2["samples"].to(s1), s1.shape[0])
    other = -2 if axis == -1 else -1
    if s1.shape[1] != s2.shape[1] or s1.shape[other] != s2.shape[other]:
        raise ValueError(f"LatentConcat: inputs 'samples1' {tuple(s1.shape)} and 'samples2' {tuple(s2.shape)} "
                         f"must have the same channels and {'height' if axis == -1 else 'width'} to join along {dim}")
    pair = (s2, s1) if dim.startswith("-") else (s1, s2)
    return {**samples1, "samples": torch.cat(pair, dim=axis)}


@node("LatentCut", category="latent/advanced",
      description="Cut 'amount' columns (x) or rows (y) out of a latent from 'index' (negative: from the end); "
                  "clamped to the latent as ComfyUI does.",
      inputs=[Input.link("samples", T.LATENT), Input.choice("dim", ["x", "y", "t"], "x"),
              Input.int("index", 0, min=-16384, max=16384, description="First column / row (negative: from the end)"),
              Input.int("amount", 1, min=1, max=16384, description="How many columns / rows")],
      outputs=[Output("latent", T.LATENT)], keywords=("crop latent", "slice latent"))
def latent_cut(ctx, samples, dim="x", index=0, amount=1):
    s = samples["samples"]
    axis = s.ndim + _axis(dim, "LatentCut")
    size = s.shape[axis]
    if index >= 0:
        index = min(index, size - 1)
        amount = min(size - index, amount)
    else:
        index = max(index, -size)
        amount = min(-index, amount)
    return {**samples, "samples": torch.narrow(s, axis, index, amount)}
