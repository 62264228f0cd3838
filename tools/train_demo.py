"""Train the built-in demo model ``nodegen-demo-shapes`` from scratch on generated shapes.

Phases (each seeded and resumable from ``--out``/ckpt_*.pt; the data of step ``k`` depends only
on ``(seed, phase, k)``, so a resumed run sees the same batches as an uninterrupted one):

1. ``vae``: an SD1-style ``AutoencoderKL`` (8x downscale, 4 latent channels), edge- and
   shape-weighted L1 + tiny KL, on random 32x32 crops (4x cheaper) and then on full 64x64 images
   for the last steps; the round trip of the 200 held-out renders is scored every
   ``--score-every`` steps. Afterwards the latent is rescaled by an exact reparametrisation so
   that ``std(latent) * 0.18215 ~= 1`` (SD1's fixed scaling factor).
2. ``latents``: a seeded set of rendered images is encoded once (posterior mean and std).
3. ``unet``: ``UNet2DConditionModel`` and ``CLIPTextModel`` trained jointly: SD1 DDPM schedule,
   epsilon prediction, min-SNR-5 weighting, 10% caption dropout for classifier-free guidance,
   constant learning rate after warm-up then (with ``--until``) a cosine decay over the last 35%
   of the time, EMA weights (exported).
4. ``decoder``: only the VAE decoder goes on training (EMA, full images), the encoder frozen, so
   the latent space the UNet learns stays valid: run it *in parallel* with ``unet``.

The shipped weights were made with (2 CPU cores; see the model card for times)::

    python tools/train_demo.py --threads 2 --phases vae
    python tools/train_demo.py --threads 2 --phases latents
    python tools/train_demo.py --threads 1 --phases unet --until 14:30 &     # these two together,
    python tools/train_demo.py --threads 1 --phases decoder --dec-until 14:28  # one core each
    python tools/train_demo.py --export   # nodegen/assets/models/nodegen-demo-shapes.safetensors
                                          # (+ a diffusers folder in tools/out/export)
    python tools/eval_demo.py --cfg 1 5 7.5 --vae-ceiling
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.demo import configs, shapes  # noqa: E402
from tools.demo.export import export_folder, export_single_file, rescale_vae_latents  # noqa: E402

OUT = Path(os.environ.get("DEMO_OUT", Path(__file__).resolve().parent / "out"))


def log(msg: str, t0: float) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.time() - t0:7.1f}s] {msg}", flush=True)


def image_batch(seed: int, phase: int, step: int, n: int) -> tuple[torch.Tensor, list[dict]]:
    """Rendered images in [-1, 1] (n, 3, H, W) and their attributes, fixed by (seed, phase, step)."""
    rng = np.random.default_rng([seed, phase, step])
    attrs = [shapes.sample_attributes(rng) for _ in range(n)]
    arr = np.stack([shapes.render_array(a, configs.IMAGE_SIZE) for a in attrs])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return x, attrs


def edge_weight(x: torch.Tensor) -> torch.Tensor:
    """1 on flat regions, 5 near colour edges of the target (sharp shape outlines)."""
    g = (x[..., :, 1:] - x[..., :, :-1]).abs().sum(1, keepdim=True)
    h = (x[..., 1:, :] - x[..., :-1, :]).abs().sum(1, keepdim=True)
    e = F.pad(g, (0, 1, 0, 0)) + F.pad(h, (0, 0, 0, 1))
    e = F.max_pool2d((e > 0.05).float(), 3, 1, 1)
    return 1.0 + 4.0 * e


def foreground(x: torch.Tensor) -> torch.Tensor:
    """1 where a pixel differs from its image's background (the median border colour), else 0."""
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], -1)
    bg = border.median(-1).values[..., None, None]
    return ((x - bg).abs().sum(1, keepdim=True) > 0.2).float()


