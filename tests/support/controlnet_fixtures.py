"""Small random-weight ControlNets for tests: built from a (small) UNet with diffusers'
``ControlNetModel.from_unet``, with the zero-initialised output layers randomised (a fresh
ControlNet changes nothing until they are), saved three ways:

* ``<stem>.safetensors``: original layout (``control_model.*``);
* ``<stem>-diffusers.safetensors``: a bare diffusers-layout file;
* ``<stem>-diffusers/``: a diffusers folder (``save_pretrained``).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

ZERO_LAYERS = ("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")


def randomize_zero_layers_(net: torch.nn.Module, seed: int, scale: float = 0.3) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.startswith(ZERO_LAYERS):
                fan_in = p[0].numel() if p.ndim > 1 else 1
                p.copy_(torch.randn(p.shape, generator=g) * scale / fan_in ** 0.5)


def build_controlnet(unet, seed: int = 0, scale: float = 0.3):
    from nodegen.compat import torchvision as torchvision_fix

    torchvision_fix.apply()
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 96, 256))
    randomize_zero_layers_(net, seed + 1, scale)
    return net.eval()


def save_controlnet(net, root: Path, stem: str) -> SimpleNamespace:
    from safetensors.torch import save_file

    from nodegen.models.controlnet_export import controlnet_to_ldm

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    ns = SimpleNamespace(net=net, single_file=root / f"{stem}.safetensors",
                         diffusers_file=root / f"{stem}-diffusers.safetensors",
                         diffusers_dir=root / f"{stem}-diffusers")
    save_file(controlnet_to_ldm(sd), str(ns.single_file))
    save_file(sd, str(ns.diffusers_file))
    net.save_pretrained(str(ns.diffusers_dir))
    return ns
