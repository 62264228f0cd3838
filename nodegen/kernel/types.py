"""Socket types: the typed values that flow along links.

A socket type is an object with a name and a colour (for the canvas). The compatibility rule is
explicit and lives in one place, :func:`compatible`:

* a type accepts itself;
* ``ANY`` accepts everything and can feed everything (reroutes, placeholders);
* a type accepts the types listed in its ``accepts`` (e.g. ``FLOAT`` accepts ``INT``).

Value layouts (documented once, here):

* ``IMAGE``: ``torch.float32`` tensor ``[batch, height, width, channels]`` (channels 3, or 4 with
  alpha), values in ``[0, 1]``, on any device.
* ``MASK``: ``torch.float32`` tensor ``[batch, height, width]`` in ``[0, 1]``; 1 marks the area to
  change (repaint).
* ``LATENT``: a dict ``{"samples": tensor [batch, channels, h, w], "noise_mask": optional MASK-like
  tensor [batch, 1, h, w] or [batch, h, w]}`` (further keys may be added by nodes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SocketType:
    name: str
    color: str = "#9e9e9e"
    accepts: frozenset[str] = field(default_factory=frozenset)
    #: True for the literal types (INT, FLOAT, STRING, BOOLEAN) that can be widgets.
    literal: bool = False
    description: str = ""
    #: ``check(value) -> None or what is wrong``: the layout rule of a value of this type, checked
    #: by the executor on every linked input before a node runs (so nodes need not repeat it).
    check: Callable[[Any], str | None] | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return self.name

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "color": self.color,
            "accepts": sorted(self.accepts),
            "literal": self.literal,
            "description": self.description,
        }


_TYPES: dict[str, SocketType] = {}


def register_type(t: SocketType) -> SocketType:
    """Register a socket type (plugins may add their own). Re-registering an equal type is fine."""
    old = _TYPES.get(t.name)
    if old is not None and old != t:
        raise ValueError(f"socket type {t.name!r} is already registered with other properties")
    _TYPES[t.name] = t
    return t


def get_type(name: str) -> SocketType | None:
    return _TYPES.get(name)


def all_types() -> dict[str, SocketType]:
    return dict(_TYPES)


def compatible(src: SocketType, dst: SocketType) -> bool:
    """Can an output of type ``src`` feed an input of type ``dst``?"""
    if src is dst or src.name == dst.name:
        return True
    if src.name == ANY.name or dst.name == ANY.name:
        return True
    return src.name in dst.accepts


def _t(name: str, color: str, description: str, accepts=(), literal=False, check=None) -> SocketType:
    return register_type(SocketType(name, color, frozenset(accepts), literal, description, check))


def _shape(value: Any) -> tuple | None:
    shape = getattr(value, "shape", None)
    return tuple(shape) if shape is not None and hasattr(value, "dtype") else None


def _check_latent(value: Any) -> str | None:
    if not isinstance(value, dict) or "samples" not in value or _shape(value["samples"]) is None:
        return "must be a LATENT (a dict with a 'samples' tensor)"
    if len(value["samples"].shape) != 4:
        return f"latent samples must be [batch, channels, h, w], got shape {_shape(value['samples'])}"
    return None


def _check_image(value: Any) -> str | None:
    shape = _shape(value)
    if shape is None or len(shape) != 4 or shape[-1] not in (1, 3, 4):
        return f"must be an IMAGE tensor [batch, height, width, 3 or 4], got {shape or type(value).__name__}"
    return None


def _check_mask(value: Any) -> str | None:
    shape = _shape(value)
    if shape is None or len(shape) not in (2, 3):
        return f"must be a MASK tensor [batch, height, width], got {shape or type(value).__name__}"
    return None


def _check_conditioning(value: Any) -> str | None:
    if not isinstance(value, list) or not value:
        return "must be a non-empty CONDITIONING (connect a text encode node)"
    return None


ANY = _t("*", "#bdbdbd", "Any type (reroutes)")
INT = _t("INT", "#7cb342", "Integer", literal=True)
FLOAT = _t("FLOAT", "#9ccc65", "Floating point number", accepts=("INT",), literal=True)
STRING = _t("STRING", "#8d6e63", "Text", literal=True)
BOOLEAN = _t("BOOLEAN", "#5c6bc0", "True or false", literal=True)

MODEL = _t("MODEL", "#b39ddb", "Diffusion model (UNet) with its noise schedule")
CLIP = _t("CLIP", "#ffd54f", "Text encoder(s) with tokenizer(s)")
VAE = _t("VAE", "#ef5350", "Variational autoencoder (pixels <-> latents)")
CONDITIONING = _t("CONDITIONING", "#ffa726", "Text conditioning (embeddings, pooled, extras)",
                  check=_check_conditioning)
LATENT = _t("LATENT", "#f06292", "Latent images: {'samples': [B,C,h,w], 'noise_mask'?}", check=_check_latent)
IMAGE = _t("IMAGE", "#64b5f6", "Images: float [B,H,W,C] in [0,1]", check=_check_image)
MASK = _t("MASK", "#81c784", "Masks: float [B,H,W] in [0,1], 1 = change", check=_check_mask)
CONTROL_NET = _t("CONTROL_NET", "#4db6ac", "ControlNet model")
UPSCALE_MODEL = _t("UPSCALE_MODEL", "#4dd0e1", "Super-resolution model")
VGG = _t("VGG", "#ba68c8", "VGG-19 feature extractor for neural style transfer")
STYLE_MODEL = _t("STYLE_MODEL", "#ab47bc", "Image prompt model whose tokens extend a conditioning (Flux.1 Redux)")
SAMPLER = _t("SAMPLER", "#ff8a65", "Sampling algorithm")
SIGMAS = _t("SIGMAS", "#a1887f", "Noise levels of a schedule")
NOISE = _t("NOISE", "#90a4ae", "A noise source (seeded) for custom sampling")
GUIDER = _t("GUIDER", "#ff7043", "A guider: model + conditioning + guidance rule, for custom sampling")
BOUNDING_BOX = _t("BOUNDING_BOX", "#80cbc4", "A rectangle: {'x', 'y', 'width', 'height'} in pixels")
LATENT_OPERATION = _t("LATENT_OPERATION", "#f48fb1", "A function on latent tensors (tonemap, sharpen), "
                     "applied to a LATENT or to the guidance while sampling")
CLIP_VISION = _t("CLIP_VISION", "#fff176", "CLIP image tower (vision encoder with projection)")
CLIP_VISION_OUTPUT = _t("CLIP_VISION_OUTPUT", "#fff59d",
                        "CLIP image encoding: .image_embeds [B,D], .last_hidden_state, .penultimate_hidden_states")
CLIP_MODEL = _t("CLIP_MODEL", "#ffee58", "A full CLIP (image and text towers) for scoring and guidance")
GLIGEN = _t("GLIGEN", "#f48fb1", "GLIGEN box-grounding model (gated self-attention for SD1.x UNets)")
PHOTOMAKER = _t("PHOTOMAKER", "#f8bbd0", "PhotoMaker v1 id encoder: fuses a face image into a prompt's class word")
IPADAPTER = _t("IPADAPTER", "#ce93d8", "IP-Adapter: image-prompt projections for the UNet's cross-attention")
