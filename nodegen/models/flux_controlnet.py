"""Flux.1 ControlNets in diffusers' layout (InstantX's and Shakker-Labs' releases, and XLabs' models
as diffusers converts them), loaded offline and applied as diffusers' FluxControlNetPipeline and
ComfyUI apply them.

A ControlNet here is diffusers' ``FluxControlNetModel``: a few double and single transformer blocks
that take the noisy latent plus the control image and return one residual per block, which the
Flux transformer adds to its own blocks' outputs (``controlnet_block_samples``,
``controlnet_single_block_samples``), scaled by the strength, inside the control's start..end
part of the schedule. The control image is VAE-encoded into the model's latent space and packed
like the latent (InstantX, Shakker; ComfyUI's ControlNetApplyAdvanced takes the VAE for it); a
model with an ``input_hint_block`` (XLabs) takes the pixels in [-1, 1] instead. The image is
resized to the latent's size in pixels first, centre-cropped (ComfyUI's ``common_upscale``).

The configuration comes from the tensors (blocks, widths, text width, pooled width, guidance, the
hint block); heads are Flux's 128 channels; a folder's ``config.json`` is used as it is. XLabs'
own files (``flux-canny-controlnet-v3.safetensors``: Black Forest Labs' block names,
``pos_embed_input``, an ``input_hint_block`` of eight convolutions) are converted to that layout
(:func:`xlabs_to_diffusers`).

Union models (``controlnet_mode_embedder``: InstantX's and Shakker-Labs' union releases) run as
ComfyUI runs them: SetUnionControlNetType's choice is passed as ComfyUI's type number (its list,
shared with SDXL's union ControlNets), whose mode embedding goes before the text tokens; with no
type set (``auto``) no mode token is added at all. (The union models' own mode numbers differ
from ComfyUI's list; published ComfyUI workflows were made with ComfyUI's numbering.)

Inpainting models (Alimama's FLUX.1-dev-Controlnet-Inpainting-Alpha / -Beta: a ``controlnet_x_embedder``
wider than the latent tokens by ``extra_condition_channels``, 4 = one mask channel packed 2x2) take
the masked image's latent and a "keep" channel, packed together (:mod:`nodegen.models.inpaint_control`;
ComfyUI's ControlNetInpaintingAliMamaApply gives the mask). diffusers' ``FluxControlNetModel`` has no
such option, so the wider embedder is put in after building it, as Alimama's own model class does.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

import torch

from nodegen.diffusion.latent_formats import latent_in
from nodegen.image.latent_resize import resize
from nodegen.models.inpaint_control import keep_channel
from nodegen.models.module_build import exactly_built, pretrained_folder
from nodegen.models.objects import use_module

#: Keys only a diffusers-layout Flux ControlNet has.
MARKERS = ("controlnet_x_embedder.weight", "controlnet_blocks.0.weight", "transformer_blocks.0.attn.to_q.weight")
HEAD_DIM = 128


class FluxControlNetError(ValueError):
    pass


#: XLabs' hint encoder (a Sequential: convolutions at 0, 2, ..., 14) -> diffusers' ControlNetConditioningEmbedding
XLABS_HINT = {0: "conv_in", 2: "blocks.0", 4: "blocks.1", 6: "blocks.2", 8: "blocks.3", 10: "blocks.4",
              12: "blocks.5", 14: "conv_out"}


def is_flux_controlnet(sd: dict) -> bool:
    return (all(k in sd for k in MARKERS) and "context_embedder.weight" in sd) or is_xlabs(sd)


def is_xlabs(sd: dict) -> bool:
    """XLabs' Flux ControlNet layout (Black Forest Labs' block names)."""
    return "pos_embed_input.weight" in sd and "double_blocks.0.img_attn.qkv.weight" in sd


def xlabs_to_diffusers(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An XLabs Flux ControlNet state dict in diffusers' ``FluxControlNetModel`` keys."""
    from nodegen.models.flux_convert import flux_to_diffusers

    rest = dict(sd)
    out: dict[str, torch.Tensor] = {}
    for kind in ("weight", "bias"):
        out[f"controlnet_x_embedder.{kind}"] = rest.pop(f"pos_embed_input.{kind}")
        for i, name in XLABS_HINT.items():
            out[f"input_hint_block.{name}.{kind}"] = rest.pop(f"input_hint_block.{i}.{kind}")
    for k in [k for k in rest if k.startswith("controlnet_blocks.")]:
        out[k] = rest.pop(k)
    out.update(flux_to_diffusers(rest))
    if rest:
        raise FluxControlNetError(f"unexpected tensors in an XLabs Flux ControlNet: {sorted(rest)[:4]}")
    return out


