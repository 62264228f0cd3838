"""Loading a full-size SD 3.5 Medium single file (random weights): nodegen's CheckpointLoader path
versus diffusers' ``from_single_file`` on the same file, each in a fresh process, in one run.

The transformer (2.5 B parameters, SD 3.5 Medium's published config, MMDiT-X with dual attention)
and the 16-channel VAE are built on the meta device, given random fp16 tensors one at a time, and
saved once to a temporary file in the original single-file layout (``model.diffusion_model.`` +
``first_stage_model.``, as ``sd3.5_medium.safetensors`` ships, without text encoders). Then:

* nodegen: ``nodegen.models.loader.load_checkpoint(path)`` (meta-device modules given the
  memory-mapped tensors, cast to fp32 for the CPU);
* diffusers: ``SD3Transformer2DModel.from_single_file`` + ``AutoencoderKL.from_single_file`` with
  ``config=`` a local folder of the same configs, ``torch_dtype=float32``.

Reported: load seconds, peak RSS added during the load, and the in-memory size of the loaded weights.
Flux.1 (12 B transformer) does not fit this machine's 24 GiB in fp32; its figures are projected from
Medium's by the ratio of parameter counts, and labelled as projections.

    python bench/load_sd35.py [--keep DIR] [--append-results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
FLUX_PARAMS = 11.9e9  # Flux.1 dev / schnell transformer


def build(folder: Path) -> tuple[Path, Path, int]:
    """The random-weight single file, a config folder for diffusers, and the parameter count."""
    import torch
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, SD3Transformer2DModel
    from safetensors.torch import save_file

    from nodegen.models.configs import shipped
    from nodegen.models.ldm_export import vae_to_ldm
    from tests.support.flow_convert import sd3_to_original

    tcfg, vcfg = shipped("flow", "sd35_medium"), shipped("flow", "vae")
    vcfg["scaling_factor"], vcfg["shift_factor"] = 1.5305, 0.0609
    with init_empty_weights():
        transformer = SD3Transformer2DModel(**{k: v for k, v in tcfg.items() if not k.startswith("_")})
        vae = AutoencoderKL(**{k: v for k, v in vcfg.items() if not k.startswith("_")})
    g = torch.Generator().manual_seed(0)

    def random_state(module) -> dict:
        return {k: (torch.randn(tuple(v.shape), generator=g, dtype=torch.float32) * 0.02).half()
                for k, v in module.state_dict().items()}

    t_sd = random_state(transformer)
    n_params = sum(v.numel() for v in t_sd.values())
    sd = {"model.diffusion_model." + k: v for k, v in sd3_to_original(t_sd, prefix="").items()}
    del t_sd
    sd.update({"first_stage_model." + k: v for k, v in vae_to_ldm(random_state(vae), prefix="").items()})
    n_params += sum(v.numel() for k, v in sd.items() if k.startswith("first_stage_model."))
    path = folder / "sd3.5_medium_random.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    del sd
    cfg = folder / "config"
    for sub, data in (("transformer", dict(tcfg, _class_name="SD3Transformer2DModel")),
                      ("vae", dict(vcfg, _class_name="AutoencoderKL"))):
        (cfg / sub).mkdir(parents=True, exist_ok=True)
        (cfg / sub / "config.json").write_text(json.dumps(data))
    return path, cfg, n_params


PREAMBLE = """
import sys, time, threading; sys.path.insert(0, {root!r})
from nodegen.compat import torchvision as torchvision_fix; torchvision_fix.apply()
import torch; torch.set_num_threads(1)
from diffusers import AutoencoderKL, SD3Transformer2DModel  # imports not timed
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
REPORT = """
dt = time.perf_counter() - t
size = sum(p.numel() * p.element_size() for m in mods for p in list(m.parameters()) + list(m.buffers()))
time.sleep(0.05); print(dt, base, max(peak[0], _rss()), size)
"""
OURS = PREAMBLE + """model, clip, vae = load_checkpoint({path!r})
mods = [model.unet, vae.vae]""" + REPORT
DIFFUSERS = PREAMBLE + """kw = dict(config={cfg!r}, local_files_only=True, torch_dtype=torch.float32)
tr = SD3Transformer2DModel.from_single_file({path!r}, subfolder="transformer", **kw)
va = AutoencoderKL.from_single_file({path!r}, subfolder="vae", **kw)
mods = [tr, va]""" + REPORT


