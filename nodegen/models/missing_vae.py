"""The VAE output of an SD1 / SD2 / SDXL checkpoint that holds none ("no-VAE" releases, made to be
used with a separate VAE file): loading succeeds, using it says what to do."""

from __future__ import annotations

from typing import Any


class MissingVAE:
    latent_channels = 4
    vae = None
    manager = None

    def __init__(self, source: str, scaling_factor: float) -> None:
        self.source = source
        self.scaling_factor = scaling_factor

    def _fail(self, *args: Any, **kwargs: Any):
        raise ValueError(f"{self.source} holds no VAE (a 'no-VAE' checkpoint): load a VAE file with VAELoader "
                         f"and connect its output instead of this checkpoint's")

    use = encode = decode = encode_tiled = decode_tiled = _fail

    def clone(self) -> MissingVAE:
        return self

    def __repr__(self) -> str:
        return f"MissingVAE({self.source!r})"
