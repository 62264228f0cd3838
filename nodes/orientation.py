"""Flip and rotate images and latents by quarter turns (ComfyUI's ImageFlip, ImageRotate,
LatentFlip, LatentRotate). Rotations are clockwise; "x-axis: vertically" turns the picture upside
down, "y-axis: horizontally" mirrors it left to right."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

FLIPS = ["x-axis: vertically", "y-axis: horizontally"]
ROTATIONS = ["none", "90 degrees", "180 degrees", "270 degrees"]


def _quarter_turns(rotation: str) -> int:
    return ROTATIONS.index(rotation)


def _latent(samples, node_type: str) -> dict:
    import torch

    if not isinstance(samples, dict) or not torch.is_tensor(samples.get("samples")):
        raise TypeError(f"{node_type}: input 'samples' must be a LATENT (a dict with 'samples')")
    return samples


@node("ImageFlip", category="image/transform", description="Flip images upside down or left to right.",
      inputs=[Input.link("image", T.IMAGE), Input.choice("flip_method", FLIPS, FLIPS[0])],
      outputs=[Output("image", T.IMAGE)], keywords=("mirror",))
def image_flip(ctx, image, flip_method):
    return image.flip(1 if flip_method.startswith("x") else 2)


@node("ImageRotate", category="image/transform", description="Rotate images clockwise by quarter turns.",
      inputs=[Input.link("image", T.IMAGE), Input.choice("rotation", ROTATIONS, ROTATIONS[0])],
      outputs=[Output("image", T.IMAGE)], keywords=("turn",))
def image_rotate(ctx, image, rotation):
    # [B,H,W,C]: a quarter turn from the width axis towards the height axis is clockwise
    return image.rot90(_quarter_turns(rotation), dims=(2, 1))


@node("LatentFlip", category="latent/transform", description="Flip latents upside down or left to right.",
      inputs=[Input.link("samples", T.LATENT), Input.choice("flip_method", FLIPS, FLIPS[0])],
      outputs=[Output("latent", T.LATENT)])
def latent_flip(ctx, samples, flip_method):
    s = _latent(samples, "LatentFlip")
    return dict(s, samples=s["samples"].flip(2 if flip_method.startswith("x") else 3))


@node("LatentRotate", category="latent/transform", description="Rotate latents clockwise by quarter turns.",
      inputs=[Input.link("samples", T.LATENT), Input.choice("rotation", ROTATIONS, ROTATIONS[0])],
      outputs=[Output("latent", T.LATENT)])
def latent_rotate(ctx, samples, rotation):
    s = _latent(samples, "LatentRotate")
    return dict(s, samples=s["samples"].rot90(_quarter_turns(rotation), dims=(3, 2)))
