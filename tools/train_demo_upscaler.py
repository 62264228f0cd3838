"""Train the built-in demo upscaler ``nodegen-demo-esrgan-x4``: a Real-ESRGAN compact network
(``SRVGGNetCompact``, the architecture of realesr-general-x4v3, much narrower), 4x, from scratch
on generated pictures (tools/demo/sr_data.py: shapes, textures and edges, degraded by blur,
downscale, noise and JPEG). L1 loss, Adam with cosine decay, seeded.

    python tools/train_demo_upscaler.py            # trains, evaluates, exports
    python tools/train_demo_upscaler.py --eval     # evaluates the shipped file only

Writes ``nodegen/assets/models/upscale_models/nodegen-demo-esrgan-x4.safetensors`` (spandrel
loads it as any Real-ESRGAN compact file) and prints PSNR/SSIM against bicubic on 200 held-out
pictures (their own seed).
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

from tools.demo import sr_data, sr_metrics  # noqa: E402

DEST = ROOT / "nodegen" / "assets" / "models" / "upscale_models" / "nodegen-demo-esrgan-x4.safetensors"
EVAL_SEED = 20261201


def build(num_feat: int, num_conv: int) -> torch.nn.Module:
    from nodegen.compat import torchvision as torchvision_fix

    torchvision_fix.apply()
    from spandrel.architectures.Compact import Compact as SRVGGNetCompact

    return SRVGGNetCompact(num_in_ch=3, num_out_ch=3, num_feat=num_feat, num_conv=num_conv,
                           upscale=sr_data.SCALE, act_type="prelu")


def to_tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255.0


def augment(lr: torch.Tensor, hr: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    k = int(torch.randint(0, 4, (1,), generator=g))
    lr, hr = torch.rot90(lr, k, (2, 3)), torch.rot90(hr, k, (2, 3))
    if torch.rand(1, generator=g) < 0.5:
        lr, hr = lr.flip(3), hr.flip(3)
    return lr, hr


@torch.no_grad()
def evaluate(model: torch.nn.Module, n: int = 200) -> dict:
    lr, hr = (to_tensor(a) for a in sr_data.pairs(EVAL_SEED, n))
    model.eval()
    out = torch.cat([model(lr[i:i + 25]).clamp(0, 1) for i in range(0, n, 25)])
    bic = sr_metrics.bicubic(lr)
    res = {"psnr_model": sr_metrics.psnr(out, hr).mean().item(), "psnr_bicubic": sr_metrics.psnr(bic, hr).mean().item(),
           "ssim_model": sr_metrics.ssim(out, hr).mean().item(), "ssim_bicubic": sr_metrics.ssim(bic, hr).mean().item(),
           "better_than_bicubic": (sr_metrics.psnr(out, hr) > sr_metrics.psnr(bic, hr)).float().mean().item()}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--num-feat", type=int, default=32)
    ap.add_argument("--num-conv", type=int, default=8)
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--eval", action="store_true", help="evaluate the shipped file and exit")
    ap.add_argument("--out", default=str(DEST))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    t0 = time.time()
    if args.eval:
        from safetensors.torch import load_file

        sd = load_file(args.out)
        convs = [k for k, v in sd.items() if k.endswith("weight") and v.ndim == 4]
        model = build(sd["body.0.weight"].shape[0], len(convs) - 2)
        model.load_state_dict(sd)
        print(evaluate(model))
        return
    lr_all, hr_all = (to_tensor(a) for a in sr_data.pairs(args.seed, args.n_train))
    print(f"data: {len(lr_all)} pairs in {time.time() - t0:.1f}s", flush=True)
    model = build(args.num_feat, args.num_conv)
    with torch.no_grad():  # start as nearest-neighbour upscaling (the network adds a residual)
        model.body[-1].weight.mul_(0.1)
        model.body[-1].bias.zero_()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(args.seed)
    run = []
    for step in range(args.steps):
        lr_now = args.lr * min(1.0, (step + 1) / 200) * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        for grp in opt.param_groups:
            grp["lr"] = lr_now
        idx = torch.randint(0, len(lr_all), (args.batch,), generator=g)
        lr, hr = augment(lr_all[idx], hr_all[idx], g)
        model.train()
        loss = F.l1_loss(model(lr), hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run.append(loss.item())
        if (step + 1) % 250 == 0:
            print(f"[{time.time() - t0:7.1f}s] step {step + 1}/{args.steps} l1 {np.mean(run):.4f} lr {lr_now:.2e}", flush=True)
            run = []
        if (step + 1) % 2000 == 0 or step + 1 == args.steps:
            print(f"  eval {evaluate(model, 50)}", flush=True)
    from safetensors.torch import save_file

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.out,
              metadata={"name": "nodegen-demo-esrgan-x4", "architecture": "SRVGGNetCompact",
                        "trained_by": "tools/train_demo_upscaler.py", "seed": str(args.seed)})
    print(f"saved {args.out}; held-out (200): {evaluate(model)}; {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
