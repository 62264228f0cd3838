"""ControlNet (CONTROL_NET): loading SD1.x / SD2.x / SDXL ControlNets and the control hook the
denoiser calls (docs/diffusion-contract.md, "Control hook").

Files:

* a single file in the original layout (``control_model.*`` keys, or the same keys without the
  prefix as some standalone files ship them): the diffusers config is derived from the tensor
  shapes (heads by each family's rule: SD1 8 heads, SD2/SDXL head size 64) and the weights are
  converted with diffusers' ``single_file_utils.convert_controlnet_checkpoint``;
* a bare diffusers-layout file (how most SDXL ControlNets ship): renamed to the original layout
  (:mod:`nodegen.models.controlnet_export`) and loaded as above;
* a diffusers folder (``config.json`` + weights): ``ControlNetModel.from_pretrained``.

The family is recognised by the tensors: SDXL has the ``label_emb`` (text_time) embedding, SD2
uses linear projections in its transformers, SD1 uses 1x1 convolutions.

:class:`ControlNetModel` is the socket value; :meth:`ControlNetModel.control` makes a
:class:`Control` (image, strength, start..end) which nodes put into ``extras["controls"]`` of
the CondItems. The denoiser calls ``Control.residuals(...)`` at every step and sums them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nodegen.models.objects import use_module

PREFIX = "control_model."
FAMILY_NAMES = {"sd1": "SD1.x", "sd2": "SD2.x", "sdxl": "SDXL"}
#: Text-embedding widths of the full-size families (to name the model family in errors).
CONTEXT_DIMS = {768: "sd1", 1024: "sd2", 2048: "sdxl"}


class ControlNetError(ValueError):
    pass


def _diffusers():
    from nodegen.compat import lean_imports
    from nodegen.compat import torchvision as torchvision_fix

    torchvision_fix.apply()
    lean_imports.apply()
    import diffusers

    return diffusers


def _indices(keys, pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in keys if (m := rx.match(k))})


def is_controlnet(keys) -> bool:
    keys = set(keys)
    return any(k in keys for k in (PREFIX + "input_hint_block.0.weight", "input_hint_block.0.weight",
                                   "controlnet_cond_embedding.conv_in.weight"))


def strip_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``control_model.*`` keys (the rest of a combined file dropped); bare LDM keys kept."""
    if any(k.startswith(PREFIX) for k in sd):
        return {k[len(PREFIX):]: v for k, v in sd.items() if k.startswith(PREFIX)}
    return dict(sd)


def family_of_ldm(shapes: dict[str, tuple]) -> str:
    if "label_emb.0.0.weight" in shapes:
        return "sdxl"
    for k, s in shapes.items():
        if k.endswith(".proj_in.weight") and "input_blocks" in k:
            return "sd2" if len(s) == 2 else "sd1"
    return "sd1"