def save(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def optimizer_step(opt, loss: torch.Tensor, params) -> None:
    """Backward, clip the gradient norm to 1, step."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


def noisy_batch(data: dict, sched, gen: torch.Generator, batch: int, uncond_prob: float):
    """A training batch from ``latents.pt``: ``(noisy latents, noise, timesteps, token ids)``,
    a posterior sample scaled by SD1's factor, ``uncond_prob`` of the captions emptied."""
    idx = torch.randint(0, len(data["mean"]), (batch,), generator=gen)
    z = data["mean"][idx] + data["std"][idx] * torch.randn(data["mean"][idx].shape, generator=gen)
    z = z * configs.SCALING_FACTOR
    ids = data["ids"][idx].clone()
    ids[torch.rand(batch, generator=gen) < uncond_prob] = data["empty"]
    t = torch.randint(0, 1000, (batch,), generator=gen)
    noise = torch.randn(z.shape, generator=gen)
    return sched.add_noise(z, noise, t), noise, t, ids, idx


def min_snr_loss(pred: torch.Tensor, noise: torch.Tensor, snr: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Epsilon MSE with min-SNR-5 weighting."""
    w = torch.clamp(snr[t], max=5.0) / snr[t]
    return (((pred - noise) ** 2).mean((1, 2, 3)) * w).mean()


def train_vae(args, t0: float):
    vae, _, _ = configs.build_models()
    with torch.no_grad():  # start with a narrow posterior: unit noise would drown the latent
        c = vae.config.latent_channels
        vae.quant_conv.weight[c:] *= 0.1
        vae.quant_conv.bias[c:] = args.init_logvar
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    ckpt, step = OUT / "ckpt_vae.pt", 0
    if ckpt.exists():
        st = torch.load(ckpt, weights_only=False)
        vae.load_state_dict(st["vae"])
        opt.load_state_dict(st["opt"])
        step = st["step"]
        log(f"vae: resumed at step {step}", t0)
    last_save, run = time.time(), []
    while step < args.vae_steps:
        lr = args.vae_lr * min(1.0, (step + 1) / 100) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / args.vae_steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        if args.vae_until and time.strftime("%H:%M", time.gmtime()) >= args.vae_until:
            log(f"vae: reached --vae-until {args.vae_until} UTC at step {step}; stopping", t0)
            break
        x, _ = image_batch(args.seed, 1, step, args.vae_batch)
        fg = foreground(x) if step >= args.fg_from else torch.zeros_like(x[:, :1])
        if step < args.vae_steps - args.vae_full_steps:  # cheap 32px crops first, full images last
            oy, ox = np.random.default_rng([args.seed, 4, step]).integers(0, x.shape[-1] - 32 + 1, 2)
            x, fg = (t[..., oy : oy + 32, ox : ox + 32] for t in (x, fg))
        torch.manual_seed(args.seed * 100003 + step)
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample()).sample
        l1 = ((rec - x).abs() * (edge_weight(x) + 3.0 * fg)).mean()
        kl = post.kl().mean()
        loss = l1 + args.kl_weight * kl
        optimizer_step(opt, loss, vae.parameters())
        step += 1
        run.append(l1.item())
        if step % 25 == 0:
            log(f"vae step {step}/{args.vae_steps} l1w {np.mean(run):.4f} kl {kl.item():.1f} lr {lr:.2e}", t0)
            run = []
        if step % args.score_every == 0:
            log(f"vae step {step}: round trip of the held-out renders {round_trip_score(vae)}", t0)
        if time.time() - last_save > args.save_every or step == args.vae_steps:
            save(ckpt, {"vae": vae.state_dict(), "opt": opt.state_dict(), "step": step})
            last_save = time.time()
    save(ckpt, {"vae": vae.state_dict(), "opt": opt.state_dict(), "step": step})
    return vae


def round_trip_score(vae) -> str:
    """Colour/shape accuracy of the scorer on VAE round trips of the 200 held-out renders."""
    from eval_demo import vae_ceiling

    was_training = vae.training
    res = vae_ceiling(vae.eval(), shapes.eval_prompts())
    vae.train(was_training)
    return f"colour {res['color']:.1%} shape {res['shape']:.1%}"


def train_decoder(args, t0: float):
    """Go on training only the decoder (post_quant_conv + decoder) on full images, the encoder
    frozen: the latent space (and the UNet trained on it, in parallel) stays valid."""
    vae, _, _ = configs.build_models()
    st = torch.load(OUT / "ckpt_vae.pt", weights_only=False)
    vae.load_state_dict(st["vae"])
    if "scale" not in st:
        raise SystemExit("run the 'vae' phase to its end first (it measures the latent scale)")
    dec_params = list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters())
    for prm in vae.parameters():
        prm.requires_grad_(False)
    for prm in dec_params:
        prm.requires_grad_(True)
    ema = copy.deepcopy(vae).eval()
    opt = torch.optim.AdamW(dec_params, lr=args.dec_lr, weight_decay=0.0)
    ckpt, step = OUT / "ckpt_dec.pt", 0
    if ckpt.exists():
        sd = torch.load(ckpt, weights_only=False)
        vae.load_state_dict(sd["vae"])
        ema.load_state_dict(sd["ema"])
        opt.load_state_dict(sd["opt"])
        step = sd["step"]
        log(f"decoder: resumed at step {step}", t0)
    last_save, run = time.time(), []
    vae.encoder.eval()
    while step < args.dec_steps:
        if args.dec_until and time.strftime("%H:%M", time.gmtime()) >= args.dec_until:
            log(f"decoder: reached --dec-until {args.dec_until} UTC at step {step}; stopping", t0)
            break
        for g in opt.param_groups:
            g["lr"] = args.dec_lr * min(1.0, (step + 1) / 50)
        x, _ = image_batch(args.seed, 5, step, args.vae_batch)
        torch.manual_seed(args.seed * 100019 + step)
        with torch.no_grad():
            z = vae.encode(x).latent_dist.sample()
        rec = vae.decode(z).sample
        l1 = ((rec - x).abs() * (edge_weight(x) + 3.0 * foreground(x))).mean()
        optimizer_step(opt, l1, dec_params)
        step += 1
        ema_update(ema, vae, min(args.dec_ema, (1 + step) / (10 + step)))
        run.append(l1.item())
        if step % 25 == 0:
            log(f"decoder step {step} l1w {np.mean(run):.4f}", t0)
            run = []
        if step % args.score_every == 0:
            log(f"decoder step {step}: round trip (EMA) {round_trip_score(ema)}", t0)
        if time.time() - last_save > args.save_every:
            save(ckpt, {"vae": vae.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step})
            last_save = time.time()
    save(ckpt, {"vae": vae.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "step": step})
    log(f"decoder: final round trip (EMA) {round_trip_score(ema)}", t0)


@torch.no_grad()
def build_latents(args, vae, tok, t0: float) -> dict:
    path = OUT / "latents.pt"
    if path.exists():
        return torch.load(path)
    vae.eval()
    means, stds, ids = [], [], []
    for b in range(args.n_latents // 250):
        x, attrs = image_batch(args.seed, 2, b, 250)
        post = vae.encode(x).latent_dist
        means.append(post.mean)
        stds.append(post.std)
        ids.append(tok([shapes.caption(a) for a in attrs], padding="max_length", max_length=77,
                       truncation=True, return_tensors="pt").input_ids)
    data = {"mean": torch.cat(means), "std": torch.cat(stds), "ids": torch.cat(ids)}
    data["empty"] = tok([""], padding="max_length", max_length=77, return_tensors="pt").input_ids[0]
    save(path, data)
    log(f"latents: {len(data['mean'])} encoded, latent std x sf = "
        f"{(data['mean'].std() * configs.SCALING_FACTOR).item():.3f}", t0)
    return data


def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    with torch.no_grad():
        for pe, pm in zip(ema.parameters(), model.parameters(), strict=True):
            pe.lerp_(pm, 1.0 - decay)


def decay_factor(t_start: float, until: str | None, tail: float = 0.35) -> float:
    """1 until the last ``tail`` of the wall-clock budget [t_start, until], then cosine to 0.1."""
    if not until:
        return 1.0
    hh, mm = map(int, until.split(":"))
    now = time.gmtime()
    end = time.time() + ((hh * 60 + mm) - (now.tm_hour * 60 + now.tm_min)) * 60 - now.tm_sec
    frac = (time.time() - t_start) / max(end - t_start, 1.0)
    x = min(max((frac - (1 - tail)) / tail, 0.0), 1.0)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * x))


def train_unet(args, data: dict, t0: float):
    from diffusers import DDPMScheduler

    _, text, unet = configs.build_models()
    keep = ("num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "prediction_type")
    sched = DDPMScheduler(**{k: configs.SCHEDULER_CONFIG[k] for k in keep})
    alphas = sched.alphas_cumprod
    snr = alphas / (1 - alphas)
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=args.unet_lr, weight_decay=0.01)
    ema_u, ema_t = copy.deepcopy(unet).eval(), copy.deepcopy(text).eval()
    ckpt, step = OUT / "ckpt_unet.pt", 0
    if ckpt.exists():
        st = torch.load(ckpt, weights_only=False)
        for m, k in ((unet, "unet"), (text, "text"), (ema_u, "ema_unet"), (ema_t, "ema_text"), (opt, "opt")):
            m.load_state_dict(st[k])
        step = st["step"]
        log(f"unet: resumed at step {step}", t0)
    last_save, run = time.time(), []
    t_start = st.get("t_start", time.time()) if ckpt.exists() else time.time()
    while step < args.unet_steps:
        if args.until and time.strftime("%H:%M", time.gmtime()) >= args.until:
            log(f"unet: reached --until {args.until} UTC at step {step}; stopping", t0)
            break
        # constant after warm-up, then (with --until) a cosine decay to 10% over the last 35% of
        # the time budget; the EMA weights are exported
        lr = args.unet_lr * min(1.0, (step + 1) / 200) * decay_factor(t_start, args.until)
        for g in opt.param_groups:
            g["lr"] = lr
        gen = torch.Generator().manual_seed(args.seed * 1000003 + step)
        zt, noise, t, ids, _ = noisy_batch(data, sched, gen, args.unet_batch, args.uncond_prob)
        cond = text(ids).last_hidden_state
        loss = min_snr_loss(unet(zt, t, cond).sample, noise, snr, t)
        optimizer_step(opt, loss, params)
        step += 1
        decay = min(args.ema, (1 + step) / (10 + step))
        ema_update(ema_u, unet, decay)
        ema_update(ema_t, text, decay)
        run.append(loss.item())
        if step % 25 == 0:
            log(f"unet step {step}/{args.unet_steps} loss {np.mean(run):.4f} lr {lr:.2e}", t0)
            run = []
        if time.time() - last_save > args.save_every or step == args.unet_steps or step % 500 == 0:
            save(ckpt, {"unet": unet.state_dict(), "text": text.state_dict(), "ema_unet": ema_u.state_dict(),
                        "ema_text": ema_t.state_dict(), "opt": opt.state_dict(), "step": step, "t_start": t_start})
            last_save = time.time()
    save(ckpt, {"unet": unet.state_dict(), "text": text.state_dict(), "ema_unet": ema_u.state_dict(),
                "ema_text": ema_t.state_dict(), "opt": opt.state_dict(), "step": step, "t_start": t_start})
    return ema_u, ema_t


def load_scaled_vae(decoder: bool = True):
    vae, _, _ = configs.build_models()
    st = torch.load(OUT / "ckpt_vae.pt", weights_only=False)
    vae.load_state_dict(st["vae"])
    if "scale" not in st:
        raise SystemExit("VAE latent scale not measured yet: run the 'vae' phase to the end")
    if decoder and (OUT / "ckpt_dec.pt").exists():  # the encoder is unchanged by that phase
        vae.load_state_dict(torch.load(OUT / "ckpt_dec.pt", weights_only=False)["ema"])
    rescale_vae_latents(vae, st["scale"])
    return vae.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--phases", default="vae,latents,unet")
    ap.add_argument("--vae-steps", type=int, default=3300)
    ap.add_argument("--vae-full-steps", type=int, default=100, help="last steps on full images")
    ap.add_argument("--vae-batch", type=int, default=16)
    ap.add_argument("--vae-lr", type=float, default=1.5e-3)
    ap.add_argument("--vae-until", default=None, help="HH:MM (UTC): stop the vae phase then")
    ap.add_argument("--fg-from", type=int, default=400, help="weight shape pixels x4 from this step")
    ap.add_argument("--score-every", type=int, default=500, help="steps between round-trip scores")
    ap.add_argument("--dec-steps", type=int, default=100000)
    ap.add_argument("--dec-lr", type=float, default=4e-4)
    ap.add_argument("--dec-ema", type=float, default=0.998)
    ap.add_argument("--dec-until", default=None, help="HH:MM (UTC): stop the decoder phase then")
    ap.add_argument("--init-logvar", type=float, default=-6.0)
    ap.add_argument("--kl-weight", type=float, default=1e-6)
    ap.add_argument("--n-latents", type=int, default=10000)
    ap.add_argument("--unet-steps", type=int, default=100000)
    ap.add_argument("--unet-batch", type=int, default=32)
    ap.add_argument("--unet-lr", type=float, default=8e-4)
    ap.add_argument("--uncond-prob", type=float, default=0.1)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--until", default=None, help="HH:MM (UTC): stop the unet phase then (checkpointed)")
    ap.add_argument("--save-every", type=float, default=180.0, help="seconds between checkpoints")
    ap.add_argument("--export", action="store_true", help="export the EMA weights and exit")
    ap.add_argument("--export-dir", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    log(f"args {vars(args)} torch {torch.__version__} threads {torch.get_num_threads()}", t0)
    from nodegen.models.clip_tokenizer import load_clip_tokenizer

    phases = args.phases.split(",")
    if args.export:
        st = torch.load(OUT / "ckpt_unet.pt", weights_only=False)
        _, text, unet = configs.build_models()
        unet.load_state_dict(st["ema_unet"])
        text.load_state_dict(st["ema_text"])
        vae = load_scaled_vae()
        dest = export_folder(vae, text, unet, args.export_dir or OUT / "export")
        single = export_single_file(vae, text, unet)
        log(f"exported step {st['step']} to {dest} (diffusers folder) and {single} (single file)", t0)
        return
    if "vae" in phases:
        vae = train_vae(args, t0)
        st = torch.load(OUT / "ckpt_vae.pt", weights_only=False)
        if "scale" not in st or st.get("scale_step") != st["step"]:
            with torch.no_grad():
                x, _ = image_batch(args.seed, 3, 0, 256)
                std = vae.eval().encode(x).latent_dist.mean.std().item()
            st["scale"], st["scale_step"] = 1.0 / (std * configs.SCALING_FACTOR), st["step"]
            save(OUT / "ckpt_vae.pt", st)
            log(f"vae: latent std {std:.4f} -> rescale by {st['scale']:.4f}", t0)
    data = None
    if "latents" in phases or "unet" in phases:
        data = build_latents(args, load_scaled_vae(decoder=False), load_clip_tokenizer(), t0)
    if "unet" in phases:
        train_unet(args, data, t0)
    if "decoder" in phases:
        train_decoder(args, t0)
    log("done", t0)


if __name__ == "__main__":
    main()
