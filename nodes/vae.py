"""VAE nodes: latents <-> images (whole, tiled) and the inpainting encode."""

from __future__ import annotations

import math

from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

torch = lazy_import("torch")
F = lazy_import("torch.nn.functional")


def _dev(ctx):
    return getattr(ctx, "device", None)


def _latent(samples, name="samples") -> torch.Tensor:
    if not isinstance(samples, dict) or not torch.is_tensor(samples.get("samples")):
        raise TypeError(f"input '{name}' must be a LATENT (a dict with 'samples')")
    return samples["samples"]


def _pixels(pixels, name="pixels") -> torch.Tensor:
    if not torch.is_tensor(pixels) or pixels.ndim != 4 or pixels.shape[-1] not in (3, 4):
        shape = tuple(pixels.shape) if torch.is_tensor(pixels) else type(pixels).__name__
        raise ValueError(f"input '{name}' must be an IMAGE [batch, height, width, 3|4], got {shape}")
    return pixels


def crop_to_multiple(pixels: torch.Tensor, m: int = 8) -> tuple[torch.Tensor, int, int]:
    """Center-crop height and width down to multiples of ``m``; returns the offsets too."""
    h, w = pixels.shape[1], pixels.shape[2]
    nh, nw = h // m * m, w // m * m
    if nh == 0 or nw == 0:
        raise ValueError(f"input 'pixels' is {w}x{h}; the VAE needs at least {m}x{m} pixels")
    oy, ox = (h % m) // 2, (w % m) // 2
    return pixels[:, oy : oy + nh, ox : ox + nw, :], oy, ox


@node("VAEDecode", category="latent", description="Decode latents to images.",
      inputs=[Input.link("samples", T.LATENT), Input.link("vae", T.VAE)], outputs=[Output("image", T.IMAGE)])
def vae_decode(ctx, samples, vae):
    from nodegen.diffusion.latent_scale import decode_scale

    z = _latent(samples)
    return vae.decode(z, device=_dev(ctx), scale=decode_scale(vae, samples))


@node("VAEEncode", category="latent", description="Encode images to latents (cropped to multiples of 8).",
      inputs=[Input.link("pixels", T.IMAGE), Input.link("vae", T.VAE)], outputs=[Output("latent", T.LATENT)])
def vae_encode(ctx, pixels, vae):
    from nodegen.diffusion.latent_scale import encoded

    px, _, _ = crop_to_multiple(_pixels(pixels)[..., :3])
    return encoded(vae, {"samples": vae.encode(px, device=_dev(ctx))})


@node("VAEDecodeTiled", category="latent",
      description="Decode latents tile by tile (less memory); overlapping tiles are blended.",
      inputs=[Input.link("samples", T.LATENT), Input.link("vae", T.VAE),
              Input.int("tile_size", 512, min=64, max=4096, step=32, description="Tile size in pixels"),
              Input.int("overlap", 64, min=0, max=4096, step=32, description="Overlap in pixels")],
      outputs=[Output("image", T.IMAGE)])
def vae_decode_tiled(ctx, samples, vae, tile_size, overlap):
    if overlap >= tile_size // 2:
        raise ValueError(f"input 'overlap' ({overlap}) must be less than half of 'tile_size' ({tile_size})")
    from nodegen.diffusion.latent_scale import decode_scale

    z = _latent(samples)
    return vae.decode_tiled(z, tile=max(1, tile_size // 8), overlap=overlap // 8, device=_dev(ctx),
                            scale=decode_scale(vae, samples))


@node("VAEEncodeTiled", category="latent",
      description="Encode images tile by tile (less memory); overlapping tiles are blended.",
      inputs=[Input.link("pixels", T.IMAGE), Input.link("vae", T.VAE),
              Input.int("tile_size", 512, min=64, max=4096, step=64, description="Tile size in pixels"),
              Input.int("overlap", 64, min=0, max=4096, step=32, description="Overlap in pixels")],
      outputs=[Output("latent", T.LATENT)])
def vae_encode_tiled(ctx, pixels, vae, tile_size, overlap):
    if overlap >= tile_size // 2:
        raise ValueError(f"input 'overlap' ({overlap}) must be less than half of 'tile_size' ({tile_size})")
    if tile_size % 8 or overlap % 8:
        raise ValueError("inputs 'tile_size' and 'overlap' must be multiples of 8")
    from nodegen.diffusion.latent_scale import encoded

    px, _, _ = crop_to_multiple(_pixels(pixels)[..., :3])
    return encoded(vae, {"samples": vae.encode_tiled(px, tile=tile_size, overlap=overlap, device=_dev(ctx))})


def inpaint_inputs(pixels: torch.Tensor, mask: torch.Tensor, grow_mask_by: int):
    """ComfyUI's VAEEncodeForInpaint preparation: crop to multiples of 8, grey out (0.5) the
    pixels under the rounded mask, and the noise mask grown by ``grow_mask_by`` pixels."""
    if not torch.is_tensor(mask) or mask.ndim not in (2, 3):
        raise ValueError("input 'mask' must be a MASK [batch, height, width]")
    m = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).float()
    m = F.interpolate(m, size=(pixels.shape[1], pixels.shape[2]), mode="bilinear", align_corners=False)
    px, oy, ox = crop_to_multiple(pixels[..., :3].clone())
    m = m[:, :, oy : oy + px.shape[1], ox : ox + px.shape[2]]
    if grow_mask_by == 0:
        grown = m
    else:
        kernel = torch.ones((1, 1, grow_mask_by, grow_mask_by))
        pad = math.ceil((grow_mask_by - 1) / 2)
        grown = torch.clamp(F.conv2d(m.round(), kernel, padding=pad), 0, 1)
    keep = (1.0 - m.round()).squeeze(1)[..., None]
    if keep.shape[0] != px.shape[0]:
        keep = keep.expand(px.shape[0], -1, -1, -1) if keep.shape[0] == 1 else keep
    px = (px - 0.5) * keep + 0.5
    return px, grown[:, :, : px.shape[1], : px.shape[2]].round()


@node("VAEEncodeForInpaint", category="latent/inpaint",
      description="Encode an image for inpainting: masked pixels greyed out, noise mask set.",
      inputs=[Input.link("pixels", T.IMAGE), Input.link("vae", T.VAE), Input.link("mask", T.MASK),
              Input.int("grow_mask_by", 6, min=0, max=64, description="Grow the mask by this many pixels")],
      outputs=[Output("latent", T.LATENT)])
def vae_encode_for_inpaint(ctx, pixels, vae, mask, grow_mask_by):
    from nodegen.diffusion.latent_scale import encoded

    px, noise_mask = inpaint_inputs(_pixels(pixels), mask, grow_mask_by)
    return encoded(vae, {"samples": vae.encode(px, device=_dev(ctx)), "noise_mask": noise_mask})
