"""nodegen's txt2img graph versus diffusers' StableDiffusionPipeline on the same components.

1. Sampling: the same single-file checkpoint is loaded once by each side (our CheckpointLoader,
   cached by the engine; the pipeline built over the very modules our loader made), then each
   side generates REPEAT images with a new prompt and seed every time (so text encoding,
   sampling and decoding all run; only the loader is cached). Reports the median wall time and
   process CPU time of each and the ratios nodegen / diffusers (target <= 1.03); the two
   alternate within the one process, and which goes first alternates too.
2. Loading: load time and peak RSS of ``nodegen.models.loader.load_checkpoint`` versus diffusers'
   ``StableDiffusionPipeline.from_single_file(path, config=<local folder>)``, each in a fresh
   process.

    python bench/pipeline_overhead.py                 # small SD1-architecture model, 64x64
    python bench/pipeline_overhead.py --full          # full-size SD1.5 architecture (random weights)

One torch thread (bit-reproducible, and fair on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROMPTS = ["a large red circle on a white background", "a small blue square, top left",
           "a green star on a black background", "a yellow triangle, center", "a purple circle"]


def build_small(folder: Path) -> tuple[Path, Path]:
    from tests.support.fixtures import sd1_fixture

    ns = sd1_fixture(folder)
    return Path(ns.single_file), Path(ns.diffusers_dir)


def build_full(folder: Path) -> tuple[Path, Path]:
    """A full-size SD1.5-architecture checkpoint with random weights (fp16 file, ~2 GB)."""
    import torch
    from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from nodegen.models.clip_tokenizer import load_clip_tokenizer
    from nodegen.models.configs import shipped
    from nodegen.models.ldm_export import convert_pipeline_to_ldm

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(shipped("sd1", "unet"))
    vae = AutoencoderKL.from_config(shipped("sd1", "vae"))
    te = CLIPTextModel(CLIPTextConfig(**shipped("sd1", "text_encoder")))
    sd = convert_pipeline_to_ldm(unet, vae, te, "sd1")
    path = folder / "sd15_random.safetensors"
    save_file({k: v.half().contiguous() for k, v in sd.items()}, str(path))
    from diffusers import PNDMScheduler

    pipe = StableDiffusionPipeline(vae=vae, text_encoder=te, tokenizer=load_clip_tokenizer(), unet=unet,
                                   scheduler=PNDMScheduler.from_config(shipped("sd1", "scheduler")),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    cfg = folder / "sd15_config"
    pipe.save_pretrained(cfg)
    for f in cfg.rglob("*.safetensors"):
        f.unlink()  # configs and tokenizer only
    return path, cfg


def time_sampling(ckpt: Path, size: int, steps: int, repeat: int) -> dict:
    import numpy as np
    import torch
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    from nodegen.runtime.engine import Engine

    graph = json.loads((ROOT / "graphs" / "txt2img.json").read_text())
    engine = Engine(models=[], output_dir=tempfile.mkdtemp())
    graph["nodes"]["1"]["inputs"]["ckpt_name"] = str(ckpt)
    graph["nodes"]["4"]["inputs"].update(width=size, height=size)
    graph["nodes"]["5"]["inputs"].update(steps=steps, cfg=5.0, sampler_name="dpmpp_2m", scheduler="karras")
    graph["nodes"]["7"] = {"type": "PreviewImage", "inputs": {"images": {"from": ["6", "image"]}}}
    first = engine.run(graph, set={"Prompt.text": "warm up", "Sampler.seed": 99})
    assert first.ok, first.problems or first.failures
    # the pipeline over the modules our loader built (same weights, same device, same dtype)
    loaded = engine.models.load_checkpoint(str(ckpt))
    m, c, v = loaded
    pipe = StableDiffusionPipeline(
        vae=v.vae, text_encoder=c.encoders[0], tokenizer=c.tokenizers[0], unet=m.unet,
        scheduler=DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                              beta_schedule="scaled_linear", use_karras_sigmas=True),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe("warm up", num_inference_steps=steps, height=size, width=size, guidance_scale=5.0, output_type="np")
    ours, theirs, ours_cpu, theirs_cpu = [], [], [], []

    def run_ours(i: int, prompt: str) -> None:
        t, c = time.perf_counter(), time.process_time()
        r = engine.run(graph, set={"Prompt.text": prompt, "Sampler.seed": i})
        ours.append(time.perf_counter() - t)
        ours_cpu.append(time.process_time() - c)
        assert r.ok and r.executed, r.failures

    def run_theirs(i: int, prompt: str) -> None:
        t, c = time.perf_counter(), time.process_time()
        out = pipe(prompt, negative_prompt="", num_inference_steps=steps, height=size, width=size,
                   guidance_scale=5.0, generator=torch.Generator("cpu").manual_seed(i), output_type="np")
        theirs.append(time.perf_counter() - t)
        theirs_cpu.append(time.process_time() - c)
        assert np.isfinite(out.images).all()

    for i in range(repeat):  # alternating, and which goes first alternates too
        prompt = f"{PROMPTS[i % len(PROMPTS)]} {i}"
        for run in ((run_ours, run_theirs) if i % 2 == 0 else (run_theirs, run_ours)):
            run(i, prompt)
    a, b = statistics.median(ours), statistics.median(theirs)
    ac, bc = statistics.median(ours_cpu), statistics.median(theirs_cpu)
    return {"nodegen_s": a, "diffusers_s": b, "ratio": a / b,
            "ratios": [x / y for x, y in zip(ours, theirs, strict=True)],
            "nodegen_cpu_s": ac, "diffusers_cpu_s": bc, "ratio_cpu": ac / bc,
            "ratios_cpu": [x / y for x, y in zip(ours_cpu, theirs_cpu, strict=True)]}


_LOAD_PREAMBLE = """
import sys, time, threading
sys.path.insert(0, {root!r})
from nodegen.compat import torchvision as torchvision_fix; torchvision_fix.apply()
import torch; torch.set_num_threads(1)
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel  # imports not timed
from transformers import CLIPTextModel, CLIPTokenizer
from nodegen.models.loader import load_checkpoint
def _rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
peak = [0]
def _watch():
    while True:
        peak[0] = max(peak[0], _rss()); time.sleep(0.005)
