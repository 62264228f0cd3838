"""Live previews while sampling, as ComfyUI's ``--preview-method`` gives them.

A :class:`Previewer` turns the sampler's denoised estimate of a step into the image that step shows:

* ``latent2rgb``: the linear projection of :mod:`nodegen.diffusion.preview` (every step; nearly free);
* ``taesd``: madebyollin's tiny autoencoder of the model's family decodes the first batch item
  (ComfyUI's TAESDPreviewerImpl). The decoder file is found as VAELoader finds it (the model
  folders' kind "vae": ``vae_approx/taesd_decoder.*`` for ``taesd``), loaded once through the run's
  model manager (which caches it). On a GPU it decodes every step, as ComfyUI; on the CPU (where a
  512 px decode costs about 1.6 s on one thread) at most every ``interval`` seconds (0.25 s) and
  never sooner than :data:`COST_RATIO` times its own last decode time after it, so the previews
  between the first and the last step take at most a fifth of the time; the last step always shows. Latents longer than :data:`MAX_LATENT_SIDE`
  (:data:`CPU_MAX_LATENT_SIDE` on the CPU) are shrunk first (ComfyUI shrinks its previews to 512 px
  too). Without the file it falls back to ``latent2rgb``, saying so once in the log;
* ``auto`` (the default): ``taesd`` when the file is there, else ``latent2rgb``, silently;
* ``none``: no images (progress and cancellation go on).

The method comes from the run environment (``ctx.env.preview_method``; the engine sets it from
``--preview``, ``NODEGEN_PREVIEW`` or the editor's Settings menu).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
import torch.nn.functional as F

from nodegen.diffusion.latent_formats import latent_out
from nodegen.diffusion.preview import latent_preview
from nodegen.diffusion.preview_method import DEFAULT, check_preview_method

log = logging.getLogger(__name__)

#: model family -> ComfyUI's name of its TAESD (``latent_format.taesd_decoder_name``)
TAESD_FOR = {"sd1": "taesd", "sd2": "taesd", "sdxl": "taesdxl", "sdxl_refiner": "taesdxl", "sd3": "taesd3",
             "flux": "taef1", "chroma": "taef1"}
#: Seconds between two TAESD previews on the CPU (a GPU decodes every step, as ComfyUI).
CPU_INTERVAL = 0.25
#: After a TAESD preview, the next waits at least this many times as long as it took (CPU only).
COST_RATIO = 4.0
#: Longest latent side a TAESD preview decodes (64: a 512 px preview); longer latents are shrunk.
MAX_LATENT_SIDE = 64
#: The same on the CPU (32: 256 px, a fifth of the 512 px decode's time).
CPU_MAX_LATENT_SIDE = 32
_warned: set[str] = set()  # each fallback ("no taesd_decoder file", ...) is said once per process


def preview_method_of(ctx: Any) -> str:
    """The run environment's preview method (the default where the run has none)."""
    method = getattr(getattr(ctx, "env", None), "preview_method", None)
    return check_preview_method(method) if method else DEFAULT


def find_taesd(ctx: Any, family: str) -> Any | None:
    """The family's TAESD (a :class:`~nodegen.models.taesd.TinyVAEModel` that can decode) through
    the run's model manager, or None when the family has none or its file is not in the folders."""
    name = TAESD_FOR.get(family)
    paths, models = getattr(ctx, "paths", None), getattr(ctx, "models", None)
    if name is None or paths is None or models is None or not hasattr(models, "load_vae"):
        return None
    path = paths.resolve("vae", name)
    if path is None:
        return None
    vae = models.load_vae(path)  # cached by the manager: loaded once per file
    return vae if "decoder" in getattr(vae, "parts", ()) else None


