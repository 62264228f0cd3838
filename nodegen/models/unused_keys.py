"""The tensors of a model file that a loader did not use: the ones real-world tools leave in
(and that are right to ignore) versus the rest, which are reported, never dropped silently.

Known and ignored (ComfyUI ``supported_models`` / A1111 / the original LDM training code):

* ``model_ema.*``: the EMA copy of the UNet that un-pruned training checkpoints carry (its keys
  lose their dots: ``model_ema.diffusion_modelinput_blocks00weight``). Like diffusers'
  ``from_single_file`` (``extract_ema=False``), ComfyUI and A1111, the ``model.diffusion_model.``
  weights are used; "pruned EMA-only" files hold the EMA weights under that name already;
* the noise-schedule buffers of LDM's ``DDPM`` (``betas``, ``alphas_cumprod``, ``posterior_*``,
  ``lvlb_weights``, ...): nodegen computes the schedule itself;
* ComfyUI's markers ``v_pred`` and ``ztsnr`` (read by :mod:`nodegen.models.detect`);
* a VAE training loss (``loss.*``: discriminator, LPIPS, ``logvar``) in VAE checkpoints;
* CLIP's ``position_ids`` buffer and ``logit_scale`` (the text encoders do not use them).

:func:`dropped` finds the tensors a key converter (diffusers' ``single_file_utils``) passed over
without an error: those are reported too.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

log = logging.getLogger(__name__)

_SCHEDULE = {"betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
             "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
             "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped",
             "posterior_mean_coef1", "posterior_mean_coef2", "lvlb_weights", "logvar", "v_pred", "ztsnr"}
_IGNORED = re.compile(r"^(model_ema\.|(first_stage_model\.)?loss\.)|(position_ids|logit_scale)$")


def ignorable(key: str) -> bool:
    """True for keys real tools write that no loader needs (see the module text)."""
    return key in _SCHEDULE or bool(_IGNORED.search(key))


def unused(keys: Iterable[str]) -> list[str]:
    """The keys among ``keys`` that are not :func:`ignorable`, sorted."""
    return sorted(k for k in keys if not ignorable(k))


def dropped(source: dict, converted: dict) -> list[str]:
    """The keys of ``source`` whose tensors are in none of ``converted``'s (a converter renames,
    reshapes or slices tensors, which keeps their storage; a tensor it skipped has none there)."""
    kept = {v.untyped_storage().data_ptr() for v in converted.values() if hasattr(v, "untyped_storage")}
    return [k for k, v in source.items() if v.numel() and v.untyped_storage().data_ptr() not in kept]


def warn_unused(path: object, keys: Iterable[str], what: str = "model") -> list[str]:
    """Log a warning naming the file, the count and a few of the tensors it did not use (and
    return them); nothing when every left-over key is a known one."""
    left = unused(keys)
    if left:
        log.warning("%s: %d tensors are not part of the %s nodegen loaded and were ignored (e.g. %s); "
                    "the file may be of a variant nodegen does not know", path, len(left), what,
                    ", ".join(left[:4]))
    return left
