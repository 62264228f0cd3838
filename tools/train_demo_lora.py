"""Train the demo LoRA ``nodegen-demo-outlines`` for the built-in demo model: the same shapes and
captions, drawn as outlines (tools/demo/outlines.py). The LoRA learns a style, not new words, so
its strength alone decides how hollow the shapes come out.

LoRA layers (rank 8, alpha 4) on the UNet's attention projections, transformer feed-forwards and
ResNet convolutions, and on the text encoder's attention and MLP; the demo model stays frozen.
Same objective as the base model (tools/train_demo.py: SD1 DDPM schedule, epsilon, min-SNR-5,
10% empty captions). Saved in the kohya format people publish (``lora_unet_...`` /
``lora_te_...`` with ``.lora_down.weight``, ``.lora_up.weight``, ``.alpha``, fp16).

    python tools/train_demo_lora.py                    # latents, training, export, evaluation
    python tools/train_demo_lora.py --eval --n 200     # evaluate the shipped file only

The evaluation loads the saved file through nodegen's own LoRA reader, merges it at strengths
0, 0.5 and 1 and samples the held-out prompts with diffusers' StableDiffusionPipeline
(DPM-Solver++ 20 steps, cfg 5, seeds 0..n-1); the scorer says which shapes came out hollow.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))

from tools.demo import configs, shapes  # noqa: E402
from tools.demo.outlines import render_outline_array  # noqa: E402

DEMO = ROOT / "nodegen" / "assets" / "models" / "nodegen-demo-shapes.safetensors"
DEST = ROOT / "nodegen" / "assets" / "models" / "lora" / "nodegen-demo-outlines.safetensors"
OUT = Path(os.environ.get("DEMO_OUT", ROOT / "tools" / "out"))
UNET_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                "conv1", "conv2")
TE_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


class LoraModule(torch.nn.Module):
    """``base(x) + up(down(x)) * alpha / rank``; ``up`` starts at zero."""

    def __init__(self, base: torch.nn.Module, rank: int, alpha: float) -> None:
        super().__init__()
        self.base, self.scale = base, alpha / rank
        if isinstance(base, torch.nn.Conv2d):
            self.down = torch.nn.Conv2d(base.in_channels, rank, base.kernel_size, base.stride, base.padding, bias=False)
            self.up = torch.nn.Conv2d(rank, base.out_channels, 1, bias=False)
        else:
            self.down = torch.nn.Linear(base.in_features, rank, bias=False)
            self.up = torch.nn.Linear(rank, base.out_features, bias=False)
        torch.nn.init.kaiming_uniform_(self.down.weight, a=5**0.5)
        torch.nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.up(self.down(x)) * self.scale


def inject(model: torch.nn.Module, targets: tuple[str, ...], rank: int, alpha: float) -> dict[str, LoraModule]:
    """Wrap every Linear/Conv2d whose name ends with a target; returns {module name: wrapper}."""
    found = {}
    for name, mod in list(model.named_modules()):
        if isinstance(mod, (torch.nn.Linear, torch.nn.Conv2d)) and name.endswith(targets):
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            wrap = LoraModule(mod, rank, alpha)
            setattr(parent, child, wrap) if not child.isdigit() else parent.__setitem__(int(child), wrap)
            found[name] = wrap
    return found


def kohya_state_dict(unet_loras: dict, te_loras: dict, alpha: float) -> dict[str, torch.Tensor]:
    sd = {}
    for prefix, loras, extra in (("lora_unet_", unet_loras, ""), ("lora_te_", te_loras, "text_model_")):
        for name, m in loras.items():
            short = name.removeprefix("text_model.")
            key = prefix + extra + short.replace(".", "_")
            sd[key + ".lora_down.weight"] = m.down.weight.detach().half().contiguous()
            sd[key + ".lora_up.weight"] = m.up.weight.detach().half().contiguous()
            sd[key + ".alpha"] = torch.tensor(alpha, dtype=torch.float16)
    return sd


def load_demo():
    from nodegen.models.loader import load_checkpoint

    model, text, vae = load_checkpoint(DEMO)
    return model.unet, text.encoders[0], vae.vae, text.tokenizers[0]


@torch.no_grad()
def build_latents(vae, tok, seed: int, n: int) -> dict:
    path = OUT / f"lora_latents_{seed}_{n}.pt"
    if path.exists():
        return torch.load(path)
    rng = np.random.default_rng([seed, 7])
    means, stds, ids = [], [], []
    for b in range(0, n, 250):
        attrs = [shapes.sample_attributes(rng) for _ in range(min(250, n - b))]
        x = torch.from_numpy(np.stack([render_outline_array(a) for a in attrs])).permute(0, 3, 1, 2).float() / 127.5 - 1
        post = vae.encode(x).latent_dist
        means.append(post.mean)
        stds.append(post.std)
        ids.append(tok([shapes.caption(a) for a in attrs], padding="max_length", max_length=77,
                       truncation=True, return_tensors="pt").input_ids)
    data = {"mean": torch.cat(means), "std": torch.cat(stds), "ids": torch.cat(ids),
            "empty": tok([""], padding="max_length", max_length=77, return_tensors="pt").input_ids[0]}
    OUT.mkdir(parents=True, exist_ok=True)
    torch.save(data, path)
    return data


def train(args) -> Path:
    from diffusers import DDPMScheduler
    from train_demo import min_snr_loss, noisy_batch

    t0 = time.time()
    unet, text, vae, tok = load_demo()
    data = build_latents(vae, tok, args.seed, args.n_latents)
    print(f"[{time.time() - t0:6.0f}s] {len(data['mean'])} outline latents", flush=True)
    unet.requires_grad_(False)
    text.requires_grad_(False)
    torch.manual_seed(args.seed)
    u_l = inject(unet, UNET_TARGETS, args.rank, args.alpha)
    t_l = inject(text, TE_TARGETS, args.rank, args.alpha)
    params = [p for m in (*u_l.values(), *t_l.values()) for p in (m.down.weight, m.up.weight)]
    print(f"LoRA layers: unet {len(u_l)}, text encoder {len(t_l)}; {sum(p.numel() for p in params):,} parameters",
          flush=True)
    keep = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type")
    sched = DDPMScheduler(**{k: configs.SCHEDULER_CONFIG[k] for k in keep})
    snr = sched.alphas_cumprod / (1 - sched.alphas_cumprod)
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    run = []
    unet.train()
    text.train()
    for step in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / 50)
        gen = torch.Generator().manual_seed(args.seed * 1000003 + step)
        zt, noise, t, ids, _ = noisy_batch(data, sched, gen, args.batch, 0.1)
        loss = min_snr_loss(unet(zt, t, text(ids).last_hidden_state).sample, noise, snr, t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        run.append(loss.item())
        if (step + 1) % 50 == 0:
            print(f"[{time.time() - t0:6.0f}s] step {step + 1}/{args.steps} loss {np.mean(run):.4f}", flush=True)
            run = []
    from safetensors.torch import save_file

    dest = Path(args.out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file(kohya_state_dict(u_l, t_l, args.alpha), str(dest),
              metadata={"ss_network_module": "networks.lora", "ss_network_dim": str(args.rank),
                        "ss_network_alpha": str(args.alpha), "ss_base_model_version": "sd_v1",
                        "nodegen_name": "nodegen-demo-outlines", "nodegen_trained_by": "tools/train_demo_lora.py",
                        "nodegen_seed": str(args.seed), "nodegen_steps": str(args.steps)})
    print(f"[{time.time() - t0:6.0f}s] saved {dest} ({dest.stat().st_size:,} bytes)", flush=True)
    return dest


def merged(unet, text, lora_path: Path, strength: float):
    """Copies of ``unet`` and ``text`` with the LoRA file (read by nodegen's reader) merged in."""
    from nodegen.models.lora import lora_patch_dicts, read_lora

    lora = read_lora(lora_path)
    u, t = copy.deepcopy(unet), copy.deepcopy(text)
    up, cp, unmatched = lora_patch_dicts(lora, u, {"text_encoder": t})
    if unmatched:
        raise SystemExit(f"{len(unmatched)} LoRA layers did not fit: {unmatched[:3]}")
    with torch.no_grad():
        params = dict(u.named_parameters())
        for name, delta in up.items():
            params[name] += strength * delta(params[name])
        tparams = dict(t.named_parameters())
        for name, delta in cp.items():
            p = tparams[name.removeprefix("text_encoder.")]
            p += strength * delta(p)
    return u, t


def evaluate(lora_path: Path, n: int, strengths=(0.0, 0.5, 1.0), grid: Path | None = None) -> dict:
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
    from eval_demo import generate, save_grid

    from tools.demo.export import scheduler_config
    from tools.demo.scorer import score

    unet, text, vae, tok = load_demo()
    items = shapes.eval_prompts()[:n]
    res = {}
    for s in strengths:
        u, t = merged(unet, text, lora_path, s)
        pipe = StableDiffusionPipeline(vae=vae, text_encoder=t, tokenizer=tok, unet=u,
                                       scheduler=DPMSolverMultistepScheduler.from_config(scheduler_config()),
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        imgs = generate(pipe, [p for p, _ in items], list(range(n)), 5.0, 20, 50)
        sc = [score(im, a) for im, (_, a) in zip(imgs, items, strict=True)]
        res[s] = {"hollow": float(np.mean([x["hollow"] for x in sc])),
                  "color": float(np.mean([x["color_ok"] for x in sc])),
                  "shape": float(np.mean([x["shape_ok"] for x in sc]))}
        print(f"strength {s:.1f}: hollow {res[s]['hollow']:.1%} colour {res[s]['color']:.1%} "
              f"shape {res[s]['shape']:.1%} (n={n})", flush=True)
        if grid is not None:
            grid.parent.mkdir(parents=True, exist_ok=True)
            save_grid(imgs[:20], Path(f"{grid}_s{s:g}.png"), cols=20)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n-latents", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--alpha", type=float, default=4.0)
    ap.add_argument("--out", default=str(DEST))
    ap.add_argument("--eval", action="store_true", help="only evaluate --out")
    ap.add_argument("--n", type=int, default=200, help="held-out prompts for the evaluation")
    ap.add_argument("--grid", type=Path, default=None, help="save the first 20 images per strength")
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    from nodegen.compat import torchvision as torchvision_fix

    torchvision_fix.apply()
    path = Path(args.out) if args.eval else train(args)
    evaluate(path, args.n, grid=args.grid)


if __name__ == "__main__":
    main()
