"""Mask operations (MASK = float ``[B,H,W]`` in [0,1], 1 = change), with ComfyUI's semantics.

* :func:`grow`: grey dilation (``expand > 0``) or erosion (``< 0``) by one pixel per step with a
  3x3 kernel, a cross when ``tapered_corners`` (ComfyUI's GrowMask, scipy's grey_dilation with
  "reflect" borders, which for a 3x3 kernel is the same as ignoring the outside);
* :func:`feather`: a linear ramp over the given number of pixels at each edge;
* :func:`color_to_mask`: 1 where the image's 8-bit RGB equals ``0xRRGGBB``;
* :func:`composite`: paste ``source`` into ``destination`` at ``(x, y)`` by an operation;
* :func:`outpaint_pad`: grey padding around an image and the mask of what to fill, feathered
  into the image (ComfyUI's ImagePadForOutpaint).
"""

from __future__ import annotations

from nodegen.kernel.lazy import lazy_import

# imported on first use: the mask nodes read OPERATIONS while node types are listed
torch = lazy_import("torch")
F = lazy_import("torch.nn.functional")

OPERATIONS = ["multiply", "add", "subtract", "and", "or", "xor"]


def as_batch(mask: torch.Tensor, name: str = "mask") -> torch.Tensor:
    """A MASK as float ``[B,H,W]`` (a single ``[H,W]`` mask becomes a batch of one)."""
    if not torch.is_tensor(mask) or mask.ndim not in (2, 3, 4):
        raise ValueError(f"input '{name}' must be a MASK [batch, height, width]")
    m = mask.float()
    if m.ndim == 4:  # [B,1,H,W]
        m = m.reshape(-1, m.shape[-2], m.shape[-1])
    return m if m.ndim == 3 else m[None]


def _dilate_once(m: torch.Tensor, tapered: bool) -> torch.Tensor:
    p = F.pad(m[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]
    h, w = m.shape[-2:]

    def at(dy: int, dx: int) -> torch.Tensor:
        return p[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]

    out = torch.maximum(torch.maximum(at(0, 0), at(-1, 0)), torch.maximum(at(1, 0), at(0, -1)))
    out = torch.maximum(out, at(0, 1))
    if not tapered:
        for dy, dx in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
            out = torch.maximum(out, at(dy, dx))
    return out


def grow(mask: torch.Tensor, expand: int, tapered_corners: bool = True) -> torch.Tensor:
    m = as_batch(mask)
    if expand >= 0:
        for _ in range(expand):
            m = _dilate_once(m, tapered_corners)
        return m
    for _ in range(-expand):
        m = -_dilate_once(-m, tapered_corners)
    return m


def feather(mask: torch.Tensor, left: int, top: int, right: int, bottom: int) -> torch.Tensor:
    """Multiply the outer ``n`` columns/rows of each side by ``1/n, 2/n, ..., n/n`` (outermost
    first). ComfyUI indexes the right and bottom ramps from ``-0`` (its first factor lands on the
    left/top edge); here each ramp stays on its own side."""
    out = as_batch(mask).clone()
    h, w = out.shape[-2:]
    left, right, top, bottom = min(left, w), min(right, w), min(top, h), min(bottom, h)
    for k in range(left):
        out[:, :, k] *= (k + 1) / left
    for k in range(right):
        out[:, :, w - 1 - k] *= (k + 1) / right
    for k in range(top):
        out[:, k, :] *= (k + 1) / top
    for k in range(bottom):
        out[:, h - 1 - k, :] *= (k + 1) / bottom
    return out


def color_to_mask(image: torch.Tensor, color: int) -> torch.Tensor:
    rgb = (image[..., :3].clamp(0, 1) * 255.0).round().to(torch.int64)
    packed = (rgb[..., 0] << 16) + (rgb[..., 1] << 8) + rgb[..., 2]
    return (packed == int(color)).float()


def composite(destination: torch.Tensor, source: torch.Tensor, x: int, y: int, operation: str) -> torch.Tensor:
    """``source`` combined into ``destination`` over the part where they overlap, clamped to [0, 1]."""
    if operation not in OPERATIONS:
        raise ValueError(f"unknown operation {operation!r}; choose one of {', '.join(OPERATIONS)}")
    out = as_batch(destination, "destination").clone()
    src = as_batch(source, "source")
    h, w = out.shape[-2:]
    right, bottom = min(x + src.shape[-1], w), min(y + src.shape[-2], h)
    if right <= x or bottom <= y:
        return out
    if src.shape[0] != out.shape[0]:
        reps = -(-out.shape[0] // src.shape[0])
        src = src.repeat(reps, 1, 1)[: out.shape[0]]
    s = src[:, : bottom - y, : right - x]
    d = out[:, y:bottom, x:right]
    if operation == "multiply":
        r = d * s
    elif operation == "add":
        r = d + s
    elif operation == "subtract":
        r = d - s
    else:
        a, b = d.round().bool(), s.round().bool()
        r = {"and": a & b, "or": a | b, "xor": a ^ b}[operation].float()
    out[:, y:bottom, x:right] = r
    return out.clamp(0.0, 1.0)


def outpaint_pad(image: torch.Tensor, left: int, top: int, right: int, bottom: int,
                 feathering: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The image on a 0.5-grey canvas grown by the given pixels, and the mask (1 = fill): 1 on
    the new border; inside the image ``((feathering - d) / feathering) ** 2`` within ``feathering``
    pixels of a padded side (d = distance to that side), else 0."""
    b, h, w, c = image.shape
    canvas = torch.full((b, h + top + bottom, w + left + right, c), 0.5, dtype=image.dtype, device=image.device)
    canvas[:, top:top + h, left:left + w, :] = image
    mask = torch.ones((1, h + top + bottom, w + left + right), dtype=torch.float32)
    inner = torch.zeros((h, w), dtype=torch.float32)
    if feathering > 0 and feathering * 2 < h and feathering * 2 < w:
        i = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
        j = torch.arange(w, dtype=torch.float32)[None, :].expand(h, w)
        far_h, far_w = torch.full_like(i, float(h)), torch.full_like(j, float(w))
        d = torch.minimum(torch.minimum(i if top else far_h, (h - i) if bottom else far_h),
                          torch.minimum(j if left else far_w, (w - j) if right else far_w))
        v = (feathering - d) / feathering
        inner = torch.where(d < feathering, v * v, inner)
    mask[0, top:top + h, left:left + w] = inner
    return canvas, mask
