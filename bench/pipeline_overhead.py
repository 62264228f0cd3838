"""nodegen's txt2img graph versus diffusers' StableDiffusionPipeline on the same components.

1. Sampling: the same single-file checkpoint is loaded once by each side (our CheckpointLoader,
   cached by the engine; the pipeline built over the UNet and VAE our loader made, with
   transformers' text encoder and tokenizer on the same weights), then each
   side generates REPEAT images with a new prompt and seed every time (so text encoding,
   sampling, decoding and writing a PNG all run; only the loader is cached). The two run in
   pairs within the one process, which goes first alternating. Reports, for process CPU time,
   thread CPU time and wall time, the median of the per-pair ratios nodegen / diffusers (target
   <= 1.03) with quartiles and range, and each side's thread CPU time outside the shared UNet.
2. Loading: load time and peak RSS of ``nodegen.models.loader.load_checkpoint`` versus diffusers'
   ``StableDiffusionPipeline.from_single_file(path, config=<local folder>)``, each in a fresh
   process.

    python bench/pipeline_overhead.py --no-loading --repeat 30         # small SD1 model, 64x64
    python bench/pipeline_overhead.py --no-loading --full --steps 3 --repeat 3
                                      # full-size SD1.5 architecture (random weights), 512x512

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


class _Clock:
    """Wall, process CPU and thread CPU time of one run, and the thread CPU spent inside the UNet
    (the one module both sides share; what lies outside it is what each side adds)."""

    def __init__(self, unet) -> None:
        self.in_unet = 0.0
        forward = unet.forward

        def timed_forward(*args, **kwargs):
            t = time.thread_time()
            try:
                return forward(*args, **kwargs)
            finally:
                self.in_unet += time.thread_time() - t

        unet.forward = timed_forward

    def measure(self, fn, *args) -> dict:
        self.in_unet = 0.0
        w, p, t = time.perf_counter(), time.process_time(), time.thread_time()
        fn(*args)
        thread = time.thread_time() - t
        return {"wall": time.perf_counter() - w, "process": time.process_time() - p, "thread": thread,
                "unet": self.in_unet, "outside_unet": thread - self.in_unet}


def _spread(values: list[float]) -> dict:
    q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
    return {"median": statistics.median(values), "q1": q[0], "q3": q[2], "min": min(values), "max": max(values)}


def _transformers_text_encoder(ours, cfg: Path):
    """transformers' ``CLIPTextModel`` with our text encoder's weights (float32, as diffusers runs
    it on the CPU): diffusers' side runs its own text stack, as a diffusers user would."""
    from transformers import CLIPTextConfig, CLIPTextModel

    te = CLIPTextModel(CLIPTextConfig.from_pretrained(cfg / "text_encoder"))
    missing, unexpected = te.load_state_dict({k: v.float() for k, v in ours.state_dict().items()}, strict=False)
    assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)
    return te.eval()