threading.Thread(target=_watch, daemon=True).start()
base = _rss()
t = time.perf_counter()
"""
_LOAD_REPORT = """
dt = time.perf_counter() - t
time.sleep(0.05); print(dt, base, max(peak[0], _rss()))
"""
LOAD_OURS = _LOAD_PREAMBLE + "m = load_checkpoint({path!r})" + _LOAD_REPORT
LOAD_DIFFUSERS = _LOAD_PREAMBLE + """p = StableDiffusionPipeline.from_single_file({path!r}, config={cfg!r}, local_files_only=True,
                                             safety_checker=None, requires_safety_checker=False)""" + _LOAD_REPORT


def time_loading(ckpt: Path, cfg: Path, repeat: int) -> dict:
    """Each load in a fresh process; the file is read once first (page cache warm for both) and
    the two loaders alternate, so neither pays the disk read alone."""
    with open(ckpt, "rb") as f:
        while f.read(1 << 24):
            pass
    runs: dict[str, list] = {"nodegen": [], "diffusers": []}
    for _ in range(repeat):
        for name, code in (("nodegen", LOAD_OURS), ("diffusers", LOAD_DIFFUSERS)):
            res = subprocess.run([sys.executable, "-c", code.format(root=str(ROOT), path=str(ckpt), cfg=str(cfg))],
                                 capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
            if res.returncode != 0:
                raise RuntimeError(f"{name} load failed:\n{res.stderr[-3000:]}")
            dt, base, peak = res.stdout.split()[-3:]
            runs[name].append((float(dt), (int(peak) - int(base)) / 1024))  # MiB (VmRSS is KiB)
    out: dict = {name: {"seconds": statistics.median(t for t, _ in r),
                        "peak_rss_added_mib": statistics.median(m for _, m in r)} for name, r in runs.items()}
    out["file_mib"] = ckpt.stat().st_size / 2**20
    return out


def main() -> None:
    from nodegen.compat import torchvision as torchvision_fix

    torchvision_fix.apply()
    import torch

    torch.set_num_threads(1)
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="full-size SD1.5 architecture (random weights)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-loading", action="store_true", help="sampling only (bench/loading.py times loading)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt, cfg = build_full(tmp) if args.full else build_small(tmp)
        print(f"{'full-size SD1.5' if args.full else 'small SD1'} architecture, {args.size}x{args.size}, "
              f"{args.steps} steps dpmpp_2m karras, cfg 5; python {platform.python_version()}, "
              f"torch {torch.__version__}, 1 thread, {time.strftime('%Y-%m-%d')}")
        s = time_sampling(ckpt, args.size, args.steps, args.repeat)
        print(f"sampling, wall: nodegen {s['nodegen_s']:.3f} s, diffusers {s['diffusers_s']:.3f} s, "
              f"ratio {s['ratio']:.3f} (per run: {', '.join(f'{r:.3f}' for r in s['ratios'])})")
        print(f"sampling, process CPU: nodegen {s['nodegen_cpu_s']:.3f} s, diffusers {s['diffusers_cpu_s']:.3f} s, "
              f"ratio {s['ratio_cpu']:.3f} (per run: {', '.join(f'{r:.3f}' for r in s['ratios_cpu'])})")
        print(f"load average {os.getloadavg()[0]:.1f}")
        if args.no_loading:
            return
        ld = time_loading(ckpt, cfg, 3 if not args.full else 2)
        print(f"loading a {ld['file_mib']:.1f} MiB file: nodegen {ld['nodegen']['seconds']:.2f} s, "
              f"+{ld['nodegen']['peak_rss_added_mib']:.0f} MiB peak RSS; diffusers from_single_file "
              f"{ld['diffusers']['seconds']:.2f} s, +{ld['diffusers']['peak_rss_added_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
