"""Perp-Neg guidance (Armandpour et al. 2023): PerpNegGuider for custom sampling and the older
PerpNeg model patch, as ComfyUI's nodes; see :mod:`nodegen.diffusion.perp_neg`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

from .flow import Guider, _cond


def _neg_scale():
    return Input.float("neg_scale", 1.0, min=0.0, max=100.0, step=0.01,
                       description="How strongly the negative's part perpendicular to the positive pushes away")


@node("PerpNegGuider", category="sampling/custom",
      description="Perp-Neg guidance: only the part of the negative prompt perpendicular to the positive "
                  "pushes away, measured from an empty prompt (negatives that overlap the subject don't erase it).",
      inputs=[Input.link("model", T.MODEL), Input.link("positive", T.CONDITIONING),
              Input.link("negative", T.CONDITIONING),
              Input.link("empty_conditioning", T.CONDITIONING, description="The encoded empty prompt"),
              Input.float("cfg", 8.0, min=0.0, max=100.0, step=0.1), _neg_scale()],
      outputs=[Output("guider", T.GUIDER)], keywords=("perp-neg", "perpendicular negative", "guidance"))
def perp_neg_guider(ctx, model, positive, negative, empty_conditioning, cfg=8.0, neg_scale=1.0):
    from nodegen.diffusion.perp_neg import PerpNeg

    empty = _cond(empty_conditioning, "empty_conditioning", "PerpNegGuider")
    hook = PerpNeg(empty, neg_scale, guider=True)
    return Guider(model.with_denoise_hook(hook, first=True), _cond(positive, "positive", "PerpNegGuider"),
                  _cond(negative, "negative", "PerpNegGuider"), float(cfg))


@node("PerpNeg", category="advanced/guidance",
      description="Perp-Neg as a model patch for KSampler (ComfyUI's deprecated node; PerpNegGuider replaces it).",
      inputs=[Input.link("model", T.MODEL),
              Input.link("empty_conditioning", T.CONDITIONING, description="The encoded empty prompt"),
              _neg_scale()],
      outputs=[Output("model", T.MODEL)], keywords=("perp-neg", "guidance"))
def perp_neg_patch(ctx, model, empty_conditioning, neg_scale=1.0):
    from nodegen.diffusion.perp_neg import PerpNeg

    hook = PerpNeg(_cond(empty_conditioning, "empty_conditioning", "PerpNeg"), neg_scale, guider=False)
    return model.with_denoise_hook(hook, first=True)
