"""Train the built-in demo CLIP ``nodegen-demo-clip`` from scratch on generated shapes.

A transformers ``CLIPModel`` (the real CLIP architecture, scaled down; the real CLIP BPE tokenizer,
so a 49408-token vocabulary and 77 positions) trained contrastively on the shapes data set the
demo diffusion model was trained on (``shapes.py``), with captions like the demo model's prompts,
each naming a random subset of the picture's attributes ("a blue star", "a small red circle on a
white background", "a shape on a green background", ...).

Loss: CLIP's symmetric cross-entropy over the batch's image-text similarities, with *multiple
positives*: a caption counts as a match for every picture of the batch it describes truly (a batch
of 128 holds many "a star"), the target spread evenly over those matches.

Augmentations make the image tower robust to what CLIP guidance shows it (blurry, noisy
predictions of the clean image, random cut-outs): Gaussian blur, additive noise and random crops
(crops drop the position words from the caption).

Seeded and resumable (``--out``/ckpt_clip.pt); the data of step ``k`` depends only on
``(seed, k)``. The shipped weights were made with (times and restarts: see the model card)::

    nice -n 10 python tools/train_demo_clip.py --threads 1 --steps 2400
    python tools/train_demo_clip.py --export     # nodegen/assets/models/clip/nodegen-demo-clip.safetensors
    python tools/eval_demo_clip.py --guide-n 200 --scale 5 --steps 10 --x0   # the card's measurements
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nodegen.compat import torchvision as torchvision_fix  # noqa: E402
from nodegen.models.clip_tokenizer import load_clip_tokenizer  # noqa: E402
from tools.demo import shapes  # noqa: E402

OUT = Path(os.environ.get("DEMO_OUT", ROOT / "tools" / "out"))
EXPORT = ROOT / "nodegen" / "assets" / "models" / "clip" / "nodegen-demo-clip.safetensors"
IMAGE_SIZE = 64
#: OpenAI CLIP's pixel normalisation (nodegen.clip uses it for every CLIP).
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)

TEXT_CONFIG = dict(
    vocab_size=49408,
    hidden_size=64,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=1,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=64,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)
VISION_CONFIG = dict(
    image_size=IMAGE_SIZE,
    patch_size=16,
    hidden_size=128,
    intermediate_size=512,
    num_hidden_layers=3,
    num_attention_heads=2,
    hidden_act="quick_gelu",
    projection_dim=64,
)


def build_model():
    torchvision_fix.apply()
    from transformers import CLIPConfig, CLIPModel

    cfg = CLIPConfig(text_config=TEXT_CONFIG, vision_config=VISION_CONFIG, projection_dim=64)
    return CLIPModel(cfg)


def log(msg: str, t0: float) -> None:
    print(f"[{time.strftime('%H:%M:%S')} +{time.time() - t0:7.1f}s] {msg}", flush=True)


def random_caption(attrs: dict, rng: np.random.Generator, with_position: bool) -> tuple[str, dict]:
    """A caption naming a random subset of ``attrs`` (the shape or its colour always), and that subset."""
    named = {k: attrs[k] for k in ("shape", "color", "size", "background") if rng.random() < 0.5}
    if with_position and rng.random() < 0.3:
        named["position"] = attrs["position"]
    if "shape" not in named and "color" not in named:
        key = ("shape", "color")[int(rng.integers(2))]
        named[key] = attrs[key]
    return caption_of(named), named


def caption_of(named: dict) -> str:
    words = [named.get("size"), named.get("color"), named.get("shape", "shape")]
    text = "a " + " ".join(w for w in words if w)
    if "background" in named:
        bg = named["background"]
        text += f" on {'an' if bg[0] in 'aeiou' else 'a'} {bg} background"
    if "position" in named:
        pos = named["position"]
        text += ", in the center" if pos == "center" else f", {pos}"
    return text


def blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image separable Gaussian blur (sigma 0: unchanged)."""
    r = 4
    t = torch.arange(-r, r + 1, dtype=x.dtype)
    k = torch.exp(-(t[None] ** 2) / (2 * sigma.clamp(min=1e-3)[:, None] ** 2))
    k = k / k.sum(1, keepdim=True)  # (B, 2r+1)
    b, c, h, w = x.shape
    xp = F.pad(x.reshape(1, b * c, h, w), (r, r, r, r), mode="replicate")
    kk = k.repeat_interleave(c, 0)
    xp = F.conv2d(xp, kk[:, None, None, :], groups=b * c)
    xp = F.conv2d(xp, kk[:, None, :, None], groups=b * c)
    return xp.reshape(b, c, h, w)


def batch(seed: int, step: int, n: int, tok) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """Augmented images (normalised), tokenised captions and the (n, n) match matrix."""
    rng = np.random.default_rng([seed, step])
    attrs = [shapes.sample_attributes(rng) for _ in range(n)]
    x = torch.from_numpy(np.stack([shapes.render_array(a, IMAGE_SIZE) for a in attrs]))
    x = x.permute(0, 3, 1, 2).float() / 255.0
    crop = rng.random(n) < 0.3
    for i in np.nonzero(crop)[0]:
        side = int(rng.integers(int(0.7 * IMAGE_SIZE), IMAGE_SIZE))
        oy, ox = rng.integers(0, IMAGE_SIZE - side + 1, 2)
        x[i] = F.interpolate(x[i : i + 1, :, oy : oy + side, ox : ox + side], size=IMAGE_SIZE,
                             mode="bilinear", antialias=True, align_corners=False)[0]
    sigma = torch.from_numpy(np.where(rng.random(n) < 0.5, rng.uniform(0.0, 2.0, n), 0.0)).float()
    x = blur(x, sigma)
    noise = torch.from_numpy(np.where(rng.random(n) < 0.5, rng.uniform(0.0, 0.15, n), 0.0)).float()
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    x = (x + noise[:, None, None, None] * torch.randn(x.shape, generator=gen)).clamp(0, 1)
    caps = [random_caption(a, rng, with_position=not c) for a, c in zip(attrs, crop, strict=True)]
    match = torch.tensor([[all(a.get(k) == v for k, v in named.items()) for _, named in caps] for a in attrs])
    ids = tok([c for c, _ in caps], padding="longest", return_tensors="pt")
    return normalise(x), ids, match.float()


