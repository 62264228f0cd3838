"""Skip Layer Guidance on the negative, as ComfyUI's SkipLayerGuidanceDiTSimple applies it
(comfy_extras/nodes_slg.py): while the step's sigma lies in the window given by ``start_percent`` /
``end_percent``, the negative prediction is made with some transformer blocks skipped (see
:func:`nodegen.diffusion.skip_layer_guidance.skipped_blocks`), and CFG uses that one. Nothing
changes where the negative is skipped (cfg 1) or for UNet models (no such blocks), as in ComfyUI.

nodegen makes the skipped negative as one more model call (ComfyUI saves it by running the negative
only with the blocks skipped); the result is the same.
"""

from __future__ import annotations

import torch

from nodegen.diffusion.skip_layer_guidance import skipped_blocks


class SkipLayerNegative:
    """A ``pre_cfg_hooks`` entry (see :mod:`nodegen.diffusion.denoiser`)."""

    def __init__(self, double: list[int], single: list[int], start_percent: float, end_percent: float) -> None:
        self.double, self.single = list(double), list(single)
        self.start_percent, self.end_percent = float(start_percent), float(end_percent)

    def __call__(self, den, x: torch.Tensor, sigma: float, cond: torch.Tensor, uncond: torch.Tensor | None):
        if uncond is None or not (self.double or self.single):
            return cond, uncond
        if not den.percent_to_sigma(self.end_percent) <= sigma <= den.percent_to_sigma(self.start_percent):
            return cond, uncond
        with skipped_blocks(den.unet, self.double, self.single) as found:
            if not found:
                return cond, uncond
            return cond, den.predict(den.negative, x, sigma, active_only=True)
