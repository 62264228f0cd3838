"""ResolutionSelector: a width and height from an aspect ratio and a megapixel target, as ComfyUI's
node (comfy_extras/nodes_resolution.py): ``scale = sqrt(megapixels * 2^20 / (w * h))`` for the ratio
``w:h``, each side rounded to a multiple; when a side falls below ``minimum`` the smallest
multiple-aligned size of the exact ratio with both sides at least ``minimum`` is taken."""

from __future__ import annotations

import math

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

#: ComfyUI's choices and their ratios.
ASPECT_RATIOS: dict[str, tuple[int, int]] = {
    "1:1 (Square)": (1, 1), "3:2 (Photo)": (3, 2), "4:3 (Standard)": (4, 3), "16:9 (Widescreen)": (16, 9),
    "21:9 (Ultrawide)": (21, 9), "2:3 (Portrait Photo)": (2, 3), "3:4 (Portrait Standard)": (3, 4),
    "9:16 (Portrait Widescreen)": (9, 16),
}


def resolution(aspect_ratio: str, megapixels: float, multiple: int = 8, minimum: int = 256) -> tuple[int, int]:
    wr, hr = ASPECT_RATIOS[aspect_ratio]
    scale = math.sqrt(megapixels * 1024 * 1024 / (wr * hr))
    width = round(wr * scale / multiple) * multiple
    height = round(hr * scale / multiple) * multiple
    if width < minimum or height < minimum:
        step_w, step_h = multiple // math.gcd(wr, multiple), multiple // math.gcd(hr, multiple)
        k_step = step_w * step_h // math.gcd(step_w, step_h)
        k = math.ceil(math.ceil(max(minimum / wr, minimum / hr)) / k_step) * k_step
        width, height = wr * k, hr * k
    return width, height


@node("ResolutionSelector", category="utils", display_name="Resolution Selector",
      description="Width and height (multiples of 'multiple') for an aspect ratio and a megapixel target, e.g. for "
                  "an empty latent.",
      inputs=[Input.choice("aspect_ratio", list(ASPECT_RATIOS), "1:1 (Square)"),
              Input.float("megapixels", 1.0, min=0.1, max=16.0, step=0.1, description="1.0 is about 1024x1024"),
              Input.int("multiple", 8, min=8, max=128, step=4, description="Round each side to a multiple of this"),
              Input.int("minimum", 256, min=32, max=4096, step=32, description="Smallest side allowed")],
      outputs=[Output("width", T.INT), Output("height", T.INT)], keywords=("aspect ratio", "resolution", "size"))
def resolution_selector(ctx, aspect_ratio="1:1 (Square)", megapixels=1.0, multiple=8, minimum=256):
    width, height = resolution(aspect_ratio, float(megapixels), int(multiple), int(minimum))
    return {"width": width, "height": height}
