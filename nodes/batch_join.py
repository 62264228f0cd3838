"""Batch Images / Masks / Latents: join up to 16 inputs into one batch, as ComfyUI's
BatchImagesNode, BatchMasksNode and BatchLatentsNode (its "autogrow" inputs ``images.image0``,
``images.image1``, ... are our ``image0``, ``image1``, ...; ComfyUI allows up to 50). See
:mod:`nodegen.image.batch_join`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

#: Inputs per node (ComfyUI's front end grows them on demand up to 50).
SLOTS = 16


def _inputs(prefix: str, socket) -> list:
    return [Input.link(f"{prefix}{i}", socket, optional=i >= 1,
                       description="" if i else f"The first {prefix}: the others are resized to its size")
            for i in range(SLOTS)]


def _given(node_type: str, prefix: str, values: dict, check) -> list:
    items = []
    for i in range(SLOTS):
        value = values.get(f"{prefix}{i}")
        if value is None:
            continue
        problem = check(value)
        if problem:
            raise ValueError(f"{node_type}: input '{prefix}{i}' {problem}")
        items.append(value)
    return items


def _tensor(ndims: tuple[int, ...], what: str):
    def check(value):
        shape = getattr(value, "shape", None)
        return None if shape is not None and len(shape) in ndims else f"must be {what}, got {type(value).__name__}"
    return check


@node("BatchImagesNode", category="image", display_name="Batch Images",
      description="Join images into one batch; each is resized to the first one's size (bilinear, centre-cropped).",
      inputs=_inputs("image", T.IMAGE), outputs=[Output("image", T.IMAGE)], keywords=("batch", "combine images"))
def batch_images_node(ctx, **images):
    from nodegen.image.batch_join import batch_images

    return batch_images(_given("BatchImagesNode", "image", images, _tensor((4,), "an IMAGE")))


@node("BatchMasksNode", category="mask", display_name="Batch Masks",
      description="Join masks into one batch; each is resized to the first one's size (bilinear, centre-cropped).",
      inputs=_inputs("mask", T.MASK), outputs=[Output("mask", T.MASK)], keywords=("batch", "combine masks"))
def batch_masks_node(ctx, **masks):
    from nodegen.image.batch_join import batch_masks

    return batch_masks(_given("BatchMasksNode", "mask", masks, _tensor((2, 3, 4), "a MASK")))


@node("BatchLatentsNode", category="latent", display_name="Batch Latents",
      description="Join latents into one batch; each is resized to the first one's size; their seeds' batch "
                  "indices are kept.",
      inputs=_inputs("latent", T.LATENT), outputs=[Output("latent", T.LATENT)], keywords=("batch", "combine latents"))
def batch_latents_node(ctx, **latents):
    from nodegen.image.batch_join import batch_latents

    def check(value):
        return None if isinstance(value, dict) and "samples" in value else "must be a LATENT"

    return batch_latents(_given("BatchLatentsNode", "latent", latents, check))
