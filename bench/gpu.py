"""The GPU benchmark (issue 19): one short script, a few minutes on one GPU.

Full-size SD1.5 and SDXL architectures with random weights (made on the GPU, fp16), at 512x512 and
1024x1024. For each: sampling iterations per second of nodegen against diffusers' pipeline on the
very same modules in the same process (systems alternating, per-step times from step callbacks,
steps after the first), and the peak VRAM of each. Then, for SD1.5 written to an fp16 single
file: the time to load it onto the GPU (nodegen's loader, and diffusers' ``from_single_file`` with
a local config), and through the public ``Engine``: a first run, a seed-only re-run and a cache-hit
re-run of the txt2img graph at 512x512.

    python bench/gpu.py [--steps 20] [--rounds 2] [--sizes 512 1024] [--families sd15 sdxl]
                        [--json results.json]

Targets (issue 19): at least diffusers' it/s (within 3 %), a cache hit in under 5 ms, peak VRAM no
more than diffusers'. Random weights: the images are noise; only speed and memory are measured.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

DEV = torch.device("cuda")
DT = torch.float16


def sync() -> None:
    if DEV.type == "cuda":
        sync()


def reset_peak() -> None:
    if DEV.type == "cuda":
        reset_peak()


def peak() -> int:
    return peak() if DEV.type == "cuda" else 0


def allocated() -> int:
    return torch.cuda.memory_allocated() if DEV.type == "cuda" else 0
results: dict = {"device": None, "sampling": [], "load": {}, "engine": {}, "errors": []}


# -- full-size architectures with random weights, made on the GPU ------------------------------------

SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D",
                                   "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280), cross_attention_dim=2048,
                 transformer_layers_per_block=(1, 2, 10), attention_head_dim=(5, 10, 20),
                 use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
                 projection_class_embeddings_input_dim=2816,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"))
VAE = dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
           block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
           up_block_types=("UpDecoderBlock2D",) * 4, sample_size=512)
CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
              num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
CLIP_G = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
              num_attention_heads=20, max_position_embeddings=77, hidden_act="gelu", projection_dim=1280)


TINY = {  # --tiny: the test fixtures' sizes, to check this script on a CPU
    "SD15_UNET": dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(32, 64),
                      cross_attention_dim=64, attention_head_dim=8,
                      down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                      up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")),
    "SDXL_UNET": dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(64, 128),
                      cross_attention_dim=192, transformer_layers_per_block=(1, 2), attention_head_dim=(1, 2),
                      use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
                      projection_class_embeddings_input_dim=128 + 6 * 8,
                      down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                      up_block_types=("CrossAttnUpBlock2D", "UpBlock2D")),
    "VAE": dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                block_out_channels=(32, 32, 64, 64), down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, sample_size=64),
    "CLIP_L": dict(vocab_size=49408, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                   num_attention_heads=1, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=64),
    "CLIP_G": dict(vocab_size=49408, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                   num_attention_heads=2, max_position_embeddings=77, hidden_act="gelu", projection_dim=128),
}


def materialize(build, seed: int) -> torch.nn.Module:
    """``build()`` with empty weights, then random fp16 weights made on the GPU (std 1/sqrt(fan_in),
    biases 0, norm scales 1): seconds instead of minutes of CPU initialisation."""
    from accelerate import init_empty_weights

    with init_empty_weights():
        module = build()
    gen = torch.Generator(DEV).manual_seed(seed)
    for full, p in list(module.named_parameters()):
        owner, _, name = full.rpartition(".")
        sub = module.get_submodule(owner) if owner else module
        t = torch.empty(p.shape, device=DEV, dtype=DT)
        if p.ndim >= 2:
            t.normal_(0.0, 1.0 / math.sqrt(p[0].numel()), generator=gen)
        elif name == "bias":
            t.zero_()
        else:
            t.fill_(1.0)
        sub._parameters[name] = torch.nn.Parameter(t, requires_grad=False)
    return module.to(DEV).eval()


def build_family(family: str):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from nodegen.models.clip_tokenizer import load_clip_tokenizer

    vae = materialize(lambda: AutoencoderKL(**VAE, scaling_factor=0.18215 if family == "sd15" else 0.13025), 1)
    if family == "sd15":
        unet = materialize(lambda: UNet2DConditionModel(**SD15_UNET), 2)
        te = materialize(lambda: CLIPTextModel(CLIPTextConfig(**CLIP_L)), 3)
        return dict(unet=unet, vae=vae, encoders=[te], tokenizers=[load_clip_tokenizer()])
    unet = materialize(lambda: UNet2DConditionModel(**SDXL_UNET), 2)
    te = materialize(lambda: CLIPTextModel(CLIPTextConfig(**CLIP_L)), 3)
    te2 = materialize(lambda: CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_G)), 4)
    return dict(unet=unet, vae=vae, encoders=[te, te2],
                tokenizers=[load_clip_tokenizer(), load_clip_tokenizer(pad_token="!")])


# -- sampling: nodegen vs diffusers on the same modules ---------------------------------------------

def scheduler_config() -> dict:
    return dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                steps_offset=1, prediction_type="epsilon", use_karras_sigmas=True)


def step_rate(stamps: list[float]) -> float:
    """Iterations per second from per-step timestamps (the steps after the first)."""
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def ours(parts, family, size, steps, seed, mgr):
    from nodegen.diffusion.sample import sample
    from nodegen.models.objects import DiffusionModel, TextEncoder, VAEModel

    fam = "sd1" if family == "sd15" else "sdxl"
    model = DiffusionModel.from_unet(parts["unet"], fam, "epsilon", manager=mgr)
    text = TextEncoder.from_components(parts["tokenizers"], parts["encoders"], fam, manager=mgr)
    pos, neg = text.encode("a photo of a cat"), text.encode("blurry")
    stamps: list[float] = []

    def cb(step, total, info):
        sync()
        stamps.append(time.perf_counter())

    sync()
    reset_peak()
    t0 = time.perf_counter()
    out = sample(model, pos, neg, {"samples": torch.zeros(1, 4, size // 8, size // 8)}, seed=seed, steps=steps,
                 cfg=7.0, sampler="dpmpp_2m", scheduler="karras", device=DEV, dtype=DT, callback=cb,
                 preview=False)
    VAEModel.from_vae(parts["vae"], manager=mgr).decode(out["samples"], device=DEV, dtype=DT)
    sync()
    return step_rate(stamps), time.perf_counter() - t0, peak(), (pos, neg)


def theirs(parts, family, size, steps, seed, conds):
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    sched = DPMSolverMultistepScheduler(**scheduler_config())
    if family == "sd15":
        pipe = StableDiffusionPipeline(vae=parts["vae"], text_encoder=parts["encoders"][0],
                                       tokenizer=parts["tokenizers"][0], unet=parts["unet"], scheduler=sched,
                                       safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    else:
        pipe = StableDiffusionXLPipeline(vae=parts["vae"], text_encoder=parts["encoders"][0],
                                         text_encoder_2=parts["encoders"][1], tokenizer=parts["tokenizers"][0],
                                         tokenizer_2=parts["tokenizers"][1], unet=parts["unet"], scheduler=sched,
                                         force_zeros_for_empty_prompt=False)
    pipe.set_progress_bar_config(disable=True)
    pos, neg = conds
    h = lambda t: t.to(DEV, DT)  # noqa: E731
    kw = dict(prompt_embeds=h(pos[0].embeds), negative_prompt_embeds=h(neg[0].embeds))
    if family != "sd15":
        kw.update(pooled_prompt_embeds=h(pos[0].pooled), negative_pooled_prompt_embeds=h(neg[0].pooled))
    stamps: list[float] = []

    def cb(_pipe, _i, _t, kwargs):
        sync()
        stamps.append(time.perf_counter())
        return kwargs

    sync()
    reset_peak()
    t0 = time.perf_counter()
    pipe(**kw, num_inference_steps=steps, guidance_scale=7.0, height=size, width=size,
         generator=torch.Generator().manual_seed(seed), callback_on_step_end=cb, output_type="pt")
    sync()
    return step_rate(stamps), time.perf_counter() - t0, peak()


def bench_sampling(family: str, sizes, steps: int, rounds: int) -> None:
    from nodegen.models.manager import ModelManager

    t = time.perf_counter()
    parts = build_family(family)
    print(f"{family}: random fp16 modules made on the GPU in {time.perf_counter() - t:.1f} s", flush=True)
    mgr = ModelManager(device=DEV, gpu_dtype=DT)
    for size in sizes:
        row = {"family": family, "size": size, "steps": steps, "ours_its": [], "diffusers_its": [],
               "ours_s": [], "diffusers_s": [], "ours_peak": 0, "diffusers_peak": 0}
        _, _, _, conds = ours(parts, family, size, 3, 0, mgr)  # warm-up (kernels, cuDNN plans)
        theirs(parts, family, size, 3, 0, conds)
        for r in range(rounds):
            order = ("ours", "diffusers") if r % 2 == 0 else ("diffusers", "ours")
            for system in order:
                if system == "ours":
                    its, sec, peak, conds = ours(parts, family, size, steps, r, mgr)
                else:
                    its, sec, peak = theirs(parts, family, size, steps, r, conds)
                row[f"{system}_its"].append(its)
                row[f"{system}_s"].append(sec)
                row[f"{system}_peak"] = max(row[f"{system}_peak"], peak)
        row["ratio_its"] = statistics.median(row["ours_its"]) / statistics.median(row["diffusers_its"])
        results["sampling"].append(row)
        print(f"  {family} {size}px: ours {statistics.median(row['ours_its']):.2f} it/s, diffusers "
              f"{statistics.median(row['diffusers_its']):.2f} it/s (ratio {row['ratio_its']:.3f}); peak VRAM "
              f"ours {row['ours_peak'] / 2**30:.2f} GiB, diffusers {row['diffusers_peak'] / 2**30:.2f} GiB",
              flush=True)
    if family == "sd15":
        bench_load_and_engine(parts, steps)
    del parts
    if DEV.type == "cuda":
        torch.cuda.empty_cache()


# -- loading and the public Engine (SD1.5) -----------------------------------------------------------

def write_single_file(parts, folder: Path) -> Path:
    from safetensors.torch import save_file

    from nodegen.models.ldm_export import convert_pipeline_to_ldm

    sd = convert_pipeline_to_ldm(parts["unet"], parts["vae"], parts["encoders"][0], "sd1")
    path = folder / "checkpoints" / "sd15-random-fp16.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().to("cpu", DT if v.is_floating_point() else v.dtype).contiguous()
               for k, v in sd.items()}, str(path))
    del sd
    return path


def diffusers_config_folder(parts, folder: Path) -> Path:
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    pipe = StableDiffusionPipeline(vae=parts["vae"], text_encoder=parts["encoders"][0],
                                   tokenizer=parts["tokenizers"][0], unet=parts["unet"],
                                   scheduler=DPMSolverMultistepScheduler(**scheduler_config()),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    out = folder / "sd15-config"
    pipe.save_config(str(out))
    parts["unet"].save_config(str(out / "unet"))
    parts["vae"].save_config(str(out / "vae"))
    parts["encoders"][0].config.save_pretrained(str(out / "text_encoder"))
    parts["tokenizers"][0].save_pretrained(str(out / "tokenizer"))
    pipe.scheduler.save_config(str(out / "scheduler"))
    return out


def bench_load_and_engine(parts, steps: int) -> None:
    from nodegen.models import loader
    from nodegen.models.manager import ModelManager

    folder = Path(tempfile.mkdtemp(prefix="nodegen-gpu-bench-"))
    path = write_single_file(parts, folder)
    load = results["load"]
    load["file_bytes"] = path.stat().st_size
    path.read_bytes()  # page cache warm for both loaders
    for attempt in range(2):
        sync()
        reset_peak()
        base = allocated()
        t = time.perf_counter()
        loaded = loader.load_checkpoint(path, manager=ModelManager(device=DEV, gpu_dtype=DT))
        sync()
        load.setdefault("nodegen_s", []).append(time.perf_counter() - t)
        load["nodegen_vram_gib"] = (peak() - base) / 2**30
        del loaded
        try:
            from diffusers import StableDiffusionPipeline

            cfg = diffusers_config_folder(parts, folder) if attempt == 0 else folder / "sd15-config"
            sync()
            t = time.perf_counter()
            pipe = StableDiffusionPipeline.from_single_file(str(path), config=str(cfg), local_files_only=True,
                                                            torch_dtype=DT, safety_checker=None).to(DEV)
            sync()
            load.setdefault("diffusers_s", []).append(time.perf_counter() - t)
            del pipe
        except Exception as e:  # noqa: BLE001 - reported, the rest goes on
            results["errors"].append(f"diffusers from_single_file: {type(e).__name__}: {e}")
    print(f"  load SD1.5 fp16 file ({load['file_bytes'] / 2**30:.2f} GiB) to the GPU: nodegen "
          f"{min(load['nodegen_s']):.2f} s, diffusers {min(load.get('diffusers_s', [math.nan])):.2f} s",
          flush=True)
    bench_engine(folder, path, steps)


def bench_engine(folder: Path, path: Path, steps: int) -> None:
    from nodegen.runtime.engine import Engine

    engine = Engine(models=folder, device=DEV.type, output_dir=folder / "out")
    graph = ROOT / "graphs" / "txt2img.json"
    sets = {"Model.ckpt_name": path.name, "Latent.width": 512, "Latent.height": 512, "Sampler.steps": steps}
    eng = results["engine"]

    def timed(**kw):
        sync()
        t = time.perf_counter()
        r = engine.run(graph, **kw)
        sync()
        assert r.ok, (r.problems, r.failures)
        return time.perf_counter() - t, r

    eng["first_run_s"], _ = timed(set=sets)
    eng["seed_only_rerun_s"], r = timed(set={**sets, "Sampler.seed": 2})
    eng["seed_only_executed"] = len(r.executed)
    eng["full_rerun_s"], r = timed(set={**sets, "Sampler.seed": 2})  # only the Save node runs
    eng["full_rerun_executed"] = len(r.executed)
    hits = []
    for _ in range(5):
        dt, r = timed(set={**sets, "Sampler.seed": 2}, targets=["Decode"])
        assert not r.executed
        hits.append(dt)
    eng["cache_hit_ms"] = 1000 * statistics.median(hits)
    print(f"  Engine (512px, {steps} steps): first run {eng['first_run_s']:.2f} s, seed-only re-run "
          f"{eng['seed_only_rerun_s']:.2f} s, re-run (Save runs) {eng['full_rerun_s'] * 1000:.1f} ms, "
          f"cache hit {eng['cache_hit_ms']:.2f} ms", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    ap.add_argument("--families", nargs="+", default=["sd15", "sdxl"], choices=["sd15", "sdxl"])
    ap.add_argument("--json", default=None, help="write all figures here")
    ap.add_argument("--tiny", action="store_true", help="check the script: tiny models, on the CPU if no GPU")
    args = ap.parse_args()
    global DEV, DT
    if args.tiny:
        globals().update(TINY)
        if not torch.cuda.is_available():
            DEV, DT = torch.device("cpu"), torch.float32
            torch.set_num_threads(1)
    elif not torch.cuda.is_available():
        print("bench/gpu.py: no CUDA device; nothing to measure (--tiny checks the script on the CPU)")
        return
    if DEV.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    results["device"] = torch.cuda.get_device_name(0) if DEV.type == "cuda" else "cpu (--tiny)"
    results["torch"] = torch.__version__
    results["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"{results['device']}, torch {torch.__version__}, {results['date']}", flush=True)
    from nodegen.compat import torchvision as torchvision_fix

    torchvision_fix.apply()
    for family in args.families:
        try:
            bench_sampling(family, args.sizes, args.steps, args.rounds)
        except Exception as e:  # noqa: BLE001 - one family's failure must not lose the other's figures
            traceback.print_exc()
            results["errors"].append(f"{family}: {type(e).__name__}: {e}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    print("\n| model | size | nodegen it/s | diffusers it/s | ratio | peak VRAM nodegen / diffusers (GiB) |")
    print("|---|---:|---:|---:|---:|---|")
    for row in results["sampling"]:
        print(f"| {row['family']} | {row['size']} | {statistics.median(row['ours_its']):.2f} | "
              f"{statistics.median(row['diffusers_its']):.2f} | {row['ratio_its']:.3f} | "
              f"{row['ours_peak'] / 2**30:.2f} / {row['diffusers_peak'] / 2**30:.2f} |")
    print(json.dumps({"load": results["load"], "engine": results["engine"], "errors": results["errors"]},
                     default=str))


if __name__ == "__main__":
    main()
