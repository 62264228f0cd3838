"""ControlNet preprocessors that need no weights: Canny edges, line art (Sobel / difference of
Gaussians), scribbles from a mask, thresholding, and blurry "tile" images.

All take and return tensors in the engine layouts (IMAGE [B,H,W,C], MASK [B,H,W]); the edge maps
are white lines on black, 3 channels, like the ControlNet annotators produce.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nodegen.preprocess.filters import dilate, erode, gaussian_blur, gray_to_image, sobel, to_gray


def canny_map(x: torch.Tensor, low: float, high: float, sigma: float = 1.0) -> torch.Tensor:
    """Canny edge detector on [B,C,H,W] in [0,1]; returns [B,1,H,W] of 0/1 floats.

    Thresholds apply to the gradient magnitude with Sobel / 4 (a sharp unit step scores 1, about
    0.64 after the default blur): OpenCV's thresholds (Sobel on 0..255) divided by 1020, so the
    ControlNet annotator's 100 / 200 are 0.098 / 0.196. Like OpenCV on colour images, each pixel
    uses the channel with the strongest gradient (edges between colours of equal brightness
    count).

    Steps: Gaussian blur, Sobel gradients, non-maximum suppression along the gradient direction
    quantised to 0/45/90/135 degrees, then hysteresis (weak pixels connected to strong ones).
    """
    if low > high:
        raise ValueError(f"low_threshold ({low}) must not exceed high_threshold ({high})")
    B, C, H, W = x.shape
    xb = gaussian_blur(x.float().reshape(B * C, 1, H, W), sigma)
    gx, gy = sobel(xb)
    gx, gy = gx.reshape(B, C, H, W), gy.reshape(B, C, H, W)
    mags = gx * gx + gy * gy
    pick = mags.argmax(dim=1, keepdim=True)
    gx, gy = gx.gather(1, pick), gy.gather(1, pick)
    mag = torch.sqrt(mags.gather(1, pick))
    angle = torch.rad2deg(torch.atan2(gy, gx)) % 180.0
    # neighbours in the 8 directions; outside the image counts as -1 (never a rival maximum)
    p = F.pad(mag, (1, 1, 1, 1), value=-1.0)
    H, W = mag.shape[-2:]

    def at(dy: int, dx: int) -> torch.Tensor:
        return p[..., 1 + dy:1 + dy + H, 1 + dx:1 + dx + W]

    bins = torch.round(angle / 45.0) % 4  # 0: horizontal gradient, 1: 45, 2: vertical, 3: 135
    # image rows grow downwards: a gradient at +45 deg (gy>0, gx>0) points to (+1, +1)
    n1 = torch.where(bins == 0, at(0, 1), torch.where(bins == 1, at(1, 1),
                     torch.where(bins == 2, at(1, 0), at(1, -1))))
    n2 = torch.where(bins == 0, at(0, -1), torch.where(bins == 1, at(-1, -1),
                     torch.where(bins == 2, at(-1, 0), at(-1, 1))))
    # ">=" on one side and ">" on the other keeps exactly one pixel of a symmetric ridge
    thin = (mag >= n1) & (mag > n2) & (mag > 1e-6)
    strong = (thin & (mag >= high)).float()
    weak = (thin & (mag >= low)).float()
    return hysteresis(strong, weak)


def hysteresis(strong: torch.Tensor, weak: torch.Tensor) -> torch.Tensor:
    """Keep the weak pixels (8-)connected to a strong one. [B,1,H,W] 0/1 floats, strong <= weak.

    Connected components of the weak pixels only (a small fraction of the image): the pairs of
    neighbouring weak pixels form an edge list; labels spread along it (each pixel takes the
    largest label of its neighbours) with pointer jumping (a pixel takes its label's label),
    which converges in far fewer rounds than growing the strong set one pixel per round."""
    B, _, H, W = weak.shape
    on = weak[:, 0] > 0
    ids = torch.nonzero(on.flatten()).squeeze(1)
    m = ids.numel()
    if m == 0:
        return torch.zeros_like(weak)
    pos = torch.full((B * H * W,), -1, dtype=torch.long, device=weak.device)
    pos[ids] = torch.arange(m, device=weak.device)
    us, vs = [], []
    # (mask of the first pixel of each pair, offset to the second) for right, down, down-right,
    # down-left neighbours
    pairs = (
        (on[:, :, :-1] & on[:, :, 1:], (slice(None), slice(None), slice(0, W - 1)), 1),
        (on[:, :-1, :] & on[:, 1:, :], (slice(None), slice(0, H - 1), slice(None)), W),
        (on[:, :-1, :-1] & on[:, 1:, 1:], (slice(None), slice(0, H - 1), slice(0, W - 1)), W + 1),
        (on[:, :-1, 1:] & on[:, 1:, :-1], (slice(None), slice(0, H - 1), slice(1, W)), W - 1),
    )
    flat_index = torch.arange(B * H * W, device=weak.device).view(B, H, W)
    for mask, where, offset in pairs:
        first = flat_index[where][mask]
        us.append(pos[first])
        vs.append(pos[first + offset])
    u, v = torch.cat(us), torch.cat(vs)
    lab = torch.arange(m, device=weak.device)
    while True:
        new = lab.clone()
        new.scatter_reduce_(0, u, lab[v], reduce="amax")
        new.scatter_reduce_(0, v, lab[u], reduce="amax")
        new = torch.maximum(new, new[new])
        if torch.equal(new, lab):
            break
        lab = new
    strong_at = strong[:, 0].flatten()[ids]
    has_strong = torch.zeros(m, dtype=strong_at.dtype, device=weak.device)
    has_strong.scatter_reduce_(0, lab, strong_at, reduce="amax")
    out = torch.zeros(B * H * W, dtype=weak.dtype, device=weak.device)
    out[ids] = has_strong[lab]
    return out.view_as(weak)


def canny(image: torch.Tensor, low: float, high: float, sigma: float = 1.0) -> torch.Tensor:
    if image.dim() != 4:
        raise ValueError(f"expected an IMAGE [B,H,W,C], got shape {tuple(image.shape)}")
    rgb = image[..., :3] if image.shape[-1] >= 3 else image[..., :1]
    return gray_to_image(canny_map(rgb.permute(0, 3, 1, 2), low, high, sigma))


def _sobel_lines(g: torch.Tensor, sigma: float) -> torch.Tensor:
    gx, gy = sobel(gaussian_blur(g, sigma))
    return torch.sqrt(gx * gx + gy * gy)


def _dog_lines(g: torch.Tensor, sigma: float, k: float = 1.6) -> torch.Tensor:
    return (gaussian_blur(g, sigma) - gaussian_blur(g, sigma * k)).abs()


def _unit_peak(fn, sigma: float) -> float:
    """Peak response of a line detector to a sharp unit step (to normalise lines to ~1)."""
    n = int(12 * sigma * 1.6) + 8
    step = torch.zeros(1, 1, 4, 2 * n)
    step[..., n:] = 1.0
    return float(fn(step, sigma).max()) or 1.0


def lineart(image: torch.Tensor, method: str = "sobel", sigma: float = 1.0,
            strength: float = 1.0) -> torch.Tensor:
    """Soft line art (white on black): the Sobel gradient magnitude after a Gaussian blur of
    ``sigma``, or the difference of Gaussians (sigma, 1.6 sigma) rectified. A sharp unit step
    gives a line of brightness about ``strength`` with either method."""
    g = to_gray(image)
    if method == "sobel":
        out = _sobel_lines(g, sigma) / _unit_peak(_sobel_lines, sigma)
    elif method == "dog":
        if sigma <= 0:
            raise ValueError("LineartEdges: sigma must be positive for the dog method")
        out = _dog_lines(g, sigma) / _unit_peak(_dog_lines, sigma)
    else:
        raise ValueError(f"LineartEdges: method must be 'sobel' or 'dog', got {method!r}")
    return gray_to_image((out * strength).clamp(0.0, 1.0))


def scribble_from_mask(mask: torch.Tensor, thickness: int = 3, threshold: float = 0.5) -> torch.Tensor:
    """Outline of the mask's regions as white scribble lines ``thickness`` pixels wide, on black."""
    if mask.dim() == 2:
        mask = mask[None]
    if mask.dim() != 3:
        raise ValueError(f"expected a MASK [B,H,W], got shape {tuple(mask.shape)}")
    m = (mask.float() >= threshold).float()[:, None]
    outer = thickness // 2
    inner = thickness - outer
    line = dilate(m, outer) - erode(m, inner)
    # erode() treats outside the image as background: an object touching the border gets no
    # line along the border itself (that is not an edge of the object in the picture)
    return gray_to_image(line.clamp(0, 1))


def threshold(image: torch.Tensor, value: float = 0.5, mode: str = "luminance") -> torch.Tensor:
    """Binary image: luminance >= value (grey, 3 channels), or each channel on its own."""
    if mode == "luminance":
        return gray_to_image((to_gray(image) >= value).float())
    if mode == "per_channel":
        out = (image[..., :3].float() >= value).float()
        return out if image.shape[-1] >= 3 else out.expand(-1, -1, -1, 3).contiguous()
    raise ValueError(f"ImageThreshold: mode must be 'luminance' or 'per_channel', got {mode!r}")


def tile_blur(image: torch.Tensor, factor: float = 4.0) -> torch.Tensor:
    """The input of a tile ControlNet: shrink by ``factor`` (area average) and resize back
    (bicubic), losing detail but keeping colours and layout."""
    if factor < 1:
        raise ValueError(f"TilePreprocess: downscale_factor must be 1 or more, got {factor}")
    x = image[..., :3].permute(0, 3, 1, 2).float()
    H, W = x.shape[-2:]
    h, w = max(1, round(H / factor)), max(1, round(W / factor))
    small = F.interpolate(x, size=(h, w), mode="area")
    big = F.interpolate(small, size=(H, W), mode="bicubic", align_corners=False)
    return big.clamp(0, 1).permute(0, 2, 3, 1).contiguous()
