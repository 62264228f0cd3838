"""Evaluate the demo model on the 200 held-out prompts with diffusers' StableDiffusionPipeline.

Each prompt gets a fixed seed (its index); images are scored by ``tools.demo.scorer``, which
reports the colour and class of the generated shape. Prints accuracies per guidance scale.

    python tools/eval_demo.py --cfg 1 5 7.5 --steps 20 --grid tools/out/eval
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nodegen.compat import torchvision as torchvision_fix  # noqa: E402
from tools.demo import configs, shapes  # noqa: E402
from tools.demo.scorer import score  # noqa: E402


def load_pipeline(model_dir: Path, scheduler: str = "dpm"):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torchvision_fix.apply()
    from diffusers import (
        AutoencoderKL,
        DPMSolverMultistepScheduler,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextModel

    from nodegen.models.clip_tokenizer import load_clip_tokenizer

    kw = {"local_files_only": True, "torch_dtype": torch.float32}
    cls = DPMSolverMultistepScheduler if scheduler == "dpm" else EulerDiscreteScheduler
    pipe = StableDiffusionPipeline(
        vae=AutoencoderKL.from_pretrained(model_dir / "vae", **kw),
        text_encoder=CLIPTextModel.from_pretrained(model_dir / "text_encoder", **kw),
        tokenizer=load_clip_tokenizer(),
        unet=UNet2DConditionModel.from_pretrained(model_dir / "unet", **kw),
        scheduler=cls.from_pretrained(model_dir / "scheduler", local_files_only=True),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, prompts: list[str], seeds: list[int], cfg: float, steps: int, batch: int) -> np.ndarray:
    out = []
    for i in range(0, len(prompts), batch):
        gens = [torch.Generator().manual_seed(s) for s in seeds[i : i + batch]]
        res = pipe(prompts[i : i + batch], height=configs.IMAGE_SIZE, width=configs.IMAGE_SIZE,
                   num_inference_steps=steps, guidance_scale=cfg, generator=gens, output_type="np")
        out.append(res.images)
    return (np.concatenate(out) * 255).round().clip(0, 255).astype(np.uint8)


def save_grid(images: np.ndarray, path: Path, cols: int = 10) -> None:
    from PIL import Image

    n, h, w, _ = images.shape
    rows = (n + cols - 1) // cols
    grid = np.zeros((rows * h, cols * w, 3), np.uint8)
    for k, im in enumerate(images):
        grid[(k // cols) * h : (k // cols + 1) * h, (k % cols) * w : (k % cols + 1) * w] = im
    Image.fromarray(grid).save(path)


@torch.no_grad()
def vae_ceiling(vae, items) -> dict:
    """Score the held-out prompts' ground-truth renders after a VAE round trip (encode -> decode):
    the most a model with this VAE can reach."""
    arr = np.stack([shapes.render_array(a, configs.IMAGE_SIZE) for _, a in items])
    x = torch.from_numpy(arr).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    rec = torch.cat([vae.decode(vae.encode(b).latent_dist.mean).sample for b in x.split(50)])
    img = ((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    sc = [score(im, a) for im, (_, a) in zip(img, items, strict=True)]
    return {"color": float(np.mean([s["color_ok"] for s in sc])), "shape": float(np.mean([s["shape_ok"] for s in sc]))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, default=Path(__file__).resolve().parent / "out" / "export",
                    help="diffusers folder written by train_demo.py --export")
    ap.add_argument("--cfg", type=float, nargs="+", default=[1.0, 5.0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--scheduler", choices=["dpm", "euler"], default="dpm")
    ap.add_argument("--n", type=int, default=shapes.N_EVAL)
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--grid", type=Path, default=None, help="save the first 50 images as PREFIX_cfgX.png")
    ap.add_argument("--vae-ceiling", action="store_true", help="also score VAE round trips of ground truth")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    pipe = load_pipeline(args.model, args.scheduler)
    items = shapes.eval_prompts()[: args.n]
    prompts = [p for p, _ in items]
    seeds = list(range(len(items)))
    results = {}
    if args.vae_ceiling:
        results["vae_round_trip"] = vae_ceiling(pipe.vae, items)
        print(f"VAE round trip of ground truth: colour {results['vae_round_trip']['color']:6.1%}  "
              f"shape {results['vae_round_trip']['shape']:6.1%}", flush=True)
    for cfg in args.cfg:
        t = time.time()
        imgs = generate(pipe, prompts, seeds, cfg, args.steps, args.batch)
        scored = [score(im, a) for im, (_, a) in zip(imgs, items, strict=True)]
        col = float(np.mean([s["color_ok"] for s in scored]))
        shp = float(np.mean([s["shape_ok"] for s in scored]))
        pos = float(np.mean([s["position_ok"] for s in scored]))
        size = float(np.mean([s["size_ok"] for s in scored]))
        both = float(np.mean([s["color_ok"] and s["shape_ok"] for s in scored]))
        bg = float(np.mean([s["background"] == a["background"] for s, (_, a) in zip(scored, items, strict=True)]))
        results[cfg] = {"color": col, "shape": shp, "both": both, "background": bg, "position": pos,
                        "size": size, "n": len(items)}
        print(f"cfg {cfg:4.1f}: colour {col:6.1%}  shape {shp:6.1%}  both {both:6.1%}  "
              f"background {bg:6.1%}  position {pos:6.1%}  size {size:6.1%}  "
              f"(n={len(items)}, {args.steps} {args.scheduler} steps, "
              f"{time.time() - t:.0f}s)", flush=True)
        if args.grid:
            args.grid.parent.mkdir(parents=True, exist_ok=True)
            save_grid(imgs[:50], Path(f"{args.grid}_cfg{cfg:g}.png"))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
