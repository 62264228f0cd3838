"""Checkpoint loading: time and peak memory of nodegen's loader against diffusers' from_single_file,
on a full-size SD1.5 architecture with random weights saved as an fp16 single file (2.0 GiB).

Each load runs in a fresh process (imports not timed), the file is read once first so the page
cache is warm for both, and the two loaders alternate. Peak RSS is sampled every 5 ms. Target
(issue 12): peak RSS added at most 1.15x the weights in memory (fp32 on the CPU: 2x the file),
load time at most diffusers'.

    python bench/loading.py [--repeat 2] [--keep DIR]   # DIR keeps the 2 GB file between runs
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def weights_mib(path: Path) -> float:
    """Bytes of the file's tensors once upcast to fp32 (what the CPU holds), in MiB."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    total = 0
    for k, v in header.items():
        if k == "__metadata__":
            continue
        count = 1
        for d in v["shape"]:
            count *= d
        total += count * (4 if v["dtype"] in ("F16", "BF16", "F32") else 8 if v["dtype"] in ("I64", "F64") else 1)
    return total / 2**20


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--keep", default="/tmp/nodegen-bench-sd15", help="folder for the built file")
    args = ap.parse_args()
    from nodegen.compat import torchvision as torchvision_fix

    torchvision_fix.apply()
    from pipeline_overhead import build_full, time_loading

    folder = Path(args.keep)
    ckpt, cfg = folder / "sd15_random.safetensors", folder / "sd15_config"
    if not ckpt.is_file() or not cfg.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        ckpt, cfg = build_full(folder)
        print(f"built {ckpt} in {time.perf_counter() - t:.0f} s")
    load = os.getloadavg()[0]
    ld = time_loading(ckpt, cfg, args.repeat)
    w = weights_mib(ckpt)
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, python {platform.python_version()}, load average {load:.1f}; "
          f"file {ld['file_mib']:.0f} MiB, weights in memory (fp32) {w:.0f} MiB")
    for name in ("nodegen", "diffusers"):
        r = ld[name]
        print(f"  {name:<9} {r['seconds']:.2f} s, peak RSS +{r['peak_rss_added_mib']:.0f} MiB "
              f"({r['peak_rss_added_mib'] / w:.2f}x the weights)")


if __name__ == "__main__":
    main()
