"""TAESD: madebyollin's tiny autoencoders (taesd, taesdxl, taesd3, taef1) as VAEs.

A TAESD decodes a latent in a fraction of a full VAE's time (fast drafts, previews). The files
come as madebyollin publishes them (``taesd_decoder.pth`` / ``taesd_encoder.pth``: bare
``nn.Sequential`` state dicts, or ``.safetensors``), in ComfyUI's combined layout (``taesd_decoder.*``
and ``taesd_encoder.*`` keys in one file), or as diffusers' ``AutoencoderTiny`` weights
(``decoder.layers.*``); they run as diffusers' ``AutoencoderTiny`` (its ``layers`` are the same
``nn.Sequential``, one index lower in the decoder, which has no clamp module).

A TAESD works in the diffusion model's latent space: ``(raw - shift) * scale`` of its family
(SD1 0.18215, SDXL 0.13025, SD3 1.5305 / 0.0609, Flux 0.3611 / 0.1159), as ComfyUI's TAESD applies
``vae_scale`` / ``vae_shift``. nodegen's latents keep their own convention (4-channel latents scaled
by the family's factor, 16-channel latents raw), so :class:`TinyVAEModel` converts at its edges and
a TAESD decodes the same latents a full VAE of its family decodes. Which family a file is for comes
from its name (ComfyUI's ``taesd``/``taesdxl``/``taesd3``/``taef1`` prefixes) or, for 4-channel
files, VAELoader's latent format; the latent channels from its weights.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from nodegen.models.objects import VAEModel

#: ComfyUI's name -> (latent channels, scale, shift of its family's diffusion latents)
VARIANTS = {"taesd": (4, 0.18215, 0.0), "taesdxl": (4, 0.13025, 0.0), "taesd3": (16, 1.5305, 0.0609),
            "taef1": (16, 0.3611, 0.1159)}
_PART = re.compile(r"^(?P<variant>.*?)[_-]?(?P<part>encoder|decoder)$", re.IGNORECASE)


class TaesdError(ValueError):
    pass


class TinyVAEModel(VAEModel):
    """A TAESD as a VAE: same latents and images as :class:`VAEModel`; ``parts`` says whether it
    can encode and decode (madebyollin ships the two halves as separate files)."""

    def __init__(self, vae: torch.nn.Module, variant: str, *, parts: tuple[str, ...], source: str = "",
                 manager=None) -> None:
        _, scale, self.shift = VARIANTS[variant]
        self.variant, self.parts, self.taesd_scale = variant, parts, scale
        # nodegen's latent convention: 4 channels scaled by the family's factor, 16 raw
        super().__init__(vae, scaling_factor=scale if vae.config.latent_channels == 4 else 1.0, source=source,
                         manager=manager)

    def _need(self, part: str) -> None:
        if part not in self.parts:
            have = " and ".join(self.parts)
            raise TaesdError(f"{self.source or 'this TAESD'} holds only the {have}: put the matching "
                             f"{self.variant}_{part} file beside it to {part[:-2]}e")

    def encode(self, image: torch.Tensor, device=None, dtype=None) -> torch.Tensor:
        self._need("encoder")
        if image.ndim != 4:
            raise ValueError(f"VAE encode expects an image batch [B,H,W,C], got shape {tuple(image.shape)}")
        x = image[..., :3].permute(0, 3, 1, 2) * 2.0 - 1.0
        latent = self._run(lambda vae, t: vae.encode(t).latents, x, device, dtype).float()
        raw = latent / self.taesd_scale + self.shift
        return raw * self.scaling_factor

    def decode(self, samples: torch.Tensor, device=None, dtype=None, scale: float | None = None) -> torch.Tensor:
        self._need("decoder")
        raw = samples / (self.scaling_factor if scale is None else scale)
        z = (raw - self.shift) * self.taesd_scale
        img = self._run(lambda vae, t: vae.decode(t).sample, z, device, dtype).float()
        return ((img + 1.0) / 2.0).clamp(0, 1).permute(0, 2, 3, 1).contiguous()

    def __repr__(self) -> str:
        return f"TinyVAEModel({self.variant}, {'+'.join(self.parts)}, source={self.source!r})"


def split_parts(sd: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """``{"encoder": ..., "decoder": ...}`` in AutoencoderTiny's key names (``layers.N.*``), from
    any of the layouts above; a bare file is told encoder or decoder by its first layer."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in sd.items():
        for part in ("encoder", "decoder"):
            for prefix in (f"taesd_{part}.", f"{part}."):
                if key.startswith(prefix):
                    rest = key[len(prefix):]
                    if prefix.startswith("taesd_"):
                        rest = _diffusers_index(part, rest)
                    elif rest.startswith("layers."):
                        rest = rest[len("layers."):]
                    out.setdefault(part, {})["layers." + rest] = value
    if out:
        return out
    part = "decoder" if "1.weight" in sd else "encoder"  # the decoder's module 0 is its clamp
    return {part: {"layers." + _diffusers_index(part, k): v for k, v in sd.items()}}


