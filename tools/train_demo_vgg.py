"""Train the built-in style feature network ``nodegen-demo-vgg``: VGG-19's layer structure
(16 3x3 convolutions in blocks of 2, 2, 4, 4, 4 with max pooling), much narrower, trained from
scratch as a classifier of the project's own generated pictures (tools/demo/vgg_data.py: background
kind, shape, colour, outlined). Batch normalisation during training is folded into the
convolutions at export, so the file holds plain ``features.N.weight`` / ``features.N.bias`` in
torchvision's VGG-19 numbering and the Gatys node loads it exactly as a VGG-19 file. Inputs are
normalised with the ImageNet mean and std, as for VGG-19.

    python tools/train_demo_vgg.py          # trains, reports held-out accuracy, exports
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nodegen.style.vgg import BLOCKS, IMAGENET_MEAN, IMAGENET_STD, layer_table  # noqa: E402
from tools.demo import vgg_data  # noqa: E402

DEST = ROOT / "nodegen" / "assets" / "models" / "style_models" / "nodegen-demo-vgg.safetensors"
WIDTHS = (16, 32, 48, 64, 64)


class Net(torch.nn.Module):
    def __init__(self, widths=WIDTHS) -> None:
        super().__init__()
        self.convs, self.norms = torch.nn.ModuleList(), torch.nn.ModuleList()
        self.index: list[int] = []  # torchvision index of each conv
        prev = 3
        convs = [i for i, kind, _n in layer_table() if kind == "conv"]
        k = 0
        for b, n in enumerate(BLOCKS):
            for _ in range(n):
                self.convs.append(torch.nn.Conv2d(prev, widths[b], 3, padding=1))
                self.norms.append(torch.nn.BatchNorm2d(widths[b]))
                self.index.append(convs[k])
                prev, k = widths[b], k + 1
        self.head = torch.nn.Linear(prev, sum(c for _n, c in vgg_data.HEADS))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = (x - self.mean) / self.std
        k = 0
        for n in BLOCKS:
            for _ in range(n):
                h = F.relu(self.norms[k](self.convs[k](h)))
                k += 1
            h = F.max_pool2d(h, 2)
        return self.head(h.mean((2, 3)))

    def features_state_dict(self) -> dict[str, torch.Tensor]:
        """The convolutions with their batch norms folded in, in torchvision's VGG-19 names."""
        sd = {}
        for conv, bn, idx in zip(self.convs, self.norms, self.index, strict=True):
            g = bn.weight / torch.sqrt(bn.running_var + bn.eps)
            sd[f"features.{idx}.weight"] = (conv.weight * g.view(-1, 1, 1, 1)).detach().contiguous()
            sd[f"features.{idx}.bias"] = ((conv.bias - bn.running_mean) * g + bn.bias).detach().contiguous()
        return sd


def loss_and_accuracy(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, list[float]]:
    loss, acc, i = logits.new_zeros(()), [], 0
    for col, (_name, c) in enumerate(vgg_data.HEADS):
        part = logits[:, i:i + c]
        loss = loss + F.cross_entropy(part, y[:, col])
        acc.append((part.argmax(1) == y[:, col]).float().mean().item())
        i += c
    return loss, acc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-train", type=int, default=12000)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--out", default=str(DEST))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()
    x_np, y_np = vgg_data.labelled(args.seed, args.n_train)
    xs, ys = torch.from_numpy(x_np).permute(0, 3, 1, 2), torch.from_numpy(y_np)
    xv_np, yv_np = vgg_data.labelled(args.seed + 1, 1000)
    xv, yv = torch.from_numpy(xv_np).permute(0, 3, 1, 2).float() / 255, torch.from_numpy(yv_np)
    print(f"data in {time.time() - t0:.0f}s", flush=True)
    net = Net()
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=1e-4)
    g = torch.Generator().manual_seed(args.seed)
    run, accs = [], []
    for step in range(args.steps):
        lr = args.lr * min(1.0, (step + 1) / 100) * 0.5 * (1 + math.cos(math.pi * step / args.steps))
        for grp in opt.param_groups:
            grp["lr"] = lr
        idx = torch.randint(0, len(xs), (args.batch,), generator=g)
        x = xs[idx].float() / 255
        if torch.rand(1, generator=g) < 0.5:
            x = x.flip(3)
        net.train()
        loss, acc = loss_and_accuracy(net(x), ys[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run.append(loss.item())
        accs.append(acc)
        if (step + 1) % 100 == 0:
            print(f"[{time.time() - t0:6.0f}s] step {step + 1}/{args.steps} loss {np.mean(run):.3f} "
                  f"acc {np.round(np.mean(accs, 0), 3).tolist()}", flush=True)
            run, accs = [], []
    net.eval()
    with torch.no_grad():
        _, acc = loss_and_accuracy(torch.cat([net(xv[i:i + 100]) for i in range(0, 1000, 100)]), yv)
    heads = {name: round(a, 3) for (name, _c), a in zip(vgg_data.HEADS, acc, strict=True)}
    from safetensors.torch import save_file

    sd = {k: v.half() for k, v in net.features_state_dict().items()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, args.out, metadata={"name": "nodegen-demo-vgg", "layout": "torchvision vgg19 features",
                                      "widths": ",".join(map(str, WIDTHS)), "seed": str(args.seed),
                                      "trained_by": "tools/train_demo_vgg.py",
                                      "held_out_accuracy": str(heads)})
    print(f"saved {args.out}; held-out accuracy (1000 pictures): {heads}; {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