def config_from_ldm(shapes: dict[str, tuple], source: str = "") -> tuple[dict, str]:
    """The diffusers ``ControlNetModel`` config of an LDM ControlNet (unprefixed keys)."""
    where = source or "ControlNet"
    try:
        conv_in = shapes["input_blocks.0.0.weight"]
        hint_in = shapes["input_hint_block.0.weight"]
    except KeyError as e:
        raise ControlNetError(f"{where}: not a ControlNet in the original layout (no {e.args[0]})") from e
    family = family_of_ldm(shapes)
    inputs = _indices(shapes, r"input_blocks\.(\d+)\.")
    ops = [i for i in inputs if f"input_blocks.{i}.0.op.weight" in shapes]
    L = (ops[0] - 1) if ops else (len(inputs) - 1)
    levels = len(ops) + 1
    blocks, down, depths = [], [], []
    for b in range(levels):
        first = 1 + b * (L + 1)
        blocks.append(int(shapes[f"input_blocks.{first}.0.out_layers.3.weight"][0]))
        tb = _indices(shapes, re.escape(f"input_blocks.{first}.1.transformer_blocks.") + r"(\d+)\.")
        down.append("CrossAttnDownBlock2D" if tb else "DownBlock2D")
        depths.append(len(tb) if tb else 1)
    hint = _indices(shapes, r"input_hint_block\.(\d+)\.weight")
    if hint != list(range(0, 15, 2)):
        raise ControlNetError(f"{where}: unsupported hint encoder (convolutions {hint}; expected the "
                              f"standard 8 at 0, 2, ..., 14)")
    cond_channels = [int(shapes[f"input_hint_block.{i}.weight"][0]) for i in (0, 4, 8, 12)]
    cfg: dict[str, Any] = dict(
        in_channels=int(conv_in[1]), conditioning_channels=int(hint_in[1]),
        conditioning_embedding_out_channels=cond_channels, block_out_channels=blocks,
        down_block_types=down, layers_per_block=L, flip_sin_to_cos=True, freq_shift=0,
        norm_num_groups=32, transformer_layers_per_block=depths if len(set(depths)) > 1 else depths[0],
    )
    mid_tb = _indices(shapes, re.escape("middle_block.1.transformer_blocks.") + r"(\d+)\.")
    cfg["mid_block_type"] = "UNetMidBlock2DCrossAttn" if mid_tb else "UNetMidBlock2D"
    for k, s in shapes.items():
        if k.endswith("attn2.to_k.weight"):
            cfg["cross_attention_dim"] = int(s[1])
            proj = shapes.get(k.split("transformer_blocks.")[0] + "proj_in.weight")
            cfg["use_linear_projection"] = proj is not None and len(proj) == 2
            break
    cfg["attention_head_dim"] = 8 if family == "sd1" else [max(1, c // 64) for c in blocks]
    if family == "sd2":  # as SD2's UNet (only matters for fp16 precision)
        cfg["upcast_attention"] = True
    adm = shapes.get("label_emb.0.0.weight")
    if adm is not None:
        adm_in = int(adm[1])
        # 256 is right for real SDXL (1280 pooled + 6 x 256); the width has no weights, so
        # other sizes are fitted to the pooled width at the first call (_fit_time_embed)
        time_dim = 256
        cfg.update(addition_embed_type="text_time", addition_time_embed_dim=time_dim,
                   projection_class_embeddings_input_dim=adm_in)
    return cfg, family


def family_of_config(cfg: dict) -> str:
    if cfg.get("addition_embed_type") == "text_time":
        return "sdxl"
    return "sd2" if cfg.get("use_linear_projection") else "sd1"


class ControlNetModel:
    """CONTROL_NET: a diffusers ``ControlNetModel`` + family + source file."""

    def __init__(self, net: torch.nn.Module, family: str, source: str = "", manager=None) -> None:
        self.net = net.eval()
        self.family = family
        self.source = source
        self.manager = manager

    @property
    def name(self) -> str:
        return os.path.basename(str(self.source).rstrip("/")) or "in-memory ControlNet"

    @contextmanager
    def use(self, device=None, dtype=None) -> Iterator[torch.nn.Module]:
        with use_module(self.manager, self.net, device, dtype) as net:
            yield net

    def control(self, image: torch.Tensor, strength: float = 1.0, start: float = 0.0,
                end: float = 1.0) -> Control:
        return Control(self, image, strength, start, end)

    def __repr__(self) -> str:
        return f"ControlNetModel({FAMILY_NAMES.get(self.family, self.family)}, {self.name})"


def _model_family(embeds: torch.Tensor, pooled_extras: dict | None) -> str:
    if pooled_extras is not None:
        return "SDXL"
    dim = int(embeds.shape[-1])
    fam = CONTEXT_DIMS.get(dim)
    return FAMILY_NAMES[fam] if fam else f"a model with {dim}-wide text embeddings"


class Control:
    """One applied ControlNet: the hint image, strength and active range (fractions of the
    schedule, 0 = start, 1 = end). Implements the denoiser's control hook."""

    def __init__(self, control_net: ControlNetModel, image: torch.Tensor, strength: float,
                 start: float, end: float) -> None:
        if image.dim() != 4 or image.shape[-1] not in (1, 3, 4):
            raise ValueError(f"ControlNet image must be an IMAGE [B,H,W,C], got {tuple(image.shape)}")
        if not 0.0 <= start <= end <= 1.0:
            raise ValueError(f"ControlNet range must satisfy 0 <= start_percent ({start}) <= "
                             f"end_percent ({end}) <= 1")
        self.control_net = control_net
        self.image = image
        self.strength = float(strength)
        self.start = float(start)
        self.end = float(end)
        self._hint_cache: dict[tuple, torch.Tensor] = {}

    def __repr__(self) -> str:
        return (f"Control({self.control_net.name}, strength={self.strength}, "
                f"range={self.start}..{self.end})")

    def active(self, progress: float) -> bool:
        return self.start <= progress <= self.end

    def hint(self, batch: int, height: int, width: int, device, dtype) -> torch.Tensor:
        """The image as ``[batch, C, height, width]`` in [0,1] (resized, batch repeated)."""
        key = (batch, height, width, str(device), dtype)
        h = self._hint_cache.get(key)
        if h is None:
            img = self.image[..., :3] if self.image.shape[-1] >= 3 else self.image.expand(-1, -1, -1, 3)
            x = img.permute(0, 3, 1, 2).float()
            if x.shape[-2:] != (height, width):
                down = x.shape[-2] > height or x.shape[-1] > width
                x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False,
                                  antialias=down)
            if x.shape[0] != batch:
                reps = -(-batch // x.shape[0])
                x = x.repeat(reps, 1, 1, 1)[:batch]
            h = x.to(device=device, dtype=dtype).contiguous()
            self._hint_cache = {key: h}
        return h

    def check_compatible(self, embeds: torch.Tensor, pooled_extras: dict | None, net) -> None:
        cfg = net.config
        want_dim = int(cfg.cross_attention_dim if not isinstance(cfg.cross_attention_dim, (list, tuple))
                       else cfg.cross_attention_dim[0])
        sdxl_net = getattr(cfg, "addition_embed_type", None) == "text_time"
        if int(embeds.shape[-1]) != want_dim or sdxl_net != (pooled_extras is not None):
            raise ControlNetError(
                f"ControlNet {self.control_net.name!r} is made for "
                f"{FAMILY_NAMES.get(self.control_net.family)} models (text embeddings {want_dim} wide"
                f"{', pooled' if sdxl_net else ''}), but the model being sampled is "
                f"{_model_family(embeds, pooled_extras)} (text embeddings {int(embeds.shape[-1])} wide"
                f"{', pooled' if pooled_extras is not None else ''}); load a ControlNet made for "
                f"that model's family")

    def residuals(self, x: torch.Tensor, timestep, embeds: torch.Tensor, pooled_extras: dict | None,
                  progress: float):
        """(down residuals, mid residual) scaled by strength, or None outside start..end."""
        if not self.active(progress) or self.strength == 0.0:
            return None
        with self.control_net.use(x.device, x.dtype) as net:
            self.check_compatible(embeds, pooled_extras, net)
            cin = int(net.config.in_channels)
            sample = x[:, :cin]
            b, _, h, w = sample.shape
            hint = self.hint(b, h * 8, w * 8, x.device, x.dtype)
            kwargs = {}
            if pooled_extras is not None:
                _fit_time_embed(net, pooled_extras)
                kwargs["added_cond_kwargs"] = pooled_extras
            down, mid = net(sample, timestep, encoder_hidden_states=embeds.to(x.dtype),
                            controlnet_cond=hint, conditioning_scale=self.strength,
                            return_dict=False, **kwargs)
        return list(down), mid


def _fit_time_embed(net, pooled_extras: dict) -> None:
    """SDXL: the size-conditioning embedding width follows from the pooled width (no weights)."""
    adm_in = getattr(net.config, "projection_class_embeddings_input_dim", None)
    te = pooled_extras.get("text_embeds")
    ids = pooled_extras.get("time_ids")
    if adm_in is None or te is None or ids is None:
        return
    per = (int(adm_in) - int(te.shape[-1])) / int(ids.shape[-1])
    if per.is_integer() and per > 0 and int(per) != net.add_time_proj.num_channels:
        net.add_time_proj.num_channels = int(per)


# ----- loading -------------------------------------------------------------------------------

def _read(path: Path) -> dict[str, torch.Tensor]:
    from nodegen.upscale.model import read_state_dict

    sd = read_state_dict(path)
    for wrap in ("state_dict", "model"):
        if wrap in sd and isinstance(sd[wrap], dict):
            sd = sd[wrap]
    return sd


def load_single_file(path: str | os.PathLike, manager=None, base=None) -> ControlNetModel:
    """``base``: for 'diff' ControlNets, a callable giving the base model's UNet weights (original
    names, no prefix) to add (see :mod:`nodegen.models.diff_controlnet`)."""
    p = Path(path)
    sd = _read(p)
    if "difference" in sd:  # ComfyUI's DiffControlNetLoader adds the base UNet's weights to these
        if base is None:
            raise ControlNetError(f"{p}: this is a 'diff' ControlNet (its weights are differences from a base "
                                  f"model; key 'difference'): load it with DiffControlNetLoader and the model "
                                  f"it was made for, or use the non-'diff' (fp16/fp32) release of it")
        from nodegen.models.diff_controlnet import undiff

        sd = undiff(sd, base())
    if "lora_controlnet" in sd:  # Stability's control-lora files (ComfyUI's ControlLora)
        raise ControlNetError(f"{p}: this is a Control-LoRA (a ControlNet stored as LoRA changes to the base "
                              f"model; key 'lora_controlnet'): nodegen does not read Control-LoRAs; use a full "
                              f"ControlNet")
    if not is_controlnet(sd):
        from nodegen.models.detect import detect

        what = detect({k: tuple(v.shape) for k, v in sd.items()}).describe()
        raise ControlNetError(f"{p} is not a ControlNet (no hint encoder: control_model.input_hint_block.*); "
                              f"this is {what}")
    if "controlnet_cond_embedding.conv_in.weight" in sd:  # a bare diffusers-layout file
        from nodegen.models.controlnet_export import controlnet_to_ldm

        sd = controlnet_to_ldm(sd)
    sd = strip_prefix(sd)
    shapes = {k: tuple(v.shape) for k, v in sd.items()}
    cfg, family = config_from_ldm(shapes, str(p))
    diffusers = _diffusers()  # first: it makes torchvision importable, which single_file_utils needs
    from diffusers.loaders.single_file_utils import convert_controlnet_checkpoint

    converted = convert_controlnet_checkpoint(sd, cfg)
    converted = {k: v for k, v in converted.items() if v is not None}
    # diffusers' controlnet converter leaves out SDXL's text_time embedding
    for ldm, new in (("label_emb.0.0", "add_embedding.linear_1"), ("label_emb.0.2", "add_embedding.linear_2")):
        for leaf in ("weight", "bias"):
            if f"{ldm}.{leaf}" in sd:
                converted[f"{new}.{leaf}"] = sd[f"{ldm}.{leaf}"]
    with torch.device("meta"):
        net = diffusers.ControlNetModel(**cfg)
    missing = set(net.state_dict()) - set(converted)
    unexpected = set(converted) - set(net.state_dict())
    if missing or unexpected:
        raise ControlNetError(f"{p}: the weights do not fit the ControlNet derived from them "
                              f"(missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]})")
    dtype = torch.float32
    net.load_state_dict({k: v.to(dtype) for k, v in converted.items()}, assign=True, strict=True)
    return ControlNetModel(net.eval(), family, str(p), manager)


def load_folder(path: str | os.PathLike, manager=None) -> ControlNetModel:
    p = Path(path)
    if not (p / "config.json").is_file():
        raise ControlNetError(f"{p} is a folder without config.json; not a diffusers ControlNet")
    diffusers = _diffusers()
    # folders that hold only fp16 weights name them diffusion_pytorch_model.fp16.safetensors
    variant = None if any(p.glob("diffusion_pytorch_model.safetensors")) or \
        not any(p.glob("diffusion_pytorch_model.fp16.*")) else "fp16"
    try:
        net = diffusers.ControlNetModel.from_pretrained(str(p), local_files_only=True, variant=variant,
                                                        torch_dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - name the folder
        raise ControlNetError(f"{p}: cannot load the diffusers ControlNet: {type(e).__name__}: {e}") from e
    return ControlNetModel(net.eval(), family_of_config(dict(net.config)), str(p), manager)


def load_controlnet(path: str | os.PathLike, manager=None) -> ControlNetModel:
    """A ControlNet (for T2I-Adapters and union ControlNets too, see
    :func:`nodegen.models.control_files.load_control`)."""
    p = Path(path)
    if p.is_dir():
        return load_folder(p, manager)
    if not p.is_file():
        raise FileNotFoundError(f"ControlNet file not found: {p}")
    return load_single_file(p, manager)
