"""CLIP-guided sampling as a denoiser hook (any sampler, any SD family).

This follows the published CLIP-guided Stable Diffusion method, as in diffusers' community
pipeline ``clip_guided_stable_diffusion`` (credit: its authors, after Katherine Crowson's CLIP
guided diffusion). At each step in the chosen range:

1. the positive conditioning's prediction of the clean latent ``x0(x)`` is recomputed with
   gradients on (the UNet is differentiated, as in the pipeline);
2. ``x0`` is decoded by the VAE, at a reduced size when the latent is larger than
   ``decode_size`` pixels (the latent is resized first: memory stays bounded);
3. random cut-outs of the decoded picture (``cutouts`` of them; sizes drawn as the pipeline's
   ``MakeCutouts``, between ``min(side, CLIP input size, 0.7 x side)`` and the side, then resized
   to the CLIP input size), or the whole picture when ``cutouts`` is 0, are embedded by CLIP's
   image tower;
4. the loss is ``scale x`` the spherical distance between those embeddings and the target (the
   prompt's text embedding, or the reference pictures' mean image embedding), averaged over the
   cut-outs and summed over the batch;
5. the gradient steers the denoised estimate: ``denoised - sigma^2 * d loss / d x``, which is the
   pipeline's ``noise_pred - sqrt(beta_prod_t) * grads`` written in the samplers' sigma
   parametrisation (its LMS branch, ``latents + grads * sigma^2``, is the same step).

``through_model=False`` is a cheaper variant (no gradient through the UNet): the loss is
differentiated with respect to the clean-latent prediction itself and the step is
``denoised - d loss / d x0`` (no ``sigma^2`` factor: a fixed-size correction of the prediction at
every step). On the built-in demo models it is the variant that helps (see the demo CLIP's model
card); the pipeline's step, scaled by ``sigma^2``, moves the early, very noisy steps too far.

``normalise=True`` rescales each picture's gradient to unit root mean square before the step,
which is then ``denoised - scale * g / rms(g)`` in both modes: every guided step moves the
predicted clean latent by ``scale`` whatever the size of the CLIP loss's gradient (adaptive
gradient scaling as in Disco Diffusion's ``clamp_grad`` and other CLIP-guided samplers; the
diffusers pipeline does not normalise).

Differences from the pipeline: the cut-outs are drawn from a generator seeded by ``seed`` and the
call number (so runs are reproducible), cut-outs may be smaller than the CLIP input size when the
picture is no larger than it (the pipeline's cut-outs are then all the whole picture), and the
batch loss is a sum in both modes (each image gets the same guidance whatever the batch size).

``scale == 0`` or a step outside ``[start, end]`` (fraction of the schedule done) returns the
denoised estimate untouched: bit-identical to no guidance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from nodegen.clip import preprocess
from nodegen.clip.model import ClipModel

if TYPE_CHECKING:
    from nodegen.models.objects import VAEModel


def spherical_dist_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Squared great-circle distance between normalised embeddings (per row)."""
    x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    return (x - y).norm(dim=-1).div(2).arcsin().pow(2).mul(2)


def unit_rms(grad: torch.Tensor) -> torch.Tensor:
    """Each batch item's gradient divided by its root mean square (zero stays zero)."""
    rms = grad.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-12)
    return grad / rms.view(-1, *([1] * (grad.ndim - 1)))


def make_cutouts(pixels: torch.Tensor, n: int, cut_size: int, gen: torch.Generator,
                 cut_power: float = 1.0, min_fraction: float = 0.7) -> torch.Tensor:
    """``n`` random square cut-outs of a ``[B,3,H,W]`` batch, each resized to ``cut_size``:
    ``[n*B,3,cut_size,cut_size]`` (cut-out major)."""
    h, w = pixels.shape[-2:]
    max_size = min(h, w)
    min_size = min(max_size, cut_size, math.ceil(min_fraction * max_size))
    cuts = []
    for _ in range(n):
        size = int(torch.rand([], generator=gen) ** cut_power * (max_size - min_size) + min_size)
        ox = int(torch.randint(0, w - size + 1, (), generator=gen))
        oy = int(torch.randint(0, h - size + 1, (), generator=gen))
        cut = pixels[:, :, oy : oy + size, ox : ox + size]
        cuts.append(F.interpolate(cut, size=(cut_size, cut_size), mode="bilinear", antialias=True,
                                  align_corners=False))
    return torch.cat(cuts)


