"""Train ``nodegen-demo-canny``: a Canny-edge ControlNet for the shipped demo model.

The base model is the shipped single file (``nodegen-demo-shapes.safetensors``, loaded by the
project's own loader, frozen). The ControlNet is diffusers' ``ControlNetModel.from_unet`` of it
(encoder copy + zero convolutions + a hint encoder), trained on the demo data set with the hint
being the Canny edges of the picture exactly as the ``CannyEdges`` node computes them
(``nodegen.preprocess.edges.canny``, thresholds 0.1 / 0.2, sigma 1). Latents and captions come
from the ``latents`` phase of ``tools/train_demo.py`` (``tools/out/latents.pt``; its images are
re-rendered here to take their edges). Captions are dropped 30% of the time, so the ControlNet
must read the layout from the edges.

    python tools/train_demo_controlnet.py --threads 2 --until 14:40
    python tools/train_demo_controlnet.py --export    # nodegen/assets/models/controlnet/...
    python tools/train_demo_controlnet.py --eval      # shape-mask IoU with / without the ControlNet
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.demo import configs, shapes  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(os.environ.get("DEMO_OUT", ROOT / "tools" / "out"))
DEMO = ROOT / "nodegen" / "assets" / "models" / "nodegen-demo-shapes.safetensors"
DEST = ROOT / "nodegen" / "assets" / "models" / "controlnet" / "nodegen-demo-canny.safetensors"
CANNY = dict(low=0.1, high=0.2, sigma=1.0)  # graphs/controlnet.json's CannyEdges settings
HINT_CHANNELS = (16, 32, 96, 256)


def log(msg: str, t0: float) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.time() - t0:7.1f}s] {msg}", flush=True)


def edges_of(arr: np.ndarray) -> torch.Tensor:
    """Canny hints [B,3,H,W] in {0,1} of uint8 images [B,H,W,3], as the CannyEdges node makes them."""
    from nodegen.preprocess.edges import canny

    img = torch.from_numpy(arr).float() / 255.0
    return canny(img, CANNY["low"], CANNY["high"], CANNY["sigma"]).permute(0, 3, 1, 2).contiguous()


def base_model():
    from nodegen.models.loader import load_checkpoint

    model, text, _ = load_checkpoint(DEMO)
    unet, enc = model.unet.float().eval(), text.encoders[0].float().eval()
    for p in list(unet.parameters()) + list(enc.parameters()):
        p.requires_grad_(False)
    return unet, enc, text.tokenizers[0]


def build_controlnet(unet):
    from diffusers import ControlNetModel

    torch.manual_seed(0)
    return ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=HINT_CHANNELS)


@torch.no_grad()
def hints_for(n: int, seed: int) -> torch.Tensor:
    """Edges of the same renders tools/train_demo.py encoded for latents.pt (phase 2 batches of 250)."""
    from train_demo import image_batch

    out = []
    for b in range(n // 250):
        x, _ = image_batch(seed, 2, b, 250)
        arr = ((x + 1) * 127.5).round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        out.append(edges_of(arr)[:, :1].bool())
    return torch.cat(out)


def train(args, t0: float) -> None:
    from diffusers import DDPMScheduler
    from train_demo import decay_factor, ema_update, min_snr_loss, noisy_batch, optimizer_step, save

    data = torch.load(OUT / "latents.pt")
    n = len(data["mean"])
    hints = hints_for(n, args.seed)
    log(f"{n} latents, edges ready (mean edge density {hints.float().mean():.3f})", t0)
    unet, enc, _ = base_model()
    net = build_controlnet(unet).train()
    ema = copy.deepcopy(net).eval()
    keep = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type")
    sched = DDPMScheduler(**{k: configs.SCHEDULER_CONFIG[k] for k in keep})
    snr = sched.alphas_cumprod / (1 - sched.alphas_cumprod)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=0.0)
    ckpt, step = OUT / "ckpt_controlnet.pt", 0
    t_start = time.time()
    if ckpt.exists():
        st = torch.load(ckpt, weights_only=False)
        net.load_state_dict(st["net"])
        ema.load_state_dict(st["ema"])
        opt.load_state_dict(st["opt"])
        step, t_start = st["step"], st["t_start"]
        log(f"resumed at step {step}", t0)
    last_save, run = time.time(), []
    while step < args.steps:
        if args.until and time.strftime("%H:%M", time.gmtime()) >= args.until:
            log(f"reached --until {args.until} UTC at step {step}; stopping", t0)
            break
        lr = args.lr * min(1.0, (step + 1) / 100) * decay_factor(t_start, args.until)
        for g in opt.param_groups:
            g["lr"] = lr
        gen = torch.Generator().manual_seed(args.seed * 7919 + step)
        zt, noise, t, ids, idx = noisy_batch(data, sched, gen, args.batch, args.uncond_prob)
        with torch.no_grad():
            cond = enc(ids).last_hidden_state
        hint = hints[idx].float().expand(-1, 3, -1, -1)
        down, mid = net(zt, t, encoder_hidden_states=cond, controlnet_cond=hint, return_dict=False)
        pred = unet(zt, t, cond, down_block_additional_residuals=down, mid_block_additional_residual=mid).sample
        loss = min_snr_loss(pred, noise, snr, t)
        optimizer_step(opt, loss, net.parameters())
        step += 1
        ema_update(ema, net, min(args.ema, (1 + step) / (10 + step)))
        run.append(loss.item())
        if step % 25 == 0:
            log(f"controlnet step {step} loss {np.mean(run):.4f} lr {lr:.2e}", t0)
            run = []
        if time.time() - last_save > 180:
            save(ckpt, {"net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                        "step": step, "t_start": t_start})
            last_save = time.time()
    save(ckpt, {"net": net.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(),
                "step": step, "t_start": t_start})


def export(t0: float) -> Path:
    from safetensors.torch import save_file

    from nodegen.models.controlnet_export import controlnet_to_ldm

    unet, _, _ = base_model()
    net = build_controlnet(unet)
    st = torch.load(OUT / "ckpt_controlnet.pt", weights_only=False)
    net.load_state_dict(st["ema"])
    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items()}
    DEST.parent.mkdir(parents=True, exist_ok=True)
    tmp = DEST.with_suffix(".tmp")
    save_file(controlnet_to_ldm(sd), str(tmp), metadata={"format": "pt", "nodegen.model": "nodegen-demo-canny"})
    tmp.replace(DEST)
    log(f"exported step {st['step']} to {DEST} ({DEST.stat().st_size} bytes)", t0)
    return DEST


def _mask(img: np.ndarray) -> np.ndarray:
    """Pixels that differ from the border's median colour (the shape)."""
    border = np.concatenate([img[:2].reshape(-1, 3), img[-2:].reshape(-1, 3),
                             img[:, :2].reshape(-1, 3), img[:, -2:].reshape(-1, 3)])
    return np.sqrt(((img.astype(np.float32) - np.median(border, 0)) ** 2).sum(-1)) > 60


