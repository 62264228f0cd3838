"""RepeatImageBatch: ComfyUI's node (comfy_extras/nodes_images.py) that repeats a whole image batch
``amount`` times (``image.repeat((amount, 1, 1, 1))``: a batch [a, b] twice is [a, b, a, b])."""

from __future__ import annotations

from nodegen.image.convert import check_image
from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

AMOUNT_MAX = 4096


@node("RepeatImageBatch", category="image/batch", description="Repeat a batch of images a number of times.",
      inputs=[Input.link("image", T.IMAGE), Input.int("amount", 1, min=1, max=AMOUNT_MAX, step=1,
                                                       description="How many copies of the batch")],
      outputs=[Output("image", T.IMAGE)], keywords=("duplicate", "clone", "batch", "repeat"))
def repeat_image_batch(ctx, image, amount):
    try:
        check_image(image)
    except ValueError as e:
        raise ValueError(f"RepeatImageBatch: {e}") from None
    if isinstance(amount, bool) or not isinstance(amount, int) or not 1 <= amount <= AMOUNT_MAX:
        raise ValueError(f"RepeatImageBatch: input 'amount' must be a whole number from 1 to {AMOUNT_MAX}, "
                         f"got {amount!r}")
    return image.repeat(amount, 1, 1, 1)