@dataclass
class ClipGuidance:
    """A ``denoise_hooks`` entry (see :mod:`nodegen.diffusion.denoiser`)."""

    clip: ClipModel
    vae: VAEModel
    target: torch.Tensor  # [1, D] target embedding, or [B, D]: one per batch item
    scale: float
    cutouts: int = 4
    start: float = 0.0
    end: float = 1.0
    decode_size: int = 224
    seed: int = 0
    #: True: the pipeline's gradient through the model, sigma^2-scaled; False: the x0 variant
    through_model: bool = True
    #: True: each image's gradient is rescaled to unit RMS, so that every guided step moves the
    #: predicted clean latent by ``scale`` (RMS, latent units) whatever the loss's magnitude
    normalise: bool = False
    #: loss of the last guided call (for logs and tests)
    last_loss: list[float] = field(default_factory=list)

    def active(self, den, sigma: float) -> bool:
        return self.scale != 0 and self.start <= den.progress_of(sigma) <= self.end

    def __call__(self, den, x: torch.Tensor, sigma: float, denoised: torch.Tensor) -> torch.Tensor:
        if not self.active(den, sigma):
            return denoised
        ctx = getattr(den, "ctx", None)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + den.calls)
        with torch.enable_grad():
            if self.through_model:
                wrt = x.detach().requires_grad_(True)
                x0 = den.predict_positive(wrt, sigma)
            else:
                wrt = x0 = denoised.detach().requires_grad_(True)
            if ctx is not None:
                ctx.check_cancelled()
            loss = self.loss(x0, gen=gen, family=getattr(den.model, "family", None))
            if ctx is not None:
                ctx.check_cancelled()
            grad = torch.autograd.grad(loss, wrt)[0].to(denoised.dtype)
        self.last_loss[:] = [float(loss)]
        if self.normalise:
            return denoised - self.scale * unit_rms(grad)
        return denoised - (sigma**2) * grad if self.through_model else denoised - grad

    def decode(self, x0: torch.Tensor, family: str | None = None) -> torch.Tensor:
        """Differentiable VAE decode of a (scaled) latent of a ``family`` model to ``[B,3,H,W]``
        in [0, 1], at most ``decode_size`` pixels on the long side (the family's scale when the
        VAE's was assumed: :meth:`VAEModel.scale_for`)."""
        h, w = x0.shape[-2:]
        factor = min(1.0, self.decode_size / (8 * max(h, w)))
        z = x0
        if factor < 1.0:
            z = F.interpolate(z, size=(max(1, round(h * factor)), max(1, round(w * factor))),
                              mode="bilinear", align_corners=False)
        with self.vae.use(x0.device) as vae:
            p = next(vae.parameters())
            img = vae.decode((z / self.vae.scale_for(family)).to(p.dtype)).sample
        return ((img.float() + 1.0) / 2.0).clamp(0, 1)

    def loss(self, x0: torch.Tensor, gen: torch.Generator, family: str | None = None) -> torch.Tensor:
        img = self.decode(x0, family)
        size = self.clip.vision.image_size
        if self.cutouts > 0:
            px = preprocess.normalise(make_cutouts(img, self.cutouts, size, gen))
        else:
            px = preprocess.pixels_bchw(img, size, "center")
        with self.clip.vision.use(x0.device) as m:
            emb = self.clip.vision.embed_pixels(m, px)
        n = max(self.cutouts, 1)
        target = self.target.to(emb.device)
        if target.shape[0] > 1:  # one target per batch item; the cut-outs are cut-out major
            target = target.repeat(n, 1)
        dists = spherical_dist_loss(emb, target)
        return dists.view(n, img.shape[0]).mean(0).sum() * self.scale


def text_target(clip: ClipModel, text: str, device=None) -> torch.Tensor:
    return F.normalize(clip.embed_texts([text], device), dim=-1)


def image_target(clip: ClipModel, images: torch.Tensor, device=None) -> torch.Tensor:
    """The normalised mean direction of the reference pictures' embeddings: ``[1, D]``."""
    emb = F.normalize(clip.embed_images(images, "center", device), dim=-1).mean(0, keepdim=True)
    return F.normalize(emb, dim=-1)


def guided_model(model, guidance: ClipGuidance):
    """A clone of MODEL whose denoiser runs ``guidance`` after every prediction."""
    return model.with_denoise_hook(guidance)