@torch.no_grad()
def evaluate(n: int, t0: float) -> None:
    """Generate the first ``n`` held-out prompts with only their colours in the prompt (no shape,
    size or position) and the ground-truth render's edges as the hint, through the engine's graph
    with and without the ControlNet; report the IoU of the shape masks with the ground truth."""
    from nodegen.runtime.engine import Engine

    items = shapes.eval_prompts()[:n]
    tmp = OUT / "cn_eval"
    (tmp / "in").mkdir(parents=True, exist_ok=True)
    eng = Engine(output_dir=tmp / "out", input_dir=tmp / "in", device="cpu")
    ious = {1.0: [], 0.0: []}
    shape_ok = {1.0: [], 0.0: []}
    from tools.demo.scorer import score

    for k, (_, a) in enumerate(items):
        img = shapes.render(a, 64)
        img.save(tmp / "in" / f"gt{k}.png")
        gt = _mask(np.asarray(img))
        prompt = f"a {a['color']} shape on {'an' if a['background'][0] in 'aeiou' else 'a'} {a['background']} background"
        for strength in (1.0, 0.0):
            r = eng.run(ROOT / "graphs" / "controlnet.json", set={
                "Layout.image": f"gt{k}.png", "Positive.text": prompt, "Apply ControlNet.strength": strength,
                "Sample.seed": k})
            assert r.ok, r.failures
            out = np.asarray(r.ui["13"]["images"][0].convert("RGB"))  # the Save node, not the edges preview
            m = _mask(out)
            ious[strength].append((m & gt).sum() / max((m | gt).sum(), 1))
            shape_ok[strength].append(score(out, a)["shape_ok"])
    for s in (1.0, 0.0):
        log(f"strength {s}: mask IoU with the layout {np.mean(ious[s]):.3f}, shape class "
            f"{np.mean(shape_ok[s]):.1%} (n={n}, prompt names colours only)", t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--uncond-prob", type=float, default=0.3)
    ap.add_argument("--until", default=None, help="HH:MM (UTC): stop then (checkpointed)")
    ap.add_argument("--export", action="store_true")
    ap.add_argument("--eval", type=int, nargs="?", const=50, default=None, metavar="N")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from nodegen.compat import torchvision as torchvision_fix

    torchvision_fix.apply()
    t0 = time.time()
    log(f"args {vars(args)} torch {torch.__version__} threads {torch.get_num_threads()}", t0)
    if args.export:
        export(t0)
    elif args.eval:
        evaluate(args.eval, t0)
    else:
        train(args, t0)


if __name__ == "__main__":
    main()
