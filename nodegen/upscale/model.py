"""Super-resolution models (UPSCALE_MODEL): loading with spandrel, and upscaling IMAGE batches.

Loading is safe only: ``.safetensors`` through safetensors; ``.pth``/``.pt``/``.ckpt``/``.bin``
through ``torch.load(weights_only=True)`` (spandrel's own ``.pth`` path uses a restricted
unpickler and its ``.pt`` path tries TorchScript, so we read the state dict ourselves and hand it
to ``ModelLoader.load_from_state_dict``). The architecture is recognised by spandrel from the
tensors, never from the file name.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from nodegen.image.tiling import ProgressFn, check_tiling, count_tiles, run_tiled

PICKLE_EXTENSIONS = (".pth", ".pt", ".ckpt", ".bin")


def _spandrel():
    from nodegen.compat import torchvision as torchvision_fix

    torchvision_fix.apply()
    import spandrel

    return spandrel


def read_state_dict(path: str | os.PathLike) -> dict[str, Any]:
    """Read a weights file safely (safetensors, or pickles via ``weights_only=True``)."""
    p = Path(path)
    ext = p.suffix.lower()
    if not p.exists():
        raise FileNotFoundError(f"upscale model file not found: {p}")
    from nodegen.models.files import check_model_file

    check_model_file(p)  # a folder, device, FIFO or empty file is named as such
    if ext in (".safetensors", ".sft"):
        from safetensors.torch import load_file

        try:
            return load_file(str(p), device="cpu")
        except Exception as e:  # noqa: BLE001 - report which file is broken
            raise ValueError(f"cannot read safetensors file {p}: {e}") from e
    if ext in PICKLE_EXTENSIONS:
        try:
            sd = torch.load(str(p), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            raise ValueError(
                f"cannot load {p} safely (torch.load with weights_only=True refused it: "
                f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
                f"convert it to .safetensors") from e
        if not isinstance(sd, dict):
            raise ValueError(f"{p} holds a {type(sd).__name__}, not a state dict of tensors")
        return sd
    raise ValueError(f"unsupported upscale model file type {ext!r} for {p}; "
                     f"use .safetensors or .pth")


class UpscaleModel:
    """An UPSCALE_MODEL socket value: a spandrel image model descriptor plus where it came from."""

    def __init__(self, descriptor: Any, source: str = "") -> None:
        self.descriptor = descriptor
        self.source = source

    @property
    def scale(self) -> int:
        return int(self.descriptor.scale)

    @property
    def architecture(self) -> str:
        return str(self.descriptor.architecture.name)

    @property
    def input_channels(self) -> int:
        return int(self.descriptor.input_channels)

    @property
    def output_channels(self) -> int:
        return int(self.descriptor.output_channels)

    def __repr__(self) -> str:
        return (f"UpscaleModel({self.architecture}, x{self.scale}, "
                f"{os.path.basename(self.source) or 'in-memory'})")

    def to(self, device: torch.device | str, dtype: torch.dtype | None = None) -> UpscaleModel:
        device = torch.device(device)
        if dtype is None:
            dtype = torch.float32
            if device.type == "cuda" and self.descriptor.supports_half:
                dtype = torch.float16
        if self.descriptor.device != device or self.descriptor.dtype != dtype:
            self.descriptor.to(device=device, dtype=dtype)
        return self

    def __call__(self, bchw: torch.Tensor) -> torch.Tensor:
        """One tile/image [1,C,h,w] in [0,1] -> [1,C',h*s,w*s] in [0,1] (spandrel's call API)."""
        d = self.descriptor
        return d(bchw.to(device=d.device, dtype=d.dtype)).float()

    def effective_tile(self, tile_size: int) -> int:
        """The tile size actually used: 0 for models that tile internally (spandrel's
        ``ModelTiling.INTERNAL``); otherwise rounded up to the model's ``multiple_of`` and at
        least its minimum size, so tiles need no padding inside the model."""
        d = self.descriptor
        if tile_size <= 0 or getattr(getattr(d, "tiling", None), "name", "") == "INTERNAL":
            return 0
        req = d.size_requirements
        mult = max(1, int(req.multiple_of))
        return max(int(req.minimum), -(-tile_size // mult) * mult)

    def upscale(self, image: torch.Tensor, tile_size: int = 512, overlap: int = 32,
                progress: ProgressFn | None = None) -> torch.Tensor:
        """Upscale an IMAGE batch [B,H,W,C] in [0,1]; returns [B,H*s,W*s,C].

        RGB is run through the model; an alpha channel is resized bilinearly; a 1-channel
        model gets the luminance and its output is repeated to the image's channels.
        """
        check_tiling(tile_size, overlap)
        tile_size = self.effective_tile(tile_size)
        if image.dim() != 4 or image.shape[-1] not in (1, 3, 4):
            raise ValueError(f"expected an IMAGE [B,H,W,C] with 1, 3 or 4 channels, got "
                             f"{tuple(image.shape)}")
        B, H, W, C = image.shape
        s = self.scale
        per = count_tiles(H, W, tile_size, overlap)
        total = B * per
        outs = []
        for b in range(B):
            x = image[b:b + 1].permute(0, 3, 1, 2).float().contiguous()
            rgb, alpha = (x[:, :3].contiguous(), x[:, 3:]) if C == 4 else (x, None)
            rgb = _match_channels(rgb, self.input_channels)
            y = run_tiled(self, rgb, s, tile_size, overlap, progress=progress,
                          done=b * per, total=total).clamp(0.0, 1.0)
            y = _match_channels(y, 3 if C in (3, 4) else 1)
            if alpha is not None:
                a = torch.nn.functional.interpolate(alpha, scale_factor=s, mode="bilinear",
                                                    align_corners=False)
                y = torch.cat([y, a.to(y.device).clamp(0, 1)], dim=1)
            outs.append(y.permute(0, 2, 3, 1).to(image.device))
        return torch.cat(outs, dim=0)


def _match_channels(x: torch.Tensor, want: int) -> torch.Tensor:
    c = x.shape[1]
    if c == want:
        return x
    if want == 1:
        if c == 3:
            w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device)
            return (x * w[None, :, None, None]).sum(1, keepdim=True)
        return x[:, :1]
    if c == 1:
        return x.repeat(1, want, 1, 1)
    raise ValueError(f"cannot feed a {c}-channel image to a {want}-channel model")


def load_upscale_model(path: str | os.PathLike) -> UpscaleModel:
    """Load a super-resolution model file; clear errors for unknown or non-SR architectures."""
    spandrel = _spandrel()
    sd = read_state_dict(path)
    from spandrel.__helpers.canonicalize import canonicalize_state_dict

    sd = canonicalize_state_dict(sd)
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path}: entries that are not tensors: {bad[:5]}")
    try:
        desc = spandrel.ModelLoader().load_from_state_dict(sd)
    except spandrel.UnsupportedModelError as e:
        raise ValueError(f"{path} is not a super-resolution model architecture that nodegen "
                         f"recognises (spandrel found no match for its tensors)") from e
    except Exception as e:  # noqa: BLE001 - a mismatched file must name itself
        raise ValueError(f"{path}: cannot build the model from its tensors: "
                         f"{type(e).__name__}: {e}") from e
    if not isinstance(desc, spandrel.ImageModelDescriptor):
        raise ValueError(f"{path} is a {desc.architecture.name} model for "
                         f"{desc.purpose}, not an image upscaler")
    desc.eval()
    return UpscaleModel(desc, str(path))