def _diffusers_index(part: str, key: str) -> str:
    index, _, rest = key.partition(".")
    return f"{int(index) - 1 if part == 'decoder' else int(index)}.{rest}"


def variant_for(path: Path, latent_channels: int, four_channel_hint: str | None = None) -> str:
    """The family of a TAESD file from its name, or the hint (4 channels: ``taesd``/``taesdxl``)."""
    m = _PART.match(path.stem)
    name = (m.group("variant") if m else path.stem).lower()
    if name in VARIANTS and VARIANTS[name][0] == latent_channels:
        return name
    if latent_channels == 4:
        return four_channel_hint or ("taesdxl" if "xl" in name else "taesd")
    if latent_channels == 16:
        for key, variant in (("sd3", "taesd3"), ("f1", "taef1"), ("flux", "taef1")):
            if key in name:
                return variant
        raise TaesdError(f"{path}: a 16-channel TAESD whose name does not say its family: name it "
                         f"taesd3_decoder.* (SD3 / SD 3.5) or taef1_decoder.* (Flux), as madebyollin does")
    raise TaesdError(f"{path}: a TAESD with {latent_channels} latent channels; nodegen knows 4 (SD1, SDXL) "
                     f"and 16 (SD3, Flux)")


def sibling(path: Path, part: str) -> Path | None:
    """The other half of a madebyollin pair (``taesd_encoder.pth`` beside ``taesd_decoder.pth``)."""
    m = _PART.match(path.stem)
    if not m:
        return None
    stem = path.stem[:m.start("part")] + part
    for ext in (path.suffix, ".safetensors", ".pth", ".pt", ".bin"):
        candidate = path.with_name(stem + ext)
        if candidate.is_file():
            return candidate
    return None


def load_taesd(path: Path, sd: dict[str, torch.Tensor], *, four_channel_hint: str | None = None,
               dtype: torch.dtype = torch.float32, manager=None) -> TinyVAEModel:
    """A TinyVAEModel from a TAESD file (and the other half of its pair, when it is beside it)."""
    from diffusers import AutoencoderTiny

    from nodegen.models.files import load_state_dict

    parts = split_parts(sd)
    for part in ("encoder", "decoder"):
        other = sibling(path, part) if part not in parts else None
        if other is not None:
            parts.update({k: v for k, v in split_parts(load_state_dict(other)).items() if k == part})
    first = parts["decoder"]["layers.0.weight"].shape[1] if "decoder" in parts else \
        parts["encoder"][max(parts["encoder"], key=_layer_index)].shape[0]
    latent_channels = int(first)
    variant = variant_for(path, latent_channels, four_channel_hint)
    vae = AutoencoderTiny(latent_channels=latent_channels)
    for part, weights in parts.items():
        module = getattr(vae, part)
        missing, unexpected = module.load_state_dict(weights, strict=False)
        if missing or unexpected:
            raise TaesdError(f"{path}: not a TAESD {part} of the published shape "
                             f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
    if dtype != torch.float32:
        vae = vae.to(dtype)
    vae = vae.eval().requires_grad_(False)
    return TinyVAEModel(vae, variant, parts=tuple(p for p in ("encoder", "decoder") if p in parts),
                        source=str(path), manager=manager)


def _layer_index(key: str) -> tuple[int, str]:
    index, _, rest = key[len("layers."):].partition(".")
    return int(index), rest
