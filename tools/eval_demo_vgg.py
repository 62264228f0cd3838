"""Compare the built-in style feature network with a VGG-19 in Gatys style transfer.

Runs the style_transfer example's settings (graphs/style_transfer.json: content
graphs/images/shapes.png, style graphs/images/style_bands.png, Adam lr 0.02, 60 iterations,
content relu4_2 x1, style relu1_1..relu5_1 x1e4) with each network, and reports for each:
the content and style losses at the start (the content picture) and at the end, in its own
features, and the style and content losses of both results measured by the other network.
Writes a picture: content | style | nodegen-demo-vgg result | VGG-19 result.

    python tools/eval_demo_vgg.py                         # VGG-19 with random weights (seed 0)
    python tools/eval_demo_vgg.py --vgg19 vgg19-dcbb9e9d.pth  # torchvision's trained VGG-19
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nodegen.style.gatys import StyleSettings, gram, parse_layers, style_transfer  # noqa: E402
from nodegen.style.vgg import VGGFeatures, load_vgg19, random_vgg19_state_dict  # noqa: E402

DEMO = ROOT / "nodegen" / "assets" / "models" / "style_models" / "nodegen-demo-vgg.safetensors"


def image(path: Path) -> torch.Tensor:
    """IMAGE layout [1,H,W,3]."""
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), np.float32) / 255)[None]


def losses(net, x: torch.Tensor, content: torch.Tensor, style: torch.Tensor, s: StyleSettings) -> dict:
    """Weighted content and style losses of IMAGE ``x`` (as the Gatys node computes them)."""
    def nchw(t):
        return t.permute(0, 3, 1, 2).contiguous()

    c_l, s_l = parse_layers(s.content_layers, "c"), parse_layers(s.style_layers, "s")
    st = F.interpolate(nchw(style), size=content.shape[1:3], mode="bilinear", align_corners=False, antialias=True)
    with torch.no_grad():
        fx, fc, fs = net(nchw(x), set(c_l) | set(s_l)), net(nchw(content), set(c_l)), net(st, set(s_l))
        cl = sum(s.content_weight * F.mse_loss(fx[k], fc[k]).item() for k in c_l)
        sl = sum(s.style_weight * F.mse_loss(gram(fx[k]), gram(fs[k])).item() for k in s_l)
    return {"content": cl, "style": sl}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vgg19", default=None, help="a VGG-19 file (default: random weights, seed 0)")
    ap.add_argument("--picture", type=Path, default=DEMO.with_suffix(".jpg"))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    wf = json.loads((ROOT / "graphs" / "style_transfer.json").read_text())
    ins = wf["nodes"]["4"]["inputs"]
    s = StyleSettings(**{k: ins[k] for k in ("content_weight", "style_weight", "iterations", "optimizer",
                                             "learning_rate", "init", "seed", "content_layers", "style_layers")})
    content, style = image(ROOT / "graphs" / "images" / "shapes.png"), image(ROOT / "graphs" / "images" / "style_bands.png")
    nets = {"nodegen-demo-vgg": load_vgg19(DEMO),
            "VGG-19": load_vgg19(args.vgg19) if args.vgg19 else VGGFeatures(random_vgg19_state_dict(seed=0), "random VGG-19")}
    outs, report = {}, {}
    for name, net in nets.items():
        outs[name] = style_transfer(net, content, style, s)
    for name, net in nets.items():
        report[name] = {"start": losses(net, content, content, style, s)}
        for src, out in outs.items():
            report[name][f"result of {src}"] = losses(net, out, content, style, s)
    for name, r in report.items():
        print(f"measured by {name}:")
        for k, v in r.items():
            print(f"  {k:32s} content {v['content']:10.4g}  style {v['style']:10.4g}")
    pics = [content, style.permute(0, 3, 1, 2), *outs.values()]
    pics[1] = F.interpolate(pics[1], size=content.shape[1:3], mode="nearest").permute(0, 2, 3, 1)
    strip = torch.cat([p[0] for p in pics], 1).clamp(0, 1).numpy()
    Image.fromarray((strip * 255).round().astype(np.uint8)).save(args.picture)
    print(f"picture: {args.picture}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
