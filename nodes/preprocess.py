"""ControlNet preprocessors that need no model weights (edges, lines, scribbles, thresholds,
tiles). Each returns an IMAGE ready for ControlNetApply."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

E = lazy_import("nodegen.preprocess.edges")

_IMG = Output("image", T.IMAGE)


@node("CannyEdges", category="controlnet/preprocessors",
      description="Canny edge map (white edges on black) for a canny ControlNet.",
      inputs=[Input.link("image", T.IMAGE),
              Input.float("low_threshold", 0.1, min=0.0, max=2.0, step=0.01,
                          description="Weak edges: gradient magnitude (a black/white step scores "
                                      "0.64 at sigma 1; OpenCV's thresholds / 1020)"),
              Input.float("high_threshold", 0.2, min=0.0, max=2.0, step=0.01,
                          description="Strong edges: edges start here and extend through weak ones"),
              Input.float("sigma", 1.0, min=0.0, max=10.0, step=0.1, description="Blur before")],
      outputs=[_IMG], keywords=("canny", "edges", "controlnet"))
def canny_edges(ctx, image, low_threshold=0.1, high_threshold=0.2, sigma=1.0):
    if low_threshold > high_threshold:
        raise ValueError(f"CannyEdges: low_threshold ({low_threshold}) must not exceed "
                         f"high_threshold ({high_threshold})")
    return E.canny(image, low_threshold, high_threshold, sigma)


@node("LineartEdges", category="controlnet/preprocessors",
      description="Soft line art (white lines on black) from Sobel gradients or a difference of Gaussians.",
      inputs=[Input.link("image", T.IMAGE),
              Input.choice("method", ["sobel", "dog"], "sobel"),
              Input.float("sigma", 1.0, min=0.0, max=10.0, step=0.1, description="Blur scale"),
              Input.float("strength", 1.0, min=0.0, max=10.0, step=0.05,
                          description="Line brightness (a sharp step gives this value)")],
      outputs=[_IMG], keywords=("lineart", "sketch", "dog", "sobel"))
def lineart_edges(ctx, image, method="sobel", sigma=1.0, strength=1.0):
    return E.lineart(image, method, sigma, strength)


@node("ScribbleFromMask", category="controlnet/preprocessors",
      description="Draw the outline of a mask as white scribble lines on black.",
      inputs=[Input.link("mask", T.MASK),
              Input.int("thickness", 3, min=1, max=64, description="Line width in pixels")],
      outputs=[_IMG], keywords=("scribble", "outline"))
def scribble_from_mask(ctx, mask, thickness=3):
    return E.scribble_from_mask(mask, thickness)


@node("ImageThreshold", category="controlnet/preprocessors",
      description="Black and white image: pixels at or above the threshold become white.",
      inputs=[Input.link("image", T.IMAGE),
              Input.float("threshold", 0.5, min=0.0, max=1.0, step=0.01),
              Input.choice("mode", ["luminance", "per_channel"], "luminance",
                           description="luminance: one grey result; per_channel: R, G, B apart")],
      outputs=[_IMG], keywords=("binary", "grayscale", "mask"))
def image_threshold(ctx, image, threshold=0.5, mode="luminance"):
    return E.threshold(image, threshold, mode)


@node("TilePreprocess", category="controlnet/preprocessors",
      description="Blurry version of an image (shrunk and enlarged again) for a tile ControlNet.",
      inputs=[Input.link("image", T.IMAGE),
              Input.float("downscale_factor", 4.0, min=1.0, max=64.0, step=0.5)],
      outputs=[_IMG], keywords=("tile", "blur"))
def tile_preprocess(ctx, image, downscale_factor=4.0):
    return E.tile_blur(image, downscale_factor)
