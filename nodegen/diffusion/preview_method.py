"""The preview method setting (ComfyUI's ``--preview-method``): which image a sampling step shows
while someone watches. Kept free of torch so the engine and the command line can check it cheaply;
:mod:`nodegen.diffusion.previewer` makes the images."""

from __future__ import annotations

import os

#: The environment variable that sets the method for every engine of the process.
ENV_VAR = "NODEGEN_PREVIEW"
#: method -> what it shows (the editor's Settings menu lists them in this order)
PREVIEW_METHODS: dict[str, str] = {
    "auto": "Auto (TAESD when its file is found, else latent to RGB)",
    "taesd": "TAESD (tiny autoencoder decode)",
    "latent2rgb": "Latent to RGB (fast, coarse colours)",
    "none": "None (no previews)",
}
DEFAULT = "auto"  # as ComfyUI


def check_preview_method(value: str, where: str = "preview method") -> str:
    """``value`` (lower-cased) when it names a method; else a ValueError naming ``where``."""
    method = str(value).strip().lower()
    if method not in PREVIEW_METHODS:
        raise ValueError(f"{where}: unknown preview method {value!r}; expected one of "
                         f"{', '.join(PREVIEW_METHODS)}")
    return method


def preview_method_from_env() -> str | None:
    """The method :data:`ENV_VAR` sets, or None when it is unset or empty."""
    raw = os.environ.get(ENV_VAR, "").strip()
    return check_preview_method(raw, ENV_VAR) if raw else None
