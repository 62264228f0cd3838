"""Neural style transfer by optimisation (Gatys, Ecker & Bethge 2016).

The picture ``x`` (pixels in [0,1]) minimises

    content_weight * sum_l mean((F_l(x) - F_l(content))^2)
  + style_weight   * sum_l mean((G_l(x) - G_l(style))^2),   G = F F^T / (C H W)

over VGG-19 activations ``F_l``, with Adam or L-BFGS, clamping to [0,1] after every step. The
style image is resized to the content's size first (Gram matrices are size-normalised, but the
scale of the strokes follows the pixel size).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from nodegen.style.vgg import VGGFeatures

#: ``progress(step, total, loss, preview_image_or_None)``; may raise to cancel.
Progress = Callable[[int, int, float, "torch.Tensor | None"], None]


@dataclass
class StyleSettings:
    content_weight: float = 1.0
    style_weight: float = 1e4
    iterations: int = 100
    optimizer: str = "adam"
    learning_rate: float = 0.02
    init: str = "content"
    seed: int = 0
    content_layers: str = "relu4_2"
    style_layers: str = "relu1_1,relu2_1,relu3_1,relu4_1,relu5_1"
    #: previews are sent about this many times per run
    previews: int = 10


def parse_layers(text: str, what: str) -> list[str]:
    names = [t.strip() for t in str(text).replace(";", ",").split(",") if t.strip()]
    if len(set(names)) != len(names):
        raise ValueError(f"NeuralStyleTransfer: {what} lists a layer twice: {text!r}")
    return names


def gram(f: torch.Tensor) -> torch.Tensor:
    b, c, h, w = f.shape
    m = f.reshape(b, c, h * w)
    return m @ m.transpose(1, 2) / (c * h * w)


def style_transfer(model: VGGFeatures, content: torch.Tensor, style: torch.Tensor,
                   s: StyleSettings, progress: Progress | None = None,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """IMAGE ``content`` [B,H,W,C], ``style`` [1 or B,H',W',C] -> IMAGE [B,H,W,3]."""
    if s.optimizer not in ("adam", "lbfgs"):
        raise ValueError(f"NeuralStyleTransfer: optimizer must be 'adam' or 'lbfgs', got {s.optimizer!r}")
    if s.init not in ("content", "style", "noise"):
        raise ValueError(f"NeuralStyleTransfer: init must be content, style or noise, got {s.init!r}")
    if style.shape[0] not in (1, content.shape[0]):
        raise ValueError(f"NeuralStyleTransfer: style batch ({style.shape[0]}) must be 1 or match "
                         f"the content batch ({content.shape[0]})")
    c_layers = parse_layers(s.content_layers, "content_layers")
    s_layers = parse_layers(s.style_layers, "style_layers")
    if not c_layers and not s_layers:
        raise ValueError("NeuralStyleTransfer: give at least one content or style layer")
    model.check_layers(c_layers, "content layer")
    model.check_layers(s_layers, "style layer")
    device = torch.device(device)
    model = model.to(device)
    B = content.shape[0]
    total = s.iterations * B
    outs = []
    for b in range(B):
        sty = style[b if style.shape[0] > 1 else 0]
        outs.append(_one(model, content[b:b + 1], sty[None], s, c_layers, s_layers, device,
                         progress, b * s.iterations, total))
    return torch.cat(outs).to(content.device)


def _one(model, content, style, s, c_layers, s_layers, device, progress, done, total):
    H, W = content.shape[1:3]
    # contiguous: the same pixels must give bit-identical features (Adam amplifies tiny gradients)
    c = content[..., :3].permute(0, 3, 1, 2).float().to(device).contiguous()
    st = style[..., :3].permute(0, 3, 1, 2).float().to(device).contiguous()
    if st.shape[-2:] != (H, W):
        st = F.interpolate(st, size=(H, W), mode="bilinear", align_corners=False, antialias=True)
    wanted = set(c_layers) | set(s_layers)
    with torch.no_grad():
        c_feats = model(c, set(c_layers))
        s_grams = {k: gram(v) for k, v in model(st, set(s_layers)).items()}
    if s.init == "content":
        x0 = c.clone()
    elif s.init == "style":
        x0 = st.clone()
    else:
        g = torch.Generator().manual_seed(int(s.seed) % (2**63))
        x0 = torch.rand(c.shape, generator=g).to(device)
    x = x0.contiguous().requires_grad_(True)

    def loss_fn() -> torch.Tensor:
        feats = model(x, wanted)
        loss = x.new_zeros(())
        for k in c_layers:
            loss = loss + s.content_weight * F.mse_loss(feats[k], c_feats[k])
        for k in s_layers:
            loss = loss + s.style_weight * F.mse_loss(gram(feats[k]), s_grams[k])
        return loss

    if s.optimizer == "adam":
        opt = torch.optim.Adam([x], lr=s.learning_rate)
    else:
        opt = torch.optim.LBFGS([x], lr=s.learning_rate, max_iter=1, history_size=20)
    every = max(1, s.iterations // max(1, s.previews))
    last: dict[str, float] = {}

    def closure():
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        last["loss"] = float(loss.detach())
        return loss

    for i in range(1, s.iterations + 1):
        opt.step(closure)
        with torch.no_grad():
            x.clamp_(0.0, 1.0)
        if progress is not None:
            preview = None
            if i % every == 0 or i == s.iterations:
                preview = x.detach().permute(0, 2, 3, 1).cpu().clone()
            progress(done + i, total, last["loss"], preview)
    return x.detach().permute(0, 2, 3, 1)