def time_sampling(ckpt: Path, cfg: Path, size: int, steps: int, repeat: int) -> dict:
    """``repeat`` pairs of runs (nodegen, diffusers), adjacent in time, which goes first alternating;
    each run a new prompt and seed and ends in a PNG file on disk. Per pair the ratio nodegen /
    diffusers of each clock; the figure is the median of those ratios (a load change between
    pairs cancels out within a pair)."""
    import numpy as np
    import torch
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    from nodegen.models.clip_tokenizer import load_clip_tokenizer
    from nodegen.runtime.engine import Engine

    out_dir = Path(tempfile.mkdtemp())
    graph = json.loads((ROOT / "graphs" / "txt2img.json").read_text())
    engine = Engine(models=[], output_dir=out_dir / "nodegen")
    engine.env.temp_dir = str(out_dir / "temp")  # a fresh folder: the PNG counter scans it
    graph["nodes"]["1"]["inputs"]["ckpt_name"] = str(ckpt)
    graph["nodes"]["4"]["inputs"].update(width=size, height=size)
    graph["nodes"]["5"]["inputs"].update(steps=steps, cfg=5.0, sampler_name="dpmpp_2m", scheduler="karras")
    graph["nodes"]["7"] = {"type": "PreviewImage", "inputs": {"images": {"from": ["6", "image"]}}}
    warm = min(steps, 2)  # first-call costs only (a 512 px step costs seconds)
    first = engine.run(graph, set={"Prompt.text": "warm up", "Sampler.seed": 99, "Sampler.steps": warm})
    assert first.ok, first.problems or first.failures
    # the pipeline over the UNet and VAE our loader built (the same modules), with transformers'
    # text encoder and tokenizer (nodegen's own CLIP stack is not transformers') on the same weights
    m, c, v = engine.models.load_checkpoint(str(ckpt))
    pipe = StableDiffusionPipeline(
        vae=v.vae, text_encoder=_transformers_text_encoder(c.encoders[0], cfg), tokenizer=load_clip_tokenizer(),
        unet=m.unet,
        scheduler=DPMSolverMultistepScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                                              beta_schedule="scaled_linear", use_karras_sigmas=True),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe("warm up", num_inference_steps=warm, height=size, width=size, guidance_scale=5.0, output_type="np")
    clock = _Clock(m.unet)
    runs: dict[str, list[dict]] = {"nodegen": [], "diffusers": []}

    def run_ours(i: int, prompt: str) -> None:
        r = engine.run(graph, set={"Prompt.text": prompt, "Sampler.seed": i})
        assert r.ok and r.executed, r.failures

    def run_theirs(i: int, prompt: str) -> None:
        out = pipe(prompt, negative_prompt="", num_inference_steps=steps, height=size, width=size,
                   guidance_scale=5.0, generator=torch.Generator("cpu").manual_seed(i), output_type="pil")
        image = out.images[0]
        image.save(out_dir / f"diffusers_{i:05d}.png", compress_level=4)  # nodegen's PNG setting
        assert np.asarray(image).std() > 0

    for i in range(repeat):
        prompt = f"{PROMPTS[i % len(PROMPTS)]} {i}"
        order = (("nodegen", run_ours), ("diffusers", run_theirs))
        for name, run in order if i % 2 == 0 else order[::-1]:
            runs[name].append(clock.measure(run, i, prompt))
    result: dict = {"pairs": repeat}
    for key in ("wall", "process", "thread", "unet"):
        ours = [r[key] for r in runs["nodegen"]]
        theirs = [r[key] for r in runs["diffusers"]]
        result[key] = {"nodegen_s": statistics.median(ours), "diffusers_s": statistics.median(theirs),
                       "ratio": _spread([a / b for a, b in zip(ours, theirs, strict=True)])}
    result["outside_unet"] = {name: statistics.median(r["outside_unet"] for r in rs) for name, rs in runs.items()}
    return result


def _report_sampling(s: dict) -> None:
    for key, label in (("process", "process CPU"), ("thread", "thread CPU"), ("wall", "wall")):
        f, r = s[key], s[key]["ratio"]
        print(f"sampling, {label}: nodegen {f['nodegen_s']:.3f} s, diffusers {f['diffusers_s']:.3f} s (medians); "
              f"ratio per pair: median {r['median']:.3f}, quartiles {r['q1']:.3f}-{r['q3']:.3f}, "
              f"range {r['min']:.3f}-{r['max']:.3f} ({s['pairs']} pairs)")
    r = s["unet"]["ratio"]
    print(f"thread CPU inside the shared UNet (the same computation on both sides; its spread is the "
          f"machine's): ratio per pair: median {r['median']:.3f}, quartiles {r['q1']:.3f}-{r['q3']:.3f}")
    o = s["outside_unet"]
    print(f"thread CPU outside the UNet per image (text encoding, sampler, VAE decode, PNG, engine): "
          f"nodegen {o['nodegen'] * 1000:.1f} ms, diffusers {o['diffusers'] * 1000:.1f} ms (medians)")


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
    ap.add_argument("--size", type=int, default=None, help="image size (default 64; 512 with --full)")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-loading", action="store_true", help="sampling only (bench/loading.py times loading)")
    args = ap.parse_args()
    args.size = args.size or (512 if args.full else 64)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ckpt, cfg = build_full(tmp) if args.full else build_small(tmp)
        print(f"{'full-size SD1.5' if args.full else 'small SD1'} architecture, {args.size}x{args.size}, "
              f"{args.steps} steps dpmpp_2m karras, cfg 5; python {platform.python_version()}, "
              f"torch {torch.__version__}, 1 thread, {time.strftime('%Y-%m-%d')}")
        load = os.getloadavg()
        s = time_sampling(ckpt, cfg, args.size, args.steps, args.repeat)
        _report_sampling(s)
        print("load average before: {:.2f} {:.2f} {:.2f}, after: {:.2f} {:.2f} {:.2f}".format(*load, *os.getloadavg()))
        if args.no_loading:
            return
        ld = time_loading(ckpt, cfg, 3 if not args.full else 2)
        print(f"loading a {ld['file_mib']:.1f} MiB file: nodegen {ld['nodegen']['seconds']:.2f} s, "
              f"+{ld['nodegen']['peak_rss_added_mib']:.0f} MiB peak RSS; diffusers from_single_file "
              f"{ld['diffusers']['seconds']:.2f} s, +{ld['diffusers']['peak_rss_added_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
