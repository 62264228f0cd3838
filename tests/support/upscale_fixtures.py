"""Tiny random-weight super-resolution models in their real key layouts (tests and demos).

* ESRGAN, old layout (``model.0.weight``, ``model.1.sub.N.RDBk.convj.0.weight`` ...), as the
  original ESRGAN / community models ship it;
* ESRGAN, new BasicSR / Real-ESRGAN layout (``conv_first``, ``body.N.rdbk.convj``,
  ``conv_body``, ``conv_up1`` ...) wrapped in ``{"params_ema": ...}`` like RealESRGAN_x4plus.pth,
  and the x2plus variant (pixel-unshuffle in front: 12 input channels, scale 2);
* Real-ESRGAN compact (SRVGGNetCompact: ``body.N``) wrapped in ``{"params": ...}``;
* SwinIR (small: one layer, one block, window 4, pixelshuffle upsampler).

The last convolution gets small weights and a 0.5 bias so outputs stay inside (0, 1) and
spandrel's clamp does not hide differences.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch


def _arch(name: str):
    from nodegen.compat import torchvision as torchvision_fix

    torchvision_fix.apply()
    if name == "esrgan":
        from spandrel.architectures.ESRGAN import ESRGAN

        return ESRGAN
    if name == "compact":
        from spandrel.architectures.Compact import Compact

        return Compact
    from spandrel.architectures.SwinIR import SwinIR

    return SwinIR


def _calm_last(sd: dict, key_w: str, key_b: str, gain: float = 0.05) -> None:
    g = torch.Generator().manual_seed(7)
    sd[key_w] = torch.randn(sd[key_w].shape, generator=g) * gain
    sd[key_b] = torch.full_like(sd[key_b], 0.5)


def esrgan_state_dict(seed: int = 0, nf: int = 8, nb: int = 1, scale: int = 4) -> dict:
    """Old-layout ESRGAN (growth channels 32, as spandrel requires)."""
    torch.manual_seed(seed)
    net = _arch("esrgan")(in_nc=3, out_nc=3, num_filters=nf, num_blocks=nb, scale=scale)
    sd = {k: v.detach().clone() for k, v in net.state_dict().items()}
    last = max(int(k.split(".")[1]) for k in sd if k.startswith("model."))
    _calm_last(sd, f"model.{last}.weight", f"model.{last}.bias")
    return sd


def esrgan_x2plus_state_dict(seed: int = 0, nf: int = 8, nb: int = 1) -> dict:
    """Like RealESRGAN_x2plus: pixel-unshuffle by 2 in front (12 input channels), 4x inside."""
    torch.manual_seed(seed)
    net = _arch("esrgan")(in_nc=12, out_nc=3, num_filters=nf, num_blocks=nb, scale=4, shuffle_factor=2)
    sd = {k: v.detach().clone() for k, v in net.state_dict().items()}
    last = max(int(k.split(".")[1]) for k in sd if k.startswith("model."))
    _calm_last(sd, f"model.{last}.weight", f"model.{last}.bias")
    return sd


def esrgan_to_new_layout(old: dict) -> dict:
    """Rename an old-layout ESRGAN state dict to BasicSR's RRDBNet names (Real-ESRGAN files)."""
    seq = sorted({int(k.split(".")[1]) for k in old if re.match(r"model\.\d+\.", k)})
    nb = max(int(m.group(1)) for k in old if (m := re.match(r"model\.1\.sub\.(\d+)\.", k)))
    convs = [i for i in seq if i >= 2]  # upconvs, HR conv, last conv (activations have no keys)
    ups, hr, last = convs[:-2], convs[-2], convs[-1]
    names = {0: "conv_first", hr: "conv_hr", last: "conv_last"}
    for n, i in enumerate(ups, start=1):
        names[i] = f"conv_up{n}"
    new = {}
    for k, v in old.items():
        m = re.match(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)", k)
        if m:
            b, r, c, kind = m.groups()
            new[f"body.{b}.rdb{r}.conv{c}.{kind}"] = v
            continue
        m = re.match(r"model\.1\.sub\.(\d+)\.(weight|bias)", k)
        if m and int(m.group(1)) == nb:
            new[f"conv_body.{m.group(2)}"] = v
            continue
        m = re.match(r"model\.(\d+)\.(weight|bias)", k)
        if m and int(m.group(1)) in names:
            new[f"{names[int(m.group(1))]}.{m.group(2)}"] = v
            continue
        raise KeyError(f"unexpected ESRGAN key {k}")
    return new


def compact_state_dict(seed: int = 0, nf: int = 16, nc: int = 2, scale: int = 4) -> dict:
    torch.manual_seed(seed)
    net = _arch("compact")(num_in_ch=3, num_out_ch=3, num_feat=nf, num_conv=nc, upscale=scale)
    sd = {k: v.detach().clone() for k, v in net.state_dict().items()}
    last = max(int(k.split(".")[1]) for k in sd if k.startswith("body.") and k.endswith(".weight")
               and sd[k].dim() == 4)
    _calm_last(sd, f"body.{last}.weight", f"body.{last}.bias", gain=0.02)
    # The compact net adds the nearest-upsampled input: keep the learned residual small.
    sd[f"body.{last}.bias"] = torch.zeros_like(sd[f"body.{last}.bias"])
    return sd


def swinir_state_dict(seed: int = 0, scale: int = 2) -> dict:
    torch.manual_seed(seed)
    net = _arch("swinir")(img_size=16, embed_dim=12, depths=[1], num_heads=[2], window_size=4,
                          mlp_ratio=2.0, upscale=scale, upsampler="pixelshuffle",
                          resi_connection="1conv")
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def save(sd: dict, path: str | Path, wrap: str | None = None) -> Path:
    """Save as ``.safetensors`` or ``.pth`` (optionally wrapped: ``{"params_ema": sd}``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save({wrap: sd} if wrap else sd, str(path))
    return path


def write_all(folder: str | Path) -> dict[str, Path]:
    """Write every fixture into ``folder``; returns {name: path}."""
    folder = Path(folder)
    old = esrgan_state_dict()
    comp = compact_state_dict()
    return {
        "esrgan_old.pth": save(old, folder / "esrgan_old.pth"),
        "esrgan_old.safetensors": save(old, folder / "esrgan_old.safetensors"),
        "esrgan_new.pth": save(esrgan_to_new_layout(old), folder / "esrgan_new.pth", "params_ema"),
        "esrgan_x2plus.pth": save(esrgan_to_new_layout(esrgan_x2plus_state_dict()),
                                  folder / "esrgan_x2plus.pth", "params_ema"),
        "compact.pth": save(comp, folder / "compact.pth", "params"),
        "compact.safetensors": save(comp, folder / "compact.safetensors"),
        "swinir.safetensors": save(swinir_state_dict(), folder / "swinir.safetensors"),
    }
