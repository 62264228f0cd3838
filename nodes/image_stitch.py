"""ImageStitch: two images side by side or one above the other, as ComfyUI's core node
(comfy_extras/nodes_images.py) joins them: batches evened out by repeating the last image, the
second image scaled to the first's height (or width) or, without matching, the smaller one padded
with black around its centre, channels evened out with opaque alpha, optional even-width spacing
of a colour between them."""

from __future__ import annotations

from nodegen.image.convert import check_image
from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

from .image_ops import resize

torch = lazy_import("torch")
F = lazy_import("torch.nn.functional")

DIRECTIONS = ["right", "down", "left", "up"]
SPACING_COLORS = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "red": (1.0, 0.0, 0.0),
                  "green": (0.0, 1.0, 0.0), "blue": (0.0, 0.0, 1.0)}


@node("ImageStitch", category="image/transform",
      description="Join two images: image2 to the right of, below, left of or above image1.",
      inputs=[Input.link("image1", T.IMAGE), Input.choice("direction", DIRECTIONS, "right"),
              Input.bool("match_image_size", True, description="Scale image2 to image1's height (or width)"),
              Input.int("spacing_width", 0, min=0, max=1024, step=2, description="A gap between them (pixels, even)"),
              Input.choice("spacing_color", list(SPACING_COLORS), "white"),
              Input.link("image2", T.IMAGE, optional=True)],
      outputs=[Output("image", T.IMAGE)], keywords=("concat", "side by side", "combine", "join"))
def image_stitch(ctx, image1, direction, match_image_size, spacing_width, spacing_color, image2=None):
    check_image(image1, "image1")
    if image2 is None:
        return image1
    check_image(image2, "image2")
    image2 = image2.to(image1.device, image1.dtype)
    image1, image2 = _same_batch(image1, image2)
    horizontal = direction in ("left", "right")
    if match_image_size:
        (h1, w1), (h2, w2) = image1.shape[1:3], image2.shape[1:3]
        if horizontal:
            size = (max(1, int(h1 * (w2 / h2))), h1)
        else:
            size = (w1, max(1, int(w1 / (w2 / h2))))
        image2 = resize(image2, size[0], size[1], "lanczos")
    else:
        image1, image2 = _padded(image1, image2, axis=1 if horizontal else 2)
    image1, image2 = _same_channels(image1, image2)
    parts = [image2, image1] if direction in ("left", "up") else [image1, image2]
    if spacing_width > 0:
        parts.insert(1, _spacing(image1, image2, spacing_width + spacing_width % 2, spacing_color, horizontal))
    return torch.cat(parts, dim=2 if horizontal else 1)


def _same_batch(a, b):
    """Both with the larger batch size: the smaller batch's last image repeated."""
    n = max(a.shape[0], b.shape[0])

    def grow(t):
        return torch.cat([t, t[-1:].repeat(n - t.shape[0], 1, 1, 1)]) if t.shape[0] < n else t
    return grow(a), grow(b)


def _padded(a, b, axis: int):
    """Both padded (black, centred) to the larger size along ``axis`` (1: height, 2: width)."""
    target = max(a.shape[axis], b.shape[axis])

    def pad(t):
        extra = target - t.shape[axis]
        if extra == 0:
            return t
        lo, hi = extra // 2, extra - extra // 2
        return F.pad(t, (0, 0, 0, 0, lo, hi) if axis == 1 else (0, 0, lo, hi), value=0.0)
    return pad(a), pad(b)


def _same_channels(a, b):
    """Both with the larger channel count: missing channels (alpha) filled with ones."""
    n = max(a.shape[-1], b.shape[-1])

    def grow(t):
        if t.shape[-1] == n:
            return t
        return torch.cat([t, torch.ones(*t.shape[:-1], n - t.shape[-1], device=t.device, dtype=t.dtype)], -1)
    return grow(a), grow(b)


def _spacing(a, b, width: int, color: str, horizontal: bool):
    if horizontal:
        shape = (a.shape[0], max(a.shape[1], b.shape[1]), width, a.shape[-1])
    else:
        shape = (a.shape[0], width, max(a.shape[2], b.shape[2]), a.shape[-1])
    out = torch.zeros(shape, device=a.device, dtype=a.dtype)
    rgb = SPACING_COLORS[color]
    for c in range(min(3, shape[-1])):
        out[..., c] = rgb[c]
    if shape[-1] == 4:
        out[..., 3] = 1.0
    return out
