"""Latent arithmetic and batches (ComfyUI's LatentAdd, LatentSubtract, LatentMultiply,
LatentBatch, LatentBatchSeedBehavior).

A second latent of another size is first fitted to the first one as ComfyUI does: cut to the same
aspect ratio around the centre, resized bilinearly, and (for add / subtract) its batch repeated or
cut to the first one's. The result keeps the first latent's other entries (noise mask, batch index).
"""

from __future__ import annotations

import math

from nodegen.image.latent_resize import resize
from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

torch = lazy_import("torch")
_OUT = [Output("latent", T.LATENT)]


def _samples(latent, name: str, node_type: str):
    if not isinstance(latent, dict) or not torch.is_tensor(latent.get("samples")):
        raise TypeError(f"{node_type}: input '{name}' must be a LATENT (a dict with 'samples')")
    return latent["samples"]


def _fit_size(s, like):
    """``s`` [B,C,h,w] cut to ``like``'s aspect ratio around the centre and resized bilinearly."""
    if s.shape[1] != like.shape[1]:
        raise ValueError(f"the latents have {like.shape[1]} and {s.shape[1]} channels (different model families)")
    if s.shape[2:] == like.shape[2:]:
        return s
    h, w = like.shape[2:]
    return resize(s, w, h, "bilinear", crop="center")


def _fit(s, like):
    s = _fit_size(s, like)
    if s.shape[0] < like.shape[0]:
        s = s.repeat(math.ceil(like.shape[0] / s.shape[0]), 1, 1, 1)
    return s[: like.shape[0]]


@node("LatentAdd", category="latent/advanced", description="Add two latents.",
      inputs=[Input.link("samples1", T.LATENT), Input.link("samples2", T.LATENT)], outputs=_OUT)
def latent_add(ctx, samples1, samples2):
    s1 = _samples(samples1, "samples1", "LatentAdd")
    return dict(samples1, samples=s1 + _fit(_samples(samples2, "samples2", "LatentAdd"), s1))


@node("LatentSubtract", category="latent/advanced", description="Subtract samples2 from samples1.",
      inputs=[Input.link("samples1", T.LATENT), Input.link("samples2", T.LATENT)], outputs=_OUT)
def latent_subtract(ctx, samples1, samples2):
    s1 = _samples(samples1, "samples1", "LatentSubtract")
    return dict(samples1, samples=s1 - _fit(_samples(samples2, "samples2", "LatentSubtract"), s1))


@node("LatentInterpolate", category="latent/advanced",
      description="Blend two latents keeping their per-pixel magnitude: the channel vectors' directions and "
                  "lengths are mixed separately (ratio 1: all samples1).",
      inputs=[Input.link("samples1", T.LATENT), Input.link("samples2", T.LATENT),
              Input.float("ratio", 1.0, min=0.0, max=1.0, step=0.01)], outputs=_OUT, keywords=("slerp", "mix"))
def latent_interpolate(ctx, samples1, samples2, ratio):
    # ComfyUI's rule, with the norms kept per item (its own broadcasting only works for one item)
    s1 = _samples(samples1, "samples1", "LatentInterpolate")
    s2 = _fit(_samples(samples2, "samples2", "LatentInterpolate"), s1)
    m1 = torch.linalg.vector_norm(s1, dim=1, keepdim=True)
    m2 = torch.linalg.vector_norm(s2, dim=1, keepdim=True)
    t = torch.nan_to_num(s1 / m1) * ratio + torch.nan_to_num(s2 / m2) * (1.0 - ratio)
    st = torch.nan_to_num(t / torch.linalg.vector_norm(t, dim=1, keepdim=True))
    return dict(samples1, samples=st * (m1 * ratio + m2 * (1.0 - ratio)))


@node("LatentMultiply", category="latent/advanced", description="Multiply a latent by a number.",
      inputs=[Input.link("samples", T.LATENT), Input.float("multiplier", 1.0, min=-10.0, max=10.0, step=0.01)],
      outputs=_OUT)
def latent_multiply(ctx, samples, multiplier=1.0):
    return dict(samples, samples=_samples(samples, "samples", "LatentMultiply") * float(multiplier))


@node("LatentBatch", category="latent/batch", description="Join two latent batches (samples2 resized to samples1).",
      inputs=[Input.link("samples1", T.LATENT), Input.link("samples2", T.LATENT)], outputs=_OUT)
def latent_batch(ctx, samples1, samples2):
    s1 = _samples(samples1, "samples1", "LatentBatch")
    s2 = _fit_size(_samples(samples2, "samples2", "LatentBatch"), s1)
    index = (list(samples1.get("batch_index", range(s1.shape[0])))
             + list(samples2.get("batch_index", range(s2.shape[0]))))
    return dict(samples1, samples=torch.cat([s1, s2]), batch_index=index)


@node("LatentBatchSeedBehavior", category="latent/advanced",
      description="random: each batch item gets its own noise; fixed: all items share the first item's noise.",
      inputs=[Input.link("samples", T.LATENT), Input.choice("seed_behavior", ["random", "fixed"], "fixed")],
      outputs=_OUT)
def latent_batch_seed_behavior(ctx, samples, seed_behavior="fixed"):
    s = _samples(samples, "samples", "LatentBatchSeedBehavior")
    out = dict(samples)
    if seed_behavior == "random":
        out.pop("batch_index", None)
    else:
        out["batch_index"] = [samples.get("batch_index", [0])[0]] * s.shape[0]
    return out
