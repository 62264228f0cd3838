"""Perp-Neg (Armandpour et al. 2023, "Re-imagine the Negative Prompt Algorithm", arXiv:2304.04968),
as ComfyUI's PerpNegGuider and its deprecated PerpNeg model patch compute it
(comfy_extras/nodes_perpneg.py) on the denoised predictions of the positive, the negative and an
empty prompt:

    pos = positive - empty,  neg = negative - empty
    perp = neg - (sum(neg * pos) / |pos|^2) * pos        (sums over the whole batch)
    result = empty + cfg * (pos - neg_scale * perp)

Only the part of the negative that is perpendicular to the positive pushes away, so a negative
that overlaps the positive ("a lion" / "a lion's mane") does not cancel it.

nodegen runs it as a ``denoise_hooks`` entry (see :mod:`nodegen.diffusion.denoiser`): the step's
own positive and negative predictions are reused, the empty prompt is predicted by the hook, and
the result replaces the step's CFG result. The hook goes before the MODEL's other post-CFG hooks
(CFGNorm, Epsilon Scaling, PAG ...), which see the Perp-Neg result, as ComfyUI's post-CFG
functions do; pre-CFG patches see the positive and negative predictions only (ComfyUI also hands
them the empty prompt's under PerpNegGuider). Where the step skipped the negative (cfg 1), the
guider's hook predicts it (ComfyUI's PerpNegGuider runs it whenever neg_scale is not 0); the
model patch takes zeros there, as ComfyUI's KSampler batch gives them.
"""

from __future__ import annotations

import torch


def perp_neg(positive: torch.Tensor, negative: torch.Tensor, empty: torch.Tensor, neg_scale: float,
             cfg: float) -> torch.Tensor:
    """ComfyUI's ``perp_neg`` on denoised predictions."""
    pos = positive - empty
    neg = negative - empty
    perp = neg - (torch.mul(neg, pos).sum() / torch.norm(pos) ** 2) * pos
    return empty + cfg * (pos - perp * neg_scale)


class PerpNeg:
    """The hook. ``empty``: the empty prompt's CONDITIONING; ``guider``: PerpNegGuider's rules (a
    skipped negative is predicted); else the PerpNeg model patch's, where a negative the step skipped
    (cfg 1) is zeros, as ComfyUI's batch leaves it."""

    def __init__(self, empty: list, neg_scale: float, *, guider: bool) -> None:
        self.empty = empty
        self.neg_scale = float(neg_scale)
        self.guider = guider

    def __call__(self, den, x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
        if den.ran_uncond:
            negative = den.last_uncond
        elif self.guider and den.negative:
            negative = den.predict(den.negative, x, sigma, active_only=True)
        else:
            negative = torch.zeros_like(den.last_cond)
        empty = den.predict(self.empty, x, sigma, active_only=True)
        return perp_neg(den.last_cond, negative, empty, self.neg_scale, den.cfg)
