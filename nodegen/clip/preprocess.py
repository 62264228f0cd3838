"""CLIP's image preprocessing as differentiable tensor operations.

An IMAGE batch ``[B,H,W,C]`` in [0, 1] (or ``[B,C,H,W]`` for :func:`pixels_bchw`) becomes the
normalised ``[B,3,S,S]`` pixel values an image tower takes: resize the short side to ``S``
(bicubic, antialiased) and take the centre (``crop="center"``, CLIP's own preprocessing), or resize
the whole picture to ``S x S`` (``crop="none"``, ComfyUI's other choice); then subtract OpenAI
CLIP's mean and divide by its standard deviation (used by every CLIP this package loads: OpenAI's,
LAION's and the demo CLIP were trained with them). Gradients flow through it (CLIP guidance).
"""

from __future__ import annotations

from nodegen.kernel.lazy import lazy_import

# imported on first use: the CLIP nodes read CROPS while node types are listed
torch = lazy_import("torch")
F = lazy_import("torch.nn.functional")

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
CROPS = ("center", "none")


def normalise(x: torch.Tensor, mean: tuple = MEAN, std: tuple = STD) -> torch.Tensor:
    m = torch.tensor(mean, dtype=x.dtype, device=x.device)[:, None, None]
    s = torch.tensor(std, dtype=x.dtype, device=x.device)[:, None, None]
    return (x - m) / s


def resize(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    if tuple(x.shape[-2:]) == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bicubic", antialias=True, align_corners=False)


def pixels_bchw(x: torch.Tensor, size: int, crop: str = "center", mean: tuple = MEAN,
                std: tuple = STD) -> torch.Tensor:
    """``[B,3,H,W]`` in [0, 1] -> normalised ``[B,3,size,size]`` (``mean``/``std``: the tower's
    statistics, CLIP's by default)."""
    if crop not in CROPS:
        raise ValueError(f"crop must be one of {', '.join(CROPS)}, not {crop!r}")
    h, w = x.shape[-2:]
    if crop == "center":
        scale = size / min(h, w)
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        x = resize(x, nh, nw)
        top, left = (nh - size) // 2, (nw - size) // 2
        x = x[..., top : top + size, left : left + size]
    else:
        x = resize(x, size, size)
    return normalise(x.clamp(0, 1), mean, std)


def pixels(image: torch.Tensor, size: int, crop: str = "center", mean: tuple = MEAN,
           std: tuple = STD) -> torch.Tensor:
    """IMAGE ``[B,H,W,C]`` in [0, 1] -> normalised ``[B,3,size,size]`` (an alpha channel is dropped)."""
    if image.ndim != 4:
        raise ValueError(f"expected an IMAGE batch [B,H,W,C], got shape {tuple(image.shape)}")
    return pixels_bchw(image[..., :3].permute(0, 3, 1, 2).float(), size, crop, mean, std)
