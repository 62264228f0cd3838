"""Skip Layer Guidance for flow transformers (SD3 / SD 3.5, Flux.1), as ComfyUI's
SkipLayerGuidanceSD3 / SkipLayerGuidanceDiT apply it: while the step's sigma lies in the window
given by ``start_percent`` / ``end_percent``, the positive prediction is made once more with some
transformer blocks skipped (each passes its inputs through) and, after CFG,

    denoised = cfg_result + scale * (cond - cond_skipped)

optionally rescaled towards the conditional prediction's spread (``rescaling_scale``, DiT node).
diffusers' StableDiffusion3Pipeline does the same with ``skip_guidance_layers`` (its window counts
steps instead of sigmas). UNet models have no such blocks: as in ComfyUI, nothing changes for them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch

log = logging.getLogger(__name__)


def layer_list(text: str) -> list[int]:
    """The block numbers in ``text`` ("7, 8, 9"), as ComfyUI reads them (every run of digits)."""
    return [int(n) for n in re.findall(r"\d+", text or "")]


def _passthrough(*, hidden_states, encoder_hidden_states=None, **_kw):
    return encoder_hidden_states, hidden_states


@contextmanager
def skipped_blocks(transformer, double: list[int], single: list[int]) -> Iterator[int]:
    """Within the block, the listed joint / double blocks (``transformer_blocks``) and single blocks
    (``single_transformer_blocks``) pass their inputs through; yields how many were found."""
    chosen = []
    for attr, numbers in (("transformer_blocks", double), ("single_transformer_blocks", single)):
        blocks = getattr(transformer, attr, None) or []
        chosen += [blocks[i] for i in sorted(set(numbers)) if i < len(blocks)]
    saved = [block.__dict__.get("forward") for block in chosen]  # an instance's own (e.g. offload hooks)
    try:
        for block in chosen:
            block.forward = _passthrough
        yield len(chosen)
    finally:
        for block, own in zip(chosen, saved, strict=True):
            if own is None:
                del block.forward  # the class's forward again
            else:
                block.forward = own


class SkipLayerGuidance:
    """A ``denoise_hooks`` entry (see :mod:`nodegen.diffusion.denoiser`)."""

    def __init__(self, double: list[int], single: list[int], scale: float, start_percent: float,
                 end_percent: float, rescaling_scale: float = 0.0) -> None:
        self.double, self.single = list(double), list(single)
        self.scale, self.rescaling_scale = float(scale), float(rescaling_scale)
        self.start_percent, self.end_percent = float(start_percent), float(end_percent)
        self._warned = False

    def __call__(self, den, x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
        if self.scale <= 0 or not (self.double or self.single):
            return denoised
        if not den.percent_to_sigma(self.end_percent) <= sigma <= den.percent_to_sigma(self.start_percent):
            return denoised
        with skipped_blocks(den.unet, self.double, self.single) as found:
            if not found:
                self._warn(den)
                return denoised
            skipped = den.predict_positive(x, sigma, active_only=True)
        cond = den.last_cond
        out = denoised + (cond - skipped) * self.scale
        if self.rescaling_scale != 0:
            factor = self.rescaling_scale * (cond.std() / out.std()) + (1 - self.rescaling_scale)
            out = out * factor
        return out

    def _warn(self, den) -> None:
        if not self._warned:
            log.warning("SkipLayerGuidance: none of the blocks %s / %s exist in this %s model; nothing is skipped",
                        self.double, self.single, getattr(den, "family", ""))
            self._warned = True
