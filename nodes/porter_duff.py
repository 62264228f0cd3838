"""PorterDuffImageComposite: ComfyUI's node (comfy_extras/nodes_compositing.py) compositing a source
image with its alpha over (in, out, atop, ...) a destination with its, one batch item at a time
(as many as the shortest of the four inputs); a source or alpha of another size is first resized to
the destination's (bicubic, centre-cropped to its aspect ratio, as ComfyUI's common_upscale). The
formulas are in :mod:`nodegen.image.porter_duff`."""

from __future__ import annotations

from nodegen.image.convert import check_image
from nodegen.image.porter_duff import MODES
from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

torch = lazy_import("torch")

NODE = "PorterDuffImageComposite"


@node(NODE, category="mask/compositing",
      description="Composite a source image over (in, out, atop, xor, ...) a destination, with their alphas as masks.",
      inputs=[Input.link("source", T.IMAGE), Input.link("source_alpha", T.MASK),
              Input.link("destination", T.IMAGE), Input.link("destination_alpha", T.MASK),
              Input.choice("mode", list(MODES), "DST")],
      outputs=[Output("image", T.IMAGE), Output("mask", T.MASK)],
      keywords=("porter duff", "alpha composite", "blend", "over", "layer"))
def porter_duff_image_composite(ctx, source, source_alpha, destination, destination_alpha, mode):
    from nodegen.image.porter_duff import porter_duff

    for name, image in (("source", source), ("destination", destination)):
        try:
            check_image(image, name)
        except ValueError as e:
            raise ValueError(f"{NODE}: {e}") from None
    source_alpha, destination_alpha = _mask(source_alpha, "source_alpha"), _mask(destination_alpha, "destination_alpha")
    if source.shape[-1] != destination.shape[-1]:
        raise ValueError(f"{NODE}: inputs 'source' and 'destination' must have the same number of channels, got "
                         f"{source.shape[-1]} and {destination.shape[-1]}")
    if mode not in MODES:
        raise ValueError(f"{NODE}: input 'mode' must be one of {', '.join(MODES)}, got {mode!r}")
    images, masks = [], []
    for i in range(min(len(source), len(source_alpha), len(destination), len(destination_alpha))):
        dst = destination[i]
        height, width = dst.shape[:2]
        dst_alpha = _fit(destination_alpha[i][..., None].to(dst), width, height)
        src = _fit(source[i].to(dst), width, height)
        src_alpha = _fit(source_alpha[i][..., None].to(dst), dst_alpha.shape[1], dst_alpha.shape[0])
        image, mask = porter_duff(src, src_alpha, dst, dst_alpha, mode)
        images.append(image)
        masks.append(mask[..., 0])
    return {"image": torch.stack(images), "mask": torch.stack(masks)}


def _mask(mask, name: str):
    if not torch.is_tensor(mask) or mask.ndim not in (2, 3):
        raise ValueError(f"{NODE}: input '{name}' must be a MASK [batch, height, width], got "
                         f"{tuple(mask.shape) if torch.is_tensor(mask) else type(mask).__name__}")
    return mask if mask.ndim == 3 else mask[None]


def _fit(item, width: int, height: int):
    """``item`` [H, W, C] at width x height (bicubic, centre-cropped first), unchanged when it is."""
    from nodegen.image.latent_resize import resize

    if tuple(item.shape[:2]) == (height, width):
        return item
    return resize(item.movedim(-1, 0)[None], width, height, "bicubic", "center")[0].movedim(0, -1)
