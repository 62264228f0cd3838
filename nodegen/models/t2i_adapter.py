"""T2I-Adapter (Mou et al. 2023, TencentARC): a small image encoder whose features are added to
the UNet's down blocks at every step (diffusers' ``down_intrablock_additional_residuals``).
It is loaded by ControlNetLoader and applied by the ControlNet apply nodes, as in ComfyUI.

Files: a diffusers folder (``config.json`` of a ``T2IAdapter``), a single diffusers-layout file
(``adapter.conv_in.weight``, ``adapter.body.<i>.resnets.<j>...``) or the original TencentARC layout
(``conv_in.weight``, ``body.<i*blocks + j>.block1...``). The configuration comes from the shapes:
the channels per stage, the resnets per stage, and the pixel-unshuffle factor from ``conv_in``'s
input width (``in_channels * factor^2``: 8 for SD1.5's ``full_adapter``, 16 for SDXL's
``full_adapter_xl``).

The features do not depend on the timestep: they are computed once per image size and batch,
scaled by the strength, and added while the schedule is within ``start..end``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F


class AdapterError(ValueError):
    """A file is not a T2I-Adapter this program reads."""


def is_t2i_adapter(keys) -> bool:
    keys = set(keys)
    return ("adapter.conv_in.weight" in keys or
            ("conv_in.weight" in keys and any(k.startswith("body.") and ".block1." in k for k in keys)))


def _to_diffusers(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Original TencentARC keys -> diffusers keys (blocks per stage from the channel changes)."""
    if "adapter.conv_in.weight" in sd:
        return dict(sd)
    idx = sorted({int(m.group(1)) for k in sd if (m := re.match(r"body\.(\d+)\.", k))})
    stage_starts = [0] + [i for i in idx if f"body.{i}.in_conv.weight" in sd]
    per = stage_starts[1] - stage_starts[0] if len(stage_starts) > 1 else len(idx) // 4 or 1
    out = {}
    for k, v in sd.items():
        m = re.match(r"body\.(\d+)\.(in_conv|block1|block2)\.(.*)$", k)
        if m:
            i, part, rest = int(m.group(1)), m.group(2), m.group(3)
            stage, j = divmod(i, per)
            out[f"adapter.body.{stage}.{part if part == 'in_conv' else f'resnets.{j}.{part}'}.{rest}"] = v
        else:
            out["adapter." + k] = v
    return out


