"""Measure the demo CLIP (``nodegen-demo-clip``) as shipped, through nodegen's own loader.

* zero-shot accuracy on the 200 held-out pictures of the shapes data set: shape ("a circle" ...
  "a star") and colour ("a red shape" ... "a black shape");
* ranking: 16 seeds of "a blue star" from the demo diffusion model, ranked by CLIP; where do the
  pictures the shape scorer calls blue stars land;
* guidance: the demo model's shape and colour accuracy on held-out prompts at the same seeds,
  with and without CLIP guidance.

    python tools/eval_demo_clip.py                      # everything, as in the model card
    python tools/eval_demo_clip.py --guide-n 64 --scale 300 --cutouts 4
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from nodegen.clip.guidance import ClipGuidance, guided_model  # noqa: E402
from nodegen.clip.load import load_clip  # noqa: E402
from nodegen.clip.score import clip_scores, rank  # noqa: E402
from nodegen.diffusion.conditioning import CondItem  # noqa: E402
from nodegen.diffusion.sample import Steps, sample  # noqa: E402
from tools.demo import shapes  # noqa: E402
from tools.demo.scorer import score, score_image  # noqa: E402

ASSETS = ROOT / "nodegen" / "assets" / "models"
CLIP_FILE = ASSETS / "clip" / "nodegen-demo-clip.safetensors"
DEMO_FILE = ASSETS / "nodegen-demo-shapes.safetensors"


def load_models(clip_file: str | Path = CLIP_FILE):
    """(CLIP_MODEL, MODEL, CLIP text encoder, VAE) of the built-in demo files."""
    from nodegen.models.loader import load_checkpoint

    model, text, vae = load_checkpoint(DEMO_FILE)
    return load_clip(clip_file), model, text, vae


def zero_shot(clip) -> dict[str, float]:
    attrs = [a for _, a in shapes.eval_prompts()]
    images = torch.from_numpy(np.stack([shapes.render_array(a, 64) for a in attrs])).float() / 255.0
    out = {}
    for key, labels, texts in (("shape", shapes.SHAPES, [f"a {s}" for s in shapes.SHAPES]),
                               ("colour", tuple(shapes.COLORS), [f"a {c} shape" for c in shapes.COLORS])):
        pred = clip_scores(clip, images, texts).argmax(1)
        truth = torch.tensor([labels.index(a["shape" if key == "shape" else "color"]) for a in attrs])
        out[key] = float((pred == truth).float().mean())
    return out


def prompt_of(attrs: dict) -> str:
    """The demo prompt without the position (the demo model does not follow it)."""
    bg = attrs["background"]
    return f"a {attrs['size']} {attrs['color']} {attrs['shape']} on {'an' if bg[0] in 'aeiou' else 'a'} {bg} background"


def generate(model, text_encoder, vae, prompts: list[str], seed: int, steps: int, guidance=None,
             cfg: float = 5.0) -> torch.Tensor:
    """One batch, one prompt per picture (IMAGE ``[B,64,64,3]``), dpmpp_2m / karras."""
    pos = [CondItem(torch.cat([text_encoder.encode(p)[0].embeds for p in prompts]))]
    neg = text_encoder.encode("")
    m = model if guidance is None else guided_model(model, guidance)
    lat = {"samples": torch.zeros(len(prompts), 4, 8, 8)}
    out = sample(m, pos, neg, lat, seed, Steps(steps, "karras"), cfg, "dpmpp_2m")
    return vae.decode(out.latent["samples"])


#: The batch of 16 ranked in the model card, the test and graphs/clip_rank.json: the demo model
#: mostly ignores the colour of the short prompt "a blue star" (it was trained on captions naming
#: size and background too); at cfg 1 this batch holds 3 blue stars among 16 stars and blobs.
RANK_SEED, RANK_STEPS, RANK_CFG = 6, 10, 1.0


def ranking(clip, model, text_encoder, vae, n: int = 16, seed: int = RANK_SEED, steps: int = RANK_STEPS,
            cfg: float = RANK_CFG) -> dict:
    """Rank ``n`` pictures of "a blue star" by CLIP; the scorer says which are blue stars."""
    images = generate(model, text_encoder, vae, ["a blue star"] * n, seed, steps, cfg=cfg)
    scores = clip_scores(clip, images, ["a blue star"])[:, 0]
    order = rank(scores)
    hits = []
    for i in order:
        det = score_image(images[i].numpy())
        hits.append(det["color"] == "blue" and det["shape"] == "star")
    return {"order": order, "blue_star_in_rank_order": hits, "scores": [float(scores[i]) for i in order]}


def guidance_effect(clip, model, text_encoder, vae, n: int, scale: float, cutouts: int = 4, seed: int = 0,
                    steps: int = 20, start: float = 0.0, end: float = 1.0, through_model: bool = True,
                    normalise: bool = False) -> dict:
    """Shape / colour accuracy (the shape scorer) and mean CLIP score of the first ``n`` held-out
    prompts, plain and guided, same seeds."""
    attrs = [a for _, a in shapes.eval_prompts()[:n]]
    prompts = [prompt_of(a) for a in attrs]
    target = torch.nn.functional.normalize(clip.embed_texts(prompts), dim=-1)
    res = {}
    for name, g in (("plain", None), ("guided", ClipGuidance(clip, vae, target, scale, cutouts, start, end, 224, seed,
                                                                   through_model=through_model, normalise=normalise))):
        t0 = time.process_time()
        images = generate(model, text_encoder, vae, prompts, seed, steps, g)
        dets = [score(images[i].numpy(), a) for i, a in enumerate(attrs)]
        res[name] = {"shape": float(np.mean([d["shape_ok"] for d in dets])),
                     "shape_hits": "".join("1" if d["shape_ok"] else "0" for d in dets),
                     "colour": float(np.mean([d["color_ok"] for d in dets])),
                     "clip_score": float(clip_scores(clip, images, prompts).diagonal().mean()),
                     "cpu_s": time.process_time() - t0}
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--guide-n", type=int, default=64)
    p.add_argument("--scale", type=float, default=300.0)
    p.add_argument("--cutouts", type=int, default=4)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--start", type=float, default=0.0, help="guide from this fraction of the schedule")
    p.add_argument("--end", type=float, default=1.0)
    p.add_argument("--x0", action="store_true", help="the x0-prediction variant (no gradient through the UNet)")
    p.add_argument("--normalise", action="store_true",
                   help="unit-RMS gradient: each guided step moves the predicted latent by --scale")
    p.add_argument("--clip", default=str(CLIP_FILE), help="the CLIP to measure (default: the shipped one)")
    p.add_argument("--skip", nargs="*", default=[], choices=["zero_shot", "ranking", "guidance"])
    args = p.parse_args()
    torch.set_num_threads(1)
    clip, model, text, vae = load_models(args.clip)
    if "zero_shot" not in args.skip:
        print("zero-shot on 200 held-out pictures:", zero_shot(clip), flush=True)
    if "ranking" not in args.skip:
        print("ranking 16 seeds of 'a blue star':", ranking(clip, model, text, vae), flush=True)
    if "guidance" not in args.skip:
        print(f"guidance (n={args.guide_n}, scale={args.scale}, cutouts={args.cutouts}, start={args.start}, "
              f"end={args.end}):",
              guidance_effect(clip, model, text, vae, args.guide_n, args.scale, args.cutouts, steps=args.steps,
                              start=args.start, end=args.end, through_model=not args.x0,
                              normalise=args.normalise), flush=True)


if __name__ == "__main__":
    main()