def normalise(x: torch.Tensor) -> torch.Tensor:
    return (x - torch.tensor(MEAN)[:, None, None]) / torch.tensor(STD)[:, None, None]


def multi_positive_loss(logits: torch.Tensor, match: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy of image->text and text->image, targets spread over all true matches."""
    li = -(F.log_softmax(logits, 1) * match / match.sum(1, keepdim=True)).sum(1).mean()
    mt = match.t()
    lt = -(F.log_softmax(logits.t(), 1) * mt / mt.sum(1, keepdim=True)).sum(1).mean()
    return 0.5 * (li + lt)


def train(args, t0: float) -> None:
    torch.manual_seed(args.seed)
    model = build_model()
    tok = load_clip_tokenizer()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    ckpt, step = OUT / "ckpt_clip.pt", 0
    if ckpt.exists():
        st = torch.load(ckpt, weights_only=False)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step = st["step"]
        log(f"resumed at step {step}", t0)
    model.train()
    last_save, run = time.time(), []
    while step < args.steps:
        if args.until and time.strftime("%H:%M", time.gmtime()) >= args.until:
            log(f"reached --until {args.until} UTC at step {step}; stopping", t0)
            break
        lr = args.lr * min(1.0, (step + 1) / 200) * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * step / args.steps)))
        for g in opt.param_groups:
            g["lr"] = lr
        x, ids, match = batch(args.seed, step, args.batch, tok)
        out = model(input_ids=ids["input_ids"], pixel_values=x)
        loss = multi_positive_loss(out.logits_per_image, match)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        step += 1
        run.append(loss.item())
        if step % 50 == 0:
            log(f"step {step}/{args.steps} loss {np.mean(run):.4f} lr {lr:.2e} scale {model.logit_scale.exp().item():.1f}", t0)
            run = []
        if step % args.eval_every == 0:
            log(f"step {step}: zero-shot {zero_shot(model.eval(), tok)}", t0)
            model.train()
        if time.time() - last_save > args.save_every:
            save(ckpt, {"model": model.state_dict(), "opt": opt.state_dict(), "step": step})
            last_save = time.time()
    save(ckpt, {"model": model.state_dict(), "opt": opt.state_dict(), "step": step})


def save(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def zero_shot(model, tok) -> dict[str, float]:
    """Zero-shot accuracy on the 200 held-out pictures: shape ("a circle" ... "a star") and
    colour ("a red shape" ... "a black shape"), the text with the highest similarity wins."""
    attrs = [a for _, a in shapes.eval_prompts()]
    x = torch.from_numpy(np.stack([shapes.render_array(a, IMAGE_SIZE) for a in attrs]))
    img = model.get_image_features(pixel_values=normalise(x.permute(0, 3, 1, 2).float() / 255.0))
    img = F.normalize(_tensor(img), dim=-1)
    res = {}
    for key, texts, labels in (
        ("shape", [f"a {s}" for s in shapes.SHAPES], shapes.SHAPES),
        ("colour", [f"a {c} shape" for c in shapes.COLORS], tuple(shapes.COLORS)),
    ):
        ids = tok(texts, padding="longest", return_tensors="pt")
        txt = F.normalize(_tensor(model.get_text_features(input_ids=ids["input_ids"])), dim=-1)
        pred = (img @ txt.t()).argmax(1)
        truth = torch.tensor([labels.index(a["shape" if key == "shape" else "color"]) for a in attrs])
        res[key] = (pred == truth).float().mean().item()
    return res


def _tensor(out) -> torch.Tensor:
    """``get_*_features`` return a tensor in transformers 4 and an output object in 5."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def export(dest: Path) -> None:
    from safetensors.torch import save_file

    model = build_model()
    model.load_state_dict(torch.load(OUT / "ckpt_clip.pt", weights_only=False)["model"])
    sd = {k: v.detach().half().contiguous() for k, v in model.state_dict().items() if "position_ids" not in k}
    dest.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(dest), metadata={"format": "pt", "nodegen": "nodegen-demo-clip"})
    print(f"wrote {dest} ({dest.stat().st_size:,} bytes)")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=2400)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--until", default="", help="stop at this UTC time of day (HH:MM)")
    p.add_argument("--eval-every", type=int, default=500)
    p.add_argument("--save-every", type=float, default=120.0, help="seconds between checkpoints")
    p.add_argument("--export", nargs="?", const=str(EXPORT), default=None, metavar="PATH",
                   help=f"write the fp16 safetensors file (default {EXPORT.relative_to(ROOT)})")
    p.add_argument("--eval", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    if args.export:
        export(Path(args.export))
    elif args.eval:
        model = build_model()
        model.load_state_dict(torch.load(OUT / "ckpt_clip.pt", weights_only=False)["model"])
        print(zero_shot(model.eval(), load_clip_tokenizer()))
    else:
        train(args, t0)


if __name__ == "__main__":
    main()
