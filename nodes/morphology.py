"""ImageMorphology: ComfyUI's Morphology node (comfy_extras/nodes_morphology.py, shown as
"ImageMorphology"): erode, dilate, open, close, gradient, top hat or bottom hat with a square kernel
of ones, the rules of kornia.morphology that ComfyUI calls (see :mod:`nodegen.image.morphology`)."""

from __future__ import annotations

from nodegen.image.convert import check_image
from nodegen.image.morphology import OPERATIONS
from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

KERNEL_MIN, KERNEL_MAX = 3, 999


@node("ImageMorphology", category="image/postprocessing",
      description="Erode, dilate, open, close, gradient, top hat or bottom hat with a square kernel.",
      inputs=[Input.link("image", T.IMAGE), Input.choice("operation", list(OPERATIONS), "erode"),
              Input.int("kernel_size", 3, min=KERNEL_MIN, max=KERNEL_MAX, step=1,
                        description="Side of the square kernel (pixels)")],
      outputs=[Output("image", T.IMAGE)],
      keywords=("morphology", "erode", "dilate", "opening", "closing", "top hat", "bottom hat", "mask"))
def image_morphology(ctx, image, operation, kernel_size):
    from nodegen.image.morphology import morphology

    try:
        check_image(image)
    except ValueError as e:
        raise ValueError(f"ImageMorphology: {e}") from None
    if operation not in OPERATIONS:
        raise ValueError(f"ImageMorphology: input 'operation' must be one of {', '.join(OPERATIONS)}, "
                         f"got {operation!r}")
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) \
            or not KERNEL_MIN <= kernel_size <= KERNEL_MAX:
        raise ValueError(f"ImageMorphology: input 'kernel_size' must be a whole number from {KERNEL_MIN} "
                         f"to {KERNEL_MAX}, got {kernel_size!r}")
    return morphology(image.movedim(-1, 1), operation, kernel_size).movedim(1, -1)