class Previewer:
    """``previewer(step, total, denoised)``: the IMAGE ``[1, H, W, 3]`` a step shows, or None."""

    def __init__(self, ctx: Any, family: str, fmt: str | None = None, *, method: str | None = None,
                 interval: float | None = None, clock=time.monotonic) -> None:
        self.family, self.fmt = family, fmt or family
        self.method = check_preview_method(method) if method else preview_method_of(ctx)
        on_gpu = self._on_gpu(ctx)
        self.interval = interval if interval is not None else (0.0 if on_gpu else CPU_INTERVAL)
        self.cost_ratio = 0.0 if on_gpu else COST_RATIO
        self.max_side = MAX_LATENT_SIDE if on_gpu else CPU_MAX_LATENT_SIDE
        self._ctx, self._clock = ctx, clock
        self._next_at = float("-inf")  # when the next TAESD preview may be made
        self._taesd: Any = None
        self._looked = False  # the TAESD is looked for on the first preview someone wants

    @property
    def taesd(self) -> Any | None:
        """The family's TAESD when the method may use one and its file is found."""
        if not self._looked:
            self._looked = True
            if self.method in ("auto", "taesd"):
                try:
                    self._taesd = find_taesd(self._ctx, self.family)
                except Exception as e:  # noqa: BLE001 - a broken preview file must not stop the run
                    self._say_once(f"bad:{TAESD_FOR.get(self.family)}", "preview: cannot use the %s TAESD (%s); "
                                   "showing latent2rgb previews", self.family, e)
                    return None
                if self._taesd is None and self.method == "taesd":
                    self._say_fallback(self._ctx, self.family)
        return self._taesd

    @property
    def kind(self) -> str:
        """What the previews are: "taesd", "latent2rgb" or "none"."""
        if self.method == "none":
            return "none"
        return "taesd" if self.taesd is not None else "latent2rgb"

    def __call__(self, step: int, total: int, denoised: torch.Tensor) -> torch.Tensor | None:
        kind = self.kind
        if kind == "none":
            return None
        if kind == "latent2rgb":
            return latent_preview(denoised, self.family)
        start = self._clock()
        if step < total and start < self._next_at:
            return None  # throttled (the last step always shows)
        try:
            image = self.decode(denoised)
        except Exception as e:  # noqa: BLE001 - e.g. out of memory: the run goes on with cheap previews
            self._say_once(f"decode:{self.family}", "preview: the %s TAESD failed (%s); showing latent2rgb previews",
                           self.family, e)
            self._taesd = None
            return latent_preview(denoised, self.family)
        end = self._clock()
        self._next_at = end + max(self.interval, self.cost_ratio * (end - start))
        return image

    def decode(self, denoised: torch.Tensor) -> torch.Tensor:
        """The TAESD decode of the first batch item of a model-space latent, shrunk if huge."""
        z = denoised[:1].detach().float()
        side = max(z.shape[-2:])
        if side > self.max_side:
            size = [max(1, round(s * self.max_side / side)) for s in z.shape[-2:]]
            z = F.interpolate(z, size=size, mode="area")
        with torch.no_grad():
            return self.taesd.decode(latent_out(self.fmt, z)).cpu()

    @staticmethod
    def _on_gpu(ctx: Any) -> bool:
        device = getattr(ctx, "device", None) or getattr(getattr(ctx, "models", None), "device", None)
        return device is not None and torch.device(device).type != "cpu"

    @staticmethod
    def _say_once(key: str, message: str, *args: Any) -> None:
        if key not in _warned:
            _warned.add(key)
            log.warning(message, *args)

    def _say_fallback(self, ctx: Any, family: str) -> None:
        name = TAESD_FOR.get(family)
        if name is None:
            self._say_once(f"none:{family}", "preview method taesd: a %s model has no TAESD; showing latent2rgb "
                           "previews", family)
            return
        paths = getattr(ctx, "paths", None)
        where = paths.describe("vae") if paths is not None and hasattr(paths, "describe") else "the model folders"
        self._say_once(f"missing:{name}", "preview method taesd: %s_decoder not found (%s); showing latent2rgb "
                       "previews. Put madebyollin's %s_decoder.pth in a vae_approx folder for TAESD previews",
                       name, where, name)