def measure(path: Path, cfg: Path) -> dict:
    with open(path, "rb") as f:  # page cache warm for both
        while f.read(1 << 24):
            pass
    out = {}
    for name, code in (("nodegen", OURS), ("diffusers", DIFFUSERS)):
        res = subprocess.run([sys.executable, "-c", code.format(root=str(ROOT), path=str(path), cfg=str(cfg))],
                             capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        if res.returncode != 0:
            raise RuntimeError(f"{name} load failed:\n{res.stderr[-3000:]}")
        dt, base, peak, size = res.stdout.split()[-4:]
        out[name] = {"seconds": float(dt), "peak_rss_added_mib": (int(peak) - int(base)) / 1024,
                     "weights_mib": int(size) / 2**20}
    out["file_mib"] = path.stat().st_size / 2**20
    return out


def report(res: dict, n_params: int) -> str:
    lines = ["## Full-size SD 3.5 Medium loading (`python bench/load_sd35.py`)", "",
             f"{time.strftime('%Y-%m-%d')}, build machine ({os.cpu_count()} cores, {platform.machine()}), one torch "
             f"thread, page cache warm, each loader in a fresh process. Random weights, {n_params / 1e9:.2f} B "
             f"parameters (transformer + VAE), fp16 file of {res['file_mib']:,.0f} MiB, loaded to fp32 on the CPU.", "",
             "| loader | seconds | peak RSS added | weights in memory | peak / weights |", "|---|---:|---:|---:|---:|"]
    for name, label in (("nodegen", "nodegen `load_checkpoint`"),
                        ("diffusers", "diffusers `from_single_file` (transformer + VAE)")):
        r = res[name]
        lines.append(f"| {label} | {r['seconds']:.1f} | {r['peak_rss_added_mib']:,.0f} MiB | "
                     f"{r['weights_mib']:,.0f} MiB | {r['peak_rss_added_mib'] / r['weights_mib']:.2f} |")
    ratio = FLUX_PARAMS / n_params
    ours = res["nodegen"]
    lines += ["", f"Projected, not measured (Flux.1's 12 B transformer does not fit this machine in fp32): scaling "
              f"Medium's figures by the parameter ratio ({ratio:.1f}x), nodegen would load a Flux.1 transformer in about "
              f"{ours['seconds'] * ratio:.0f} s here with a peak of about {ours['peak_rss_added_mib'] * ratio / 1024:,.0f} "
              f"GiB in fp32 ({FLUX_PARAMS * 4 / 2**30:.0f} GiB of weights), about half of that as bf16 weights on a GPU host, "
              f"and a quarter with fp8 storage ({FLUX_PARAMS / 2**30:.0f} GiB).", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", type=Path, help="build the file in this folder and keep it")
    ap.add_argument("--append-results", action="store_true", help="append the table to bench/RESULTS.md")
    args = ap.parse_args()
    from nodegen.compat import torchvision as torchvision_fix

    torchvision_fix.apply()
    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="nodegen-sd35-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        path, cfg, n_params = build(folder)
        print(f"built {path} ({path.stat().st_size / 2**30:.2f} GiB) in {time.perf_counter() - t:.0f} s", flush=True)
        res = measure(path, cfg)
    print(json.dumps(res, indent=2))
    text = report(res, n_params)
    print(text)
    if args.append_results:
        with open(ROOT / "bench" / "RESULTS.md", "a", encoding="utf-8") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