def _count(sd: dict, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    idx = {int(m.group(1)) for k in sd if (m := pat.match(k))}
    return max(idx) + 1 if idx else 0


def config_from_state(sd: dict[str, torch.Tensor]) -> dict:
    """``FluxControlNetModel`` arguments for a diffusers-layout state dict (plus
    ``extra_condition_channels`` for an inpainting model: see :func:`build_net`)."""
    inner, in_channels = sd["x_embedder.weight"].shape
    hint = "input_hint_block.conv_in.weight" in sd
    extra = int(sd["controlnet_x_embedder.weight"].shape[1]) - int(in_channels)
    cfg = dict(patch_size=2 if hint else 1, in_channels=int(in_channels), num_layers=_count(sd, "transformer_blocks"),
               num_single_layers=_count(sd, "single_transformer_blocks"), attention_head_dim=HEAD_DIM,
               num_attention_heads=max(1, int(inner) // HEAD_DIM),
               joint_attention_dim=int(sd["context_embedder.weight"].shape[1]),
               pooled_projection_dim=int(sd["time_text_embed.text_embedder.linear_1.weight"].shape[1]),
               guidance_embeds="time_text_embed.guidance_embedder.linear_1.weight" in sd,
               axes_dims_rope=[16, 56, 56])
    if "controlnet_mode_embedder.weight" in sd:
        cfg["num_mode"] = int(sd["controlnet_mode_embedder.weight"].shape[0])
    if hint:  # XLabs: the hint's 2x2 patches make the tokens (patch size 2)
        cfg["conditioning_embedding_channels"] = int(sd["input_hint_block.conv_out.weight"].shape[0])
    if extra:
        cfg["extra_condition_channels"] = extra
    return cfg


#: Alimama's inpainting models: the mask, one channel packed 2x2, after the latent's tokens.
INPAINT_EXTRA_CHANNELS = 4


def build_net(extra_condition_channels: int = 0, **config) -> torch.nn.Module:
    """``FluxControlNetModel(**config)``; with ``extra_condition_channels`` its ``controlnet_x_embedder``
    takes that many more channels (Alimama's ``FluxControlNetModel`` option; diffusers has none)."""
    from diffusers import FluxControlNetModel

    net = FluxControlNetModel(**config)
    if extra_condition_channels:
        if extra_condition_channels != INPAINT_EXTRA_CHANNELS:
            raise FluxControlNetError(f"a Flux ControlNet with {extra_condition_channels} extra condition channels; "
                                      f"only inpainting ControlNets ({INPAINT_EXTRA_CHANNELS}: the mask) are known")
        old = net.controlnet_x_embedder
        net.controlnet_x_embedder = torch.nn.Linear(old.in_features + extra_condition_channels, old.out_features,
                                                    device=old.weight.device)
        net.register_to_config(extra_condition_channels=extra_condition_channels)
    return net


class FluxControlNet:
    """CONTROL_NET: a Flux.1 ControlNet (diffusers ``FluxControlNetModel``)."""

    family = "flux"

    def __init__(self, net: torch.nn.Module, source: str = "", manager=None, control_type: str | None = None) -> None:
        self.net = net.eval().requires_grad_(False)
        self.source = source
        self.manager = manager
        #: a union model's type (SetUnionControlNetType; None: no mode token, as ComfyUI's "auto")
        self.control_type = control_type

    @property
    def is_inpainting(self) -> bool:
        """True for an inpainting ControlNet (Alimama's): its control input carries the mask too."""
        return int(self.net.controlnet_x_embedder.in_features) > int(self.net.config.in_channels)

    @property
    def is_union(self) -> bool:
        return bool(getattr(self.net, "union", False))

    def with_type(self, control_type: str | None) -> FluxControlNet:
        """SetUnionControlNetType's hook: the same weights with ``control_type`` (ComfyUI's name)."""
        if not self.is_union:
            raise ValueError(f"input 'control_net' is not a union ControlNet ({self!r}); only union models "
                             "take a control type")
        return FluxControlNet(self.net, self.source, self.manager, control_type)

    def mode(self) -> int | None:
        """ComfyUI's type number for :attr:`control_type` (None: no mode token)."""
        from nodegen.models.union_controlnet import UNION_TYPES

        if self.control_type is None:
            return None
        idx = UNION_TYPES[self.control_type]
        if idx >= int(self.net.controlnet_mode_embedder.num_embeddings):
            raise ValueError(f"the union Flux ControlNet {self.name!r} has {self.net.controlnet_mode_embedder.num_embeddings} "
                             f"modes; type {self.control_type!r} is ComfyUI's number {idx}")
        return idx

    @property
    def name(self) -> str:
        return os.path.basename(str(self.source).rstrip("/")) or "in-memory Flux ControlNet"

    @property
    def takes_pixels(self) -> bool:
        """True for XLabs' models (their own hint encoder); else the control image is VAE-encoded."""
        return self.net.input_hint_block is not None

    def control(self, image: torch.Tensor, strength: float = 1.0, start: float = 0.0, end: float = 1.0,
                vae=None, keep: torch.Tensor | None = None) -> FluxControl:
        """``keep``: an inpainting ControlNet's ``1 - mask`` ``[B, 1, H, W]`` (None: keep everything)."""
        return FluxControl(self, image, strength, start, end, vae, keep)

    def __repr__(self) -> str:
        c = self.net.config
        union = f", union type {self.control_type or 'auto'}" if self.is_union else ""
        inpaint = ", inpainting" if self.is_inpainting else ""
        return f"FluxControlNet({c.num_layers}+{c.num_single_layers} blocks{union}{inpaint}, {self.name})"


class FluxControl:
    """One applied Flux ControlNet: the control image, strength, active range, and the VAE that
    encodes the image (not needed by XLabs' models)."""

    kind = "flux_controlnet"

    def __init__(self, control_net: FluxControlNet, image: torch.Tensor, strength: float, start: float,
                 end: float, vae=None, keep: torch.Tensor | None = None) -> None:
        if image.dim() != 4 or image.shape[-1] not in (1, 3, 4):
            raise ValueError(f"ControlNet image must be an IMAGE [B,H,W,C], got {tuple(image.shape)}")
        if not 0.0 <= start <= end <= 1.0:
            raise ValueError(f"ControlNet range must satisfy 0 <= start_percent ({start}) <= end_percent ({end}) <= 1")
        if vae is None and not control_net.takes_pixels:
            raise ValueError(f"the Flux ControlNet {control_net.name!r} takes its control image as latents: "
                             "connect the model's VAE to ControlNetApplyAdvanced's 'vae' input")
        self.control_net, self.image, self.vae = control_net, image, vae
        self.keep = keep  # an inpainting ControlNet's 1 - mask (None: keep everything)
        self.strength, self.start, self.end = float(strength), float(start), float(end)
        self._cond: dict[tuple, torch.Tensor] = {}

    def active(self, progress: float) -> bool:
        return self.start <= progress <= self.end and self.strength != 0.0

    def cond(self, batch: int, h: int, w: int, device, dtype, pack) -> torch.Tensor:
        """The control input for a latent of ``h x w`` (padded to even): packed latents
        ``[batch, h/2 * w/2, 64]`` (an inpainting model's with the "keep" channel: 68 wide), or
        pixels ``[batch, 3, 8h, 8w]`` in [-1, 1] for a hint block."""
        key = (batch, h, w, str(device), dtype)
        if key not in self._cond:
            img = self.image[..., :3] if self.image.shape[-1] >= 3 else self.image.expand(-1, -1, -1, 3)
            px = resize(img.permute(0, 3, 1, 2).float(), w * 8, h * 8, "nearest-exact", crop="center")
            if self.control_net.takes_pixels:
                c = px * 2.0 - 1.0
            else:
                z = latent_in("flux", self.vae.encode(px.permute(0, 2, 3, 1), device=device).float())
                if self.control_net.is_inpainting:
                    z = torch.cat([z, keep_channel(self.keep, z.shape[0], h, w).to(z)], dim=1)
                c = pack(z)
            reps = -(-batch // c.shape[0])
            self._cond = {key: c.repeat(reps, *([1] * (c.ndim - 1)))[:batch].to(device, dtype)}
        return self._cond[key]

    def residuals(self, hidden: torch.Tensor, h: int, w: int, pack, **inputs):
        """(double-block residuals, single-block residuals) for the packed latent ``hidden``."""
        net_cfg = self.control_net.net.config
        with use_module(self.control_net.manager, self.control_net.net, hidden.device, hidden.dtype) as net:
            guidance = inputs.pop("guidance")
            if net_cfg.guidance_embeds and guidance is None:
                guidance = torch.full((hidden.shape[0],), 3.5, device=hidden.device)
            cond = self.cond(hidden.shape[0], h, w, hidden.device, hidden.dtype, pack)
            mode = self.control_net.mode() if self.control_net.is_union else None
            mode_t = None if mode is None else torch.full((hidden.shape[0], 1), mode, device=hidden.device)
            with _mode_token(net, mode is not None):
                return net(hidden_states=hidden, controlnet_cond=cond, controlnet_mode=mode_t,
                           conditioning_scale=self.strength, guidance=guidance if net_cfg.guidance_embeds else None,
                           return_dict=False, **inputs)

    def __repr__(self) -> str:
        return f"FluxControl({self.control_net.name}, strength={self.strength}, range={self.start}..{self.end})"


@contextmanager
def _mode_token(net: torch.nn.Module, on: bool):
    """A union model runs without its mode token when no type is set (ComfyUI's "auto"); diffusers'
    model always wants one, so its union switch is off for the call."""
    union = getattr(net, "union", False)
    net.union = union and on
    try:
        yield
    finally:
        net.union = union


def load_flux_controlnet(path: str | os.PathLike, sd: dict | None = None, manager=None) -> FluxControlNet:
    """A diffusers-layout Flux ControlNet file (``sd``: its tensors, already read) or folder."""
    from diffusers import FluxControlNetModel

    p = Path(path)
    if p.is_dir() and (weights := _inpainting_folder(p)) is not None:
        from safetensors.torch import load_file

        tensors = load_file(str(weights))
        net = exactly_built(build_net, config_from_state(tensors), tensors, FluxControlNetError, "Flux ControlNet",
                            weights)
        return FluxControlNet(net, str(p), manager)
    if p.is_dir():
        return FluxControlNet(pretrained_folder(FluxControlNetModel, p, FluxControlNetError, "Flux ControlNet"),
                              str(p), manager)
    if is_xlabs(sd):
        try:
            sd = xlabs_to_diffusers(sd)
        except KeyError as e:
            raise FluxControlNetError(f"{p}: an XLabs Flux ControlNet without {e.args[0]!r}") from e
    net = exactly_built(build_net, config_from_state(sd), sd, FluxControlNetError, "Flux ControlNet", p)
    return FluxControlNet(net, str(p), manager)


def _inpainting_folder(folder: Path) -> Path | None:
    """The weights file of a diffusers folder whose config has Alimama's ``extra_condition_channels``
    (diffusers' own ``from_pretrained`` cannot build it); None for other folders."""
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    if not cfg.get("extra_condition_channels"):
        return None
    files = sorted(folder.glob("*.safetensors"))
    if len(files) != 1:
        raise FluxControlNetError(f"{folder}: an inpainting Flux ControlNet folder needs one .safetensors weights file, "
                                  f"found {len(files)}")
    return files[0]


def is_flux_controlnet_folder(path: Path) -> bool:
    cfg = path / "config.json"
    return cfg.is_file() and json.loads(cfg.read_text(encoding="utf-8")).get("_class_name") == "FluxControlNetModel"
