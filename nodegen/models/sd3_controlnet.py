"""SD3 / SD 3.5 ControlNets in diffusers' layout (InstantX's SD3 ControlNets, Stability's SD 3.5
large ControlNets as diffusers ships them), loaded offline and applied as diffusers'
StableDiffusion3ControlNetPipeline applies them.

A ControlNet here is diffusers' ``SD3ControlNetModel``: a few MMDiT blocks that take the noisy
latent plus the VAE-encoded control image (``pos_embed_input``) and return one residual per block;
the SD3 transformer adds them to its blocks' outputs (``block_controlnet_hidden_states``, block
``i`` taking residual ``int(i / (blocks / residuals))``), scaled by the strength, inside the
control's start..end part of the schedule. The control image is resized to the latent's size in
pixels (centre-cropped, ComfyUI's ``common_upscale``) and VAE-encoded (the distribution's mean).

Two kinds, told apart by the tensors, as the pipeline tells them apart by the config:

* InstantX (SD3 medium): its own ``pos_embed`` and ``context_embedder`` (joint blocks that read the
  text); pooled projections forced to zeros and the control latent scaled without the VAE's shift
  (``force_zeros_for_pooled_projection``; ComfyUI's SD3 ControlNet sets the shift to 0 too).
* SD 3.5 large (``use_pos_embed=False``, ``joint_attention_dim=None``): single blocks that do not
  read the text; the latent is patch-embedded by the transformer's own ``pos_embed``; the pooled
  text embedding is used and the control latent is shifted and scaled like any SD3 latent.

The configuration comes from the tensors (blocks, widths, text and pooled widths, position-embedding
size, extra conditioning channels, qk-norm, dual-attention blocks); heads are MMDiT's 64 channels;
a folder's ``config.json`` is used as it is. Stability's own SD 3.5 ControlNet files
(``sd3.5_large_controlnet_*.safetensors``, original key names) are converted to diffusers' layout
and run as ComfyUI runs them (:mod:`nodegen.models.sd35_stability_controlnet`: the control image
changed by the file's control type, ComfyUI's positions, residuals spread over every block).
Inpainting ControlNets (Alimama's SD3 inpainting ControlNet: one extra conditioning channel for the
mask) take the masked image's latent plus a "keep" channel (:mod:`nodegen.models.inpaint_control`;
ControlNetInpaintingAliMamaApply gives the mask), as diffusers'
``StableDiffusion3ControlNetInpaintingPipeline`` builds it: that pipeline (Alimama's own) shifts the
control latent by the VAE's shift, where ComfyUI leaves the shift out for every diffusers-layout SD3
ControlNet; nodegen follows the pipeline the model was trained with.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import torch

from nodegen.diffusion.latent_formats import LATENT_FORMATS
from nodegen.image.latent_resize import resize
from nodegen.models import sd35_stability_controlnet as stability
from nodegen.models.controlnet import ControlNetError
from nodegen.models.inpaint_control import keep_channel
from nodegen.models.module_build import exactly_built, pretrained_folder
from nodegen.models.objects import use_module

#: Keys every diffusers-layout SD3 ControlNet has (both kinds).
MARKERS = ("pos_embed_input.proj.weight", "controlnet_blocks.0.weight", "transformer_blocks.0.norm1.linear.weight",
           "time_text_embed.text_embedder.linear_1.weight")
#: Keys of Stability's own SD 3.5 ControlNet files (original MMDiT names), as ComfyUI recognises them.
STABILITY_MARKERS = ("pos_embed_input.proj.weight", "transformer_blocks.0.adaLN_modulation.1.bias")
HEAD_DIM = 64
#: ``pos_embed_max_size`` of InstantX's SD3 ControlNets, for a file without the position table.
DEFAULT_POS_EMBED_MAX = 192


class SD3ControlNetError(ControlNetError):
    pass


def is_sd3_controlnet(sd: dict) -> bool:
    return all(k in sd for k in MARKERS)


def is_stability_sd35_controlnet(sd: dict) -> bool:
    return all(k in sd for k in STABILITY_MARKERS)


def is_sd3_controlnet_folder(path: Path) -> bool:
    cfg = path / "config.json"
    return cfg.is_file() and json.loads(cfg.read_text(encoding="utf-8")).get("_class_name") == "SD3ControlNetModel"


def _blocks(sd: dict, prefix: str) -> list[int]:
    pat = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    return sorted({int(m.group(1)) for k in sd if (m := pat.match(k))})


def config_from_state(sd: dict[str, torch.Tensor]) -> dict:
    """``SD3ControlNetModel`` arguments for a diffusers-layout state dict."""
    inner, cond_channels, patch, _ = sd["pos_embed_input.proj.weight"].shape
    blocks = _blocks(sd, "transformer_blocks")
    joint = "context_embedder.weight" in sd  # InstantX: joint blocks reading the text
    pos_embed = "pos_embed.proj.weight" in sd
    in_channels = int(sd["pos_embed.proj.weight"].shape[1]) if pos_embed else int(cond_channels)
    table = sd.get("pos_embed.pos_embed")
    cfg = dict(
        patch_size=int(patch), in_channels=in_channels, out_channels=in_channels, num_layers=len(blocks),
        attention_head_dim=HEAD_DIM, num_attention_heads=max(1, int(inner) // HEAD_DIM),
        joint_attention_dim=int(sd["context_embedder.weight"].shape[1]) if joint else None,
        caption_projection_dim=int(sd["context_embedder.weight"].shape[0]) if joint else int(inner),
        pooled_projection_dim=int(sd["time_text_embed.text_embedder.linear_1.weight"].shape[1]),
        pos_embed_max_size=int(math.isqrt(int(table.shape[1]))) if table is not None else DEFAULT_POS_EMBED_MAX,
        extra_conditioning_channels=int(cond_channels) - in_channels,
        dual_attention_layers=tuple(i for i in blocks if f"transformer_blocks.{i}.attn2.to_q.weight" in sd),
        qk_norm="rms_norm" if "transformer_blocks.0.attn.norm_q.weight" in sd else None,
        use_pos_embed=pos_embed, force_zeros_for_pooled_projection=joint)
    if not pos_embed:
        cfg["pos_embed_type"] = None
    return cfg


class SD3ControlNet:
    """CONTROL_NET: an SD3 / SD 3.5 ControlNet (diffusers ``SD3ControlNetModel``)."""

    family = "sd3"

    def __init__(self, net: torch.nn.Module, source: str = "", manager=None, stability_layout: bool = False,
                 control_type: str | None = None) -> None:
        self.net = net.eval().requires_grad_(False)
        self.source = source
        self.manager = manager
        #: a Stability-layout SD 3.5 file, run as ComfyUI runs those; its control type ("canny", ...)
        self.stability_layout, self.control_type = stability_layout, control_type
        extra = int(net.config.extra_conditioning_channels or 0)
        if extra not in (0, 1):
            raise SD3ControlNetError(f"{self.name}: an SD3 ControlNet with {extra} extra conditioning channels; "
                                     "only inpainting ControlNets (one channel, for the mask) are known")

    @property
    def is_inpainting(self) -> bool:
        """True for an inpainting ControlNet (Alimama's): its control input carries the mask too."""
        return int(self.net.config.extra_conditioning_channels or 0) == 1

    @property
    def name(self) -> str:
        return os.path.basename(str(self.source).rstrip("/")) or "in-memory SD3 ControlNet"

    @property
    def reads_text(self) -> bool:
        """True for InstantX's ControlNets (joint blocks); SD 3.5 large ControlNets ignore the text."""
        return self.net.config.joint_attention_dim is not None

    def check_conditioning(self, embeds: torch.Tensor | None, pooled: torch.Tensor | None) -> None:
        """Refuse a conditioning that is not an SD3 text encoding (another family's widths)."""
        if embeds is None:
            return
        cfg = self.net.config
        want = int(cfg.pooled_projection_dim)
        if pooled is None or int(pooled.shape[-1]) != want:
            got = "no pooled embedding" if pooled is None else f"a {int(pooled.shape[-1])}-wide pooled embedding"
            raise SD3ControlNetError(f"ControlNet {self.name!r} is an SD3 / SD 3.5 ControlNet (pooled text "
                                     f"embedding {want} wide), but this conditioning has {got}: it is not an SD3 "
                                     "text encoding")
        if cfg.joint_attention_dim is not None and int(embeds.shape[-1]) > int(cfg.joint_attention_dim):
            raise SD3ControlNetError(f"ControlNet {self.name!r} is an SD3 ControlNet (text embeddings up to "
                                     f"{int(cfg.joint_attention_dim)} wide), but this conditioning is "
                                     f"{int(embeds.shape[-1])} wide: it is not an SD3 text encoding")

    def control(self, image: torch.Tensor, strength: float = 1.0, start: float = 0.0, end: float = 1.0,
                vae=None, keep: torch.Tensor | None = None) -> SD3Control:
        """``keep``: an inpainting ControlNet's ``1 - mask`` ``[B, 1, H, W]`` (None: keep everything)."""
        return SD3Control(self, image, strength, start, end, vae, keep)

    def __repr__(self) -> str:
        kind = "InstantX" if self.reads_text else "SD 3.5"
        if self.is_inpainting:
            kind += " inpainting"
        if self.stability_layout:
            kind += f" {self.control_type or 'untyped'}, Stability's layout"
        return f"SD3ControlNet({kind}, {self.net.config.num_layers} blocks, {self.name})"


class SD3Control:
    """One applied SD3 ControlNet: the control image, strength, active range and the VAE that
    encodes the image."""

    kind = "sd3_controlnet"

    def __init__(self, control_net: SD3ControlNet, image: torch.Tensor, strength: float, start: float,
                 end: float, vae=None, keep: torch.Tensor | None = None) -> None:
        if image.dim() != 4 or image.shape[-1] not in (1, 3, 4):
            raise ValueError(f"ControlNet image must be an IMAGE [B,H,W,C], got {tuple(image.shape)}")
        if not 0.0 <= start <= end <= 1.0:
            raise ValueError(f"ControlNet range must satisfy 0 <= start_percent ({start}) <= end_percent ({end}) <= 1")
        if vae is None:
            raise ValueError(f"the SD3 ControlNet {control_net.name!r} takes its control image as latents: "
                             "connect the model's VAE to ControlNetApplyAdvanced's 'vae' input")
        self.control_net, self.image, self.vae = control_net, image, vae
        self.keep = keep  # an inpainting ControlNet's 1 - mask (None: keep everything)
        self.strength, self.start, self.end = float(strength), float(start), float(end)
        self._cond: dict[tuple, torch.Tensor] = {}

    @property
    def adds_to_last_block(self) -> bool:
        """ComfyUI's rule for Stability-layout files: the main model's last block gets a residual too."""
        return self.control_net.stability_layout

    def active(self, progress: float) -> bool:
        return self.start <= progress <= self.end and self.strength != 0.0

    def cond(self, batch: int, h: int, w: int, device, dtype) -> torch.Tensor:
        """The control latent ``[batch, 16, h, w]`` for a latent of ``h x w``: the image resized to
        ``8h x 8w``, VAE-encoded, scaled (and shifted for SD 3.5 and inpainting ControlNets) as the
        pipelines do; for a Stability-layout file the image is first changed by its control type, as
        ComfyUI does; an inpainting ControlNet's gets the "keep" channel after it."""
        key = (batch, h, w, str(device), dtype)
        if key not in self._cond:
            img = self.image[..., :3] if self.image.shape[-1] >= 3 else self.image.expand(-1, -1, -1, 3)
            px = resize(img.permute(0, 3, 1, 2).float(), w * 8, h * 8, "nearest-exact", crop="center")
            if self.control_net.stability_layout:
                px = stability.preprocess(px, self.control_net.control_type)
            z = self.vae.encode(px.permute(0, 2, 3, 1), device=device).float()
            scale, shift = LATENT_FORMATS["sd3"]
            if self.control_net.net.config.force_zeros_for_pooled_projection and not self.control_net.is_inpainting:
                shift = 0.0  # InstantX: no shift (diffusers' vae_shift_factor = 0)
            c = (z - shift) * scale
            if self.control_net.is_inpainting:
                c = torch.cat([c, keep_channel(self.keep, c.shape[0], h, w).to(c)], dim=1)
            reps = -(-batch // c.shape[0])
            self._cond = {key: c.repeat(reps, 1, 1, 1)[:batch].to(device, dtype)}
        return self._cond[key]

    def residuals(self, transformer, x: torch.Tensor, timestep: torch.Tensor, encoder_hidden_states: torch.Tensor,
                  pooled_projections: torch.Tensor) -> list[torch.Tensor]:
        """The block residuals (scaled by the strength) for the latent batch ``x`` ``[B, C, h, w]``; for a
        Stability-layout file one per transformer block, spread as ComfyUI spreads them."""
        cn = self.control_net
        inner = int(transformer.config.num_attention_heads) * int(transformer.config.attention_head_dim)
        if int(cn.net.inner_dim) != inner:
            raise ValueError(f"ControlNet {cn.name!r} is {int(cn.net.inner_dim)} wide but this SD3 model is {inner} "
                             "wide: load a ControlNet made for this model (SD3 medium, SD 3.5 medium or large)")
        cfg = cn.net.config
        with use_module(cn.manager, cn.net, x.device, x.dtype) as net:
            if net.pos_embed is not None:
                hidden = x
            elif cn.stability_layout:  # ComfyUI: the main model's x_embedder plus positions for this size
                hidden = stability.embed_latent(transformer, x)
            else:  # SD 3.5 large ControlNets share the transformer's patch embedding (diffusers'
                hidden = transformer.pos_embed(x)  # _get_pos_embed_from_transformer)
            pooled = torch.zeros_like(pooled_projections) if cfg.force_zeros_for_pooled_projection else pooled_projections
            cond = self.cond(x.shape[0], x.shape[-2], x.shape[-1], x.device, x.dtype)
            out = list(net(hidden_states=hidden, controlnet_cond=cond, conditioning_scale=self.strength,
                           encoder_hidden_states=encoder_hidden_states if cn.reads_text else None,
                           pooled_projections=pooled, timestep=timestep, return_dict=False)[0])
        return stability.spread(out, len(transformer.transformer_blocks)) if cn.stability_layout else out

    def __repr__(self) -> str:
        return f"SD3Control({self.control_net.name}, strength={self.strength}, range={self.start}..{self.end})"


def per_block(residuals: list[torch.Tensor], blocks: int) -> list[torch.Tensor]:
    """One residual per transformer block, as the SD3 transformer spreads a ControlNet's residuals
    over its blocks (``int(i / (blocks / len(residuals)))``), so several ControlNets can be summed."""
    interval = blocks / len(residuals)
    return [residuals[int(i / interval)] for i in range(blocks)]


def load_sd3_controlnet(path: str | os.PathLike, sd: dict | None = None, manager=None) -> SD3ControlNet:
    """A diffusers-layout SD3 ControlNet file (``sd``: its tensors, already read) or folder."""
    from diffusers import SD3ControlNetModel

    p = Path(path)
    if p.is_dir():
        return SD3ControlNet(pretrained_folder(SD3ControlNetModel, p, SD3ControlNetError, "SD3 ControlNet"),
                             str(p), manager)
    stability_layout = is_stability_sd35_controlnet(sd)
    kind = None
    if stability_layout:
        kind = stability.control_type(sd)
        try:
            sd = stability.to_diffusers(sd, p.name)
        except stability.StabilityControlNetError as e:
            raise SD3ControlNetError(str(e)) from e
    cfg = config_from_state(sd)
    if cfg["extra_conditioning_channels"] not in (0, 1):
        raise SD3ControlNetError(f"{p.name}: an SD3 ControlNet with {cfg['extra_conditioning_channels']} extra "
                                 "conditioning channels; only inpainting ControlNets (one channel, for the mask) "
                                 "are known")
    tensors = dict(sd)
    if cfg["use_pos_embed"] and "pos_embed.pos_embed" not in tensors:  # a file without the position table
        tensors["pos_embed.pos_embed"] = _position_table(cfg)
    net = exactly_built(SD3ControlNetModel, cfg, tensors, SD3ControlNetError, "SD3 ControlNet", p)
    return SD3ControlNet(net, str(p), manager, stability_layout, kind)


def _position_table(cfg: dict) -> torch.Tensor:
    from diffusers.models.embeddings import get_2d_sincos_pos_embed

    inner = cfg["num_attention_heads"] * HEAD_DIM
    base = 128 // cfg["patch_size"]  # SD3ControlNetModel's default sample_size
    table = get_2d_sincos_pos_embed(inner, cfg["pos_embed_max_size"], base_size=base, output_type="pt")
    return table.float().unsqueeze(0)