def config_from_state(sd: dict[str, torch.Tensor], source: str = "") -> dict:
    conv_in = sd["adapter.conv_in.weight"]
    stages = sorted({int(m.group(1)) for k in sd if (m := re.match(r"adapter\.body\.(\d+)\.", k))})
    if not stages or any(f"adapter.body.{s}.resnets.0.block1.weight" not in sd for s in stages):
        raise AdapterError(f"{source}: not a full T2I-Adapter (light or unknown adapter layouts are not read)")
    channels = [int(sd[f"adapter.body.{s}.resnets.0.block1.weight"].shape[0]) for s in stages]
    blocks = len({m.group(1) for k in sd if (m := re.match(r"adapter\.body\.0\.resnets\.(\d+)\.", k))})
    width = int(conv_in.shape[1])
    for in_channels in (3, 1):
        factor = math.isqrt(width // in_channels)
        if factor * factor * in_channels == width and factor in (8, 16):
            xl = factor == 16
            return {"in_channels": in_channels, "channels": channels, "num_res_blocks": blocks,
                    "downscale_factor": factor, "adapter_type": "full_adapter_xl" if xl else "full_adapter"}
    raise AdapterError(f"{source}: cannot tell the T2I-Adapter's input from conv_in ({width} channels)")


class T2IAdapterModel:
    """A loaded T2I-Adapter (the CONTROL_NET socket value for adapters)."""

    kind = "t2i_adapter"

    def __init__(self, adapter: torch.nn.Module, source: str = "", manager=None) -> None:
        self.adapter = adapter.eval()
        self.source = source
        self.manager = manager
        cfg = adapter.config
        self.family = "sdxl" if cfg.adapter_type == "full_adapter_xl" else "sd1"

    @property
    def name(self) -> str:
        return os.path.basename(str(self.source).rstrip("/")) or "in-memory T2I-Adapter"

    @contextmanager
    def use(self, device=None, dtype=None) -> Iterator[torch.nn.Module]:
        from nodegen.models.objects import use_module

        with use_module(self.manager, self.adapter, device, dtype) as a:
            yield a

    def control(self, image: torch.Tensor, strength: float = 1.0, start: float = 0.0,
                end: float = 1.0) -> AdapterControl:
        return AdapterControl(self, image, strength, start, end)

    def __repr__(self) -> str:
        return f"T2IAdapterModel({self.family}, {self.name})"


class AdapterControl:
    """One applied adapter: image, strength, active range. The denoiser calls
    :meth:`features` for the UNet's ``down_intrablock_additional_residuals``."""

    kind = "t2i_adapter"

    def __init__(self, adapter: T2IAdapterModel, image: torch.Tensor, strength: float, start: float,
                 end: float) -> None:
        if image.dim() != 4 or image.shape[-1] not in (1, 3, 4):
            raise ValueError(f"T2I-Adapter image must be an IMAGE [B,H,W,C], got {tuple(image.shape)}")
        if not 0.0 <= start <= end <= 1.0:
            raise ValueError(f"adapter range must satisfy 0 <= start_percent ({start}) <= end_percent ({end}) <= 1")
        self.adapter, self.image = adapter, image
        self.strength, self.start, self.end = float(strength), float(start), float(end)
        self._cache: dict[tuple, list[torch.Tensor]] = {}

    def __repr__(self) -> str:
        return f"AdapterControl({self.adapter.name}, strength={self.strength}, range={self.start}..{self.end})"

    def _input(self, batch: int, height: int, width: int, channels: int) -> torch.Tensor:
        x = self.image[..., :3] if self.image.shape[-1] >= 3 else self.image.expand(-1, -1, -1, 3)
        x = x.permute(0, 3, 1, 2).float()
        if channels == 1:  # sketch adapters take one grey channel
            x = x.mean(dim=1, keepdim=True)
        if x.shape[-2:] != (height, width):
            x = F.interpolate(x, size=(height, width), mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        if x.shape[0] != batch:
            x = x.repeat(-(-batch // x.shape[0]), 1, 1, 1)[:batch]
        return x

    def features(self, batch: int, height: int, width: int, progress: float, device, dtype) -> list | None:
        """Scaled features for a latent of ``height x width`` (or None outside start..end)."""
        if not self.start <= progress <= self.end or self.strength == 0.0:
            return None
        key = (batch, height, width, str(device), dtype)
        if key not in self._cache:
            with self.adapter.use(device, dtype) as a, torch.no_grad():
                x = self._input(batch, height * 8, width * 8, int(a.config.in_channels))
                feats = a(x.to(device, dtype))
            self._cache = {key: [f * self.strength for f in feats]}
        return [f.clone() for f in self._cache[key]]


def load_t2i_adapter(path: str | os.PathLike, manager=None, state_dict: dict | None = None) -> T2IAdapterModel:
    from nodegen.compat import torchvision as _tv

    _tv.apply()
    from diffusers import T2IAdapter

    p = Path(path)
    if p.is_dir():
        try:
            adapter = T2IAdapter.from_pretrained(str(p), local_files_only=True, torch_dtype=torch.float32)
        except Exception as e:  # noqa: BLE001 - name the folder
            raise AdapterError(f"{p}: cannot load the diffusers T2I-Adapter: {type(e).__name__}: {e}") from e
        return T2IAdapterModel(adapter, str(p), manager)
    sd = _to_diffusers(state_dict if state_dict is not None else _read(p))
    cfg = config_from_state(sd, str(p))
    with torch.device("meta"):
        adapter = T2IAdapter(**cfg)
    want = set(adapter.state_dict())
    if want != set(sd):
        raise AdapterError(f"{p}: the weights do not fit the T2I-Adapter derived from them "
                           f"(missing {sorted(want - set(sd))[:3]}, unexpected {sorted(set(sd) - want)[:3]})")
    adapter.load_state_dict({k: v.float() for k, v in sd.items()}, assign=True, strict=True)
    return T2IAdapterModel(adapter, str(p), manager)


def _read(path: Path) -> dict[str, torch.Tensor]:
    from nodegen.models.files import load_state_dict

    return load_state_dict(path)
