"""The model objects that flow along MODEL, CLIP and VAE links.

* :class:`DiffusionModel` (MODEL): a diffusers ``UNet2DConditionModel`` + family, prediction
  type and training schedule, with LoRA-style patches applied on use.
* :class:`TextEncoder` (CLIP): tokenizer(s) + CLIP text encoder(s), CLIP skip, patches;
  :meth:`TextEncoder.encode` turns a prompt into CONDITIONING.
* :class:`VAEModel` (VAE): a diffusers ``AutoencoderKL`` with encode/decode (and tiled variants)
  between IMAGE ``[B,H,W,C]`` in [0,1] and scaled latents.

Weights are shared between clones; each clone has its own patch list. Placement (device,
dtype, offloading) goes through a :class:`nodegen.models.manager.ModelManager`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

import torch

from nodegen.diffusion.conditioning import CondItem
from nodegen.models.patching import PatchList, patched
from nodegen.models.placement import compute_dtype, module_device, placed
from nodegen.models.schedule import scaled_linear_alphas_cumprod

if TYPE_CHECKING:
    from nodegen.models.manager import ModelManager

FAMILIES = ("sd1", "sd2", "sdxl", "sdxl_refiner", "sd3", "flux", "chroma")
#: "flow": rectified-flow velocity (SD3, Flux; see nodegen.diffusion.flow_sampling); "x0", "img_to_img" and "lcm"
#: are set by ModelSamplingDiscrete (see nodegen.diffusion.model_sampling); "edm" and "cosmos_rflow" by
#: ModelSamplingContinuousEDM (see nodegen.diffusion.continuous_sampling)
PREDICTIONS = ("epsilon", "v_prediction", "flow", "x0", "img_to_img", "lcm", "edm", "cosmos_rflow")
#: Latent scaling factors of the families' VAEs.
SCALING_FACTORS = {"sd1": 0.18215, "sd2": 0.18215, "sdxl": 0.13025, "sdxl_refiner": 0.13025}
#: The flow-matching transformer families (their own loaders, latents and sampling).
FLOW_FAMILIES = ("sd3", "flux", "chroma")


def _check(value: str, allowed: tuple, what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; expected one of {', '.join(allowed)}")


def use_module(manager: ModelManager | None, module: torch.nn.Module, device=None, dtype=None):
    """Place ``module`` through its manager, or directly when it has none (built in memory)."""
    if manager is not None:
        return manager.use(module, device, dtype)
    return placed(module, device, dtype)


class _Patchable:
    manager: ModelManager | None
    patches: PatchList

    def add_patches(self, patch_dict: dict, strength: float = 1.0) -> None:
        """Append a patch set (in place; call on a :meth:`clone`)."""
        self.patches.append((patch_dict, float(strength)))


class DiffusionModel(_Patchable):
    """MODEL: the denoising UNet with its noise schedule."""

    def __init__(self, unet: torch.nn.Module, family: str, prediction_type: str = "epsilon",
                 alphas_cumprod: torch.Tensor | None = None, *, source: str = "",
                 manager: ModelManager | None = None) -> None:
        _check(family, FAMILIES, "model family")
        _check(prediction_type, PREDICTIONS, "prediction type")
        self.unet = unet
        self.family = family
        if family in ("sd3", "flux", "chroma"):  # LoRA key tables (nodegen.models.flow_lora)
            unet._nodegen_flow_family = family
        self.prediction_type = prediction_type
        self.alphas_cumprod = (scaled_linear_alphas_cumprod() if alphas_cumprod is None
                               else alphas_cumprod.detach().to("cpu", torch.float64))
        self.source = source
        self.manager = manager
        self.patches: PatchList = []
        #: free-form options other nodes may set on a clone (e.g. sampling tweaks)
        self.options: dict[str, Any] = {}

    @classmethod
    def from_unet(cls, unet: torch.nn.Module, family: str = "sd1", prediction_type: str = "epsilon",
                  alphas_cumprod: torch.Tensor | None = None, **kw: Any) -> DiffusionModel:
        return cls(unet, family, prediction_type, alphas_cumprod, **kw)

    @property
    def unet_config(self) -> dict:
        return dict(self.unet.config)

    @property
    def in_channels(self) -> int:
        return int(self.unet.config.in_channels)

    @property
    def is_inpaint(self) -> bool:
        return self.in_channels == 9

    def clone(self) -> DiffusionModel:
        c = DiffusionModel.__new__(DiffusionModel)
        c.__dict__.update(self.__dict__)
        c.patches = list(self.patches)
        c.options = dict(self.options)
        return c

    def with_denoise_hook(self, hook: Any, *, first: bool = False) -> DiffusionModel:
        """A clone whose denoiser runs ``hook`` after guidance, after the hooks it already has, or
        before them with ``first`` (a hook that replaces the guidance rule, which ComfyUI's post-CFG
        patches then see) (see :mod:`nodegen.diffusion.denoiser`)."""
        c = self.clone()
        hooks = list(c.options.get("denoise_hooks", ()))
        c.options["denoise_hooks"] = [hook, *hooks] if first else [*hooks, hook]
        return c

    def with_pre_cfg_hook(self, hook: Any) -> DiffusionModel:
        """A clone whose denoiser runs ``hook`` on the two predictions before guidance, after the
        pre-CFG hooks it already has (see :mod:`nodegen.diffusion.denoiser`)."""
        c = self.clone()
        c.options["pre_cfg_hooks"] = [*c.options.get("pre_cfg_hooks", ()), hook]
        return c

    @contextmanager
    def use(self, device: str | torch.device | None = None,
            dtype: torch.dtype | None = None) -> Iterator[torch.nn.Module]:
        """The UNet on ``device`` (default: the manager's) in ``dtype`` with the patches applied."""
        from nodegen.diffusion import deep_shrink, freeu, self_attention_guidance, self_attention_patches
        from nodegen.models import compile as torch_compile
        from nodegen.models import hypernetwork
        from nodegen.models.ip_adapter import installed

        with use_module(self.manager, self.unet, device, dtype) as unet, patched(unet, self.patches) as u, \
                installed(u, self.options.get("ip_adapters") or []), freeu.installed(u, self.options.get("freeu")), \
                hypernetwork.installed(u, self.options.get("hypernetworks")), \
                deep_shrink.installed(u, self.options.get("deep_shrink")), \
                self_attention_patches.installed(u, self.options.get("self_attention_patches")), \
                self_attention_guidance.installed(u, self.options.get("self_attention_guidance")), \
                torch_compile.installed(u, self.options.get("torch_compile")):
            yield u

    def __repr__(self) -> str:
        return (f"DiffusionModel({self.family}, {self.prediction_type}, in={self.in_channels}, "
                f"patches={len(self.patches)}, source={self.source!r})")


#: Per family: diffusers component names of the encoders, whether hidden states get the final
#: layer norm, the default hidden layer, and which encoder gives the pooled output.
TEXT_FAMILY = {
    "sd1": dict(names=("text_encoder",), norm=True, layer=None, pooled=None),
    "sd2": dict(names=("text_encoder",), norm=True, layer=None, pooled=None),
    "sdxl": dict(names=("text_encoder", "text_encoder_2"), norm=False, layer=-2, pooled=1),
    "sdxl_refiner": dict(names=("text_encoder_2",), norm=False, layer=-2, pooled=0),
}


class _LayeredText(_Patchable):
    """What every text encoder object shares: clones with their own patch list, and CLIP skip
    (``set_layer``) within the encoders' ``num_layers``."""

    layer_idx: int | None

    @property
    def num_layers(self) -> int:
        raise NotImplementedError

    def clone(self):
        c = type(self).__new__(type(self))
        c.__dict__.update(self.__dict__)
        c.patches = list(self.patches)
        return c

    def set_layer(self, layer_idx: int | None):
        """A clone that stops at ``layer_idx`` (-1 = last layer)."""
        if layer_idx is not None and not -self.num_layers <= layer_idx <= -1:
            raise ValueError(f"CLIP layer {layer_idx} is out of range: this text encoder has "
                             f"{self.num_layers} layers (use -1 .. -{self.num_layers})")
        c = self.clone()
        c.layer_idx = layer_idx
        return c


class TextEncoder(_LayeredText):
    """CLIP: tokenizer(s) and text encoder(s).

    ``layer_idx`` is CLIP skip: None = the family's default (SD1/SD2: the last layer with the
    final layer norm, as diffusers; SDXL: the penultimate layer without it, as diffusers),
    -1 = last layer, -2 = penultimate, ... SD1/SD2 apply the final layer norm to the chosen
    layer (diffusers' ``clip_skip``); SDXL does not. SD2 single files hold OpenCLIP-H with 24
    layers; the loader drops the last one, as diffusers does, since SD2 was trained on the
    penultimate layer.
    """

    def __init__(self, tokenizers: list, encoders: list[torch.nn.Module], family: str, *,
                 layer_idx: int | None = None, source: str = "",
                 manager: ModelManager | None = None) -> None:
        _check(family, tuple(TEXT_FAMILY), "text encoder family")
        spec = TEXT_FAMILY[family]
        if len(tokenizers) != len(encoders) or len(encoders) != len(spec["names"]):
            raise ValueError(f"{family} needs {len(spec['names'])} tokenizer/encoder pair(s), "
                             f"got {len(tokenizers)} tokenizer(s) and {len(encoders)} encoder(s)")
        self.tokenizers = list(tokenizers)
        self.encoders = list(encoders)
        self.family = family
        self.layer_idx = layer_idx
        self.source = source
        self.manager = manager
        self.patches: PatchList = []

    @classmethod
    def from_components(cls, tokenizers: list, encoders: list, family: str, **kw: Any) -> TextEncoder:
        return cls(list(tokenizers), list(encoders), family, **kw)

    @property
    def encoder_names(self) -> tuple[str, ...]:
        return TEXT_FAMILY[self.family]["names"]

    @property
    def num_layers(self) -> int:
        return min(int(e.config.num_hidden_layers) for e in self.encoders)

    @contextmanager
    def use(self, device: str | torch.device | None = None,
            dtype: torch.dtype | None = None) -> Iterator[list[torch.nn.Module]]:
        """The encoders on ``device`` with the patches applied (keys ``<encoder name>.<param>``)."""
        with ExitStack() as stack:
            out = []
            for name, enc in zip(self.encoder_names, self.encoders, strict=True):
                e = stack.enter_context(use_module(self.manager, enc, device, dtype))
                out.append(stack.enter_context(patched(e, self.patches, prefix=name + ".")))
            yield out

    def encode(self, text: str, device: str | torch.device | None = None,
               dtype: torch.dtype | None = None, embeddings: Any = None) -> list[CondItem]:
        """CONDITIONING for ``text`` (see :mod:`nodegen.models.clip_encode` for weighting,
        chunking and ``embedding:name`` words, resolved by ``embeddings``, an
        :class:`nodegen.models.embeddings.EmbeddingLookup`). Embeddings come back as float32 CPU
        tensors."""
        from nodegen.models.clip_encode import encode_text
        from nodegen.models.embeddings import ENCODER_KEYS

        spec = TEXT_FAMILY[self.family]
        layer = self.layer_idx if self.layer_idx is not None else spec["layer"]
        with torch.no_grad(), self.use(device, dtype) as encs:
            embeds, pooled = encode_text(self.tokenizers, encs, text, layer_idx=layer,
                                         norm_hidden=spec["norm"], pooled_from=spec["pooled"],
                                         embeddings=embeddings, embedding_keys=ENCODER_KEYS[self.family])
        embeds = embeds.to("cpu", torch.float32)
        if pooled is not None:
            pooled = pooled.to("cpu", torch.float32)
        return [CondItem(embeds, pooled, {})]

    def __repr__(self) -> str:
        return f"TextEncoder({self.family}, layer={self.layer_idx}, patches={len(self.patches)})"


class VAEModel:
    """VAE: pixels <-> latents. Latents are multiplied by ``scaling_factor`` (16-channel VAEs: 1, raw
    latents, ComfyUI's convention; the SD3/Flux sampler scales and shifts them); images are
    ``[B,H,W,C]`` float32 in [0,1]. Encoding takes the mean of the latent distribution
    (deterministic, as ComfyUI does).

    ``scale_assumed``: the scaling factor is a guess (a standalone 4-channel VAE file without
    metadata, loaded with no latent format chosen: SD1/SD2 and SDXL VAEs have the same shapes);
    :meth:`scale_for` then gives the scale of the model family a latent was made for."""

    downscale = 8

    def __init__(self, vae: torch.nn.Module, *, scaling_factor: float | None = None, source: str = "",
                 manager: ModelManager | None = None, scale_assumed: bool = False) -> None:
        self.vae = vae
        self.scale_assumed = bool(scale_assumed)
        if scaling_factor is None and int(getattr(vae.config, "latent_channels", 4)) == 16:
            scaling_factor = 1.0  # raw latents: SD3 / Flux models scale them (nodegen.diffusion.latent_formats)
        sf = scaling_factor if scaling_factor is not None else getattr(vae.config, "scaling_factor", None)
        self.scaling_factor = float(sf if sf is not None else 0.18215)
        self.source = source
        self.manager = manager
        #: Set when a half-precision decode or encode gave NaN: this VAE then runs in float32.
        self.needs_fp32 = False

    @classmethod
    def from_vae(cls, vae: torch.nn.Module, **kw: Any) -> VAEModel:
        return cls(vae, **kw)

    @property
    def latent_channels(self) -> int:
        return int(self.vae.config.latent_channels)

    def scale_for(self, family: str | None) -> float:
        """The latent scale for latents of a model ``family``: the family's own scale when this
        VAE's was assumed (and the family is a 4-channel one), else :attr:`scaling_factor`."""
        if self.scale_assumed and family in SCALING_FACTORS:
            return SCALING_FACTORS[family]
        return self.scaling_factor

    @contextmanager
    def use(self, device=None, dtype=None) -> Iterator[torch.nn.Module]:
        with use_module(self.manager, self.vae, device, dtype) as vae:
            yield vae

    def _run(self, fn, x: torch.Tensor, device, dtype) -> torch.Tensor:
        """Run ``fn(vae, x)``; in half precision a NaN result is retried in float32, and this
        VAE then stays in float32 (``needs_fp32``: SD1/SDXL VAEs that overflow in fp16 do so
        on every image, so trying fp16 again would only cost a second decode)."""
        if device is not None:
            dev = torch.device(device)
        else:
            dev = self.manager.device if self.manager is not None else module_device(self.vae)
        dt = dtype or (self.manager.dtype_for(dev) if self.manager is not None else compute_dtype(dev))
        if dt != torch.float32 and not self.needs_fp32:
            with torch.no_grad(), self.use(dev, dt) as vae:
                out = fn(vae, x.to(dev, dt))
            if not torch.isnan(out).any():
                return out
            self.needs_fp32 = True
        with torch.no_grad(), self.use(dev, torch.float32) as vae:
            return fn(vae, x.to(dev, torch.float32))

    def encode(self, image: torch.Tensor, device=None, dtype=None) -> torch.Tensor:
        """IMAGE ``[B,H,W,C]`` -> latents ``[B,4,H/8,W/8]`` (scaled), float32 on the device."""
        if image.ndim != 4:
            raise ValueError(f"VAE encode expects an image batch [B,H,W,C], got shape {tuple(image.shape)}")
        x = image[..., :3].permute(0, 3, 1, 2) * 2.0 - 1.0

        def fn(vae, t):
            return vae.encode(t).latent_dist.mean

        return self._run(fn, x, device, dtype).float() * self.scaling_factor

    def decode(self, samples: torch.Tensor, device=None, dtype=None, scale: float | None = None) -> torch.Tensor:
        """Latents (scaled by ``scale``, default :attr:`scaling_factor`) -> IMAGE ``[B,H,W,3]``
        float32 in [0,1]."""
        z = samples / (self.scaling_factor if scale is None else scale)

        def fn(vae, t):
            return vae.decode(t).sample

        img = self._run(fn, z, device, dtype).float()
        return ((img + 1.0) / 2.0).clamp(0, 1).permute(0, 2, 3, 1).contiguous()

    def encode_tiled(self, image: torch.Tensor, tile: int = 512, overlap: int = 64, device=None,
                     dtype=None) -> torch.Tensor:
        from nodegen.image.tiling import run_tiled

        # the tiler works channels-first; encode takes IMAGE [B,H,W,C]
        pixels = image.permute(0, 3, 1, 2)
        return run_tiled(lambda t: self.encode(t.permute(0, 2, 3, 1), device, dtype), pixels,
                         1 / self.downscale, tile, overlap)

    def decode_tiled(self, samples: torch.Tensor, tile: int = 64, overlap: int = 8, device=None,
                     dtype=None, scale: float | None = None) -> torch.Tensor:
        from nodegen.image.tiling import run_tiled

        out = run_tiled(lambda t: self.decode(t, device, dtype, scale).permute(0, 3, 1, 2), samples,
                        self.downscale, tile, overlap)
        return out.permute(0, 2, 3, 1).contiguous()

    def __repr__(self) -> str:
        assumed = ", assumed" if self.scale_assumed else ""
        return f"VAEModel(scaling_factor={self.scaling_factor}{assumed}, source={self.source!r})"
