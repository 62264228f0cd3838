"""Sweep throughput with the demo model: a 64-seed sweep of graphs/txt2img.json (64x64, 20 steps)
with 1 and 2 local workers and with Ray on 2 CPUs (2 actors). Reports images per second (first
job included: each worker loads the model once) and the share of wall time spent outside the
sampler: 1 - (sampler seconds summed over jobs) / (wall seconds x workers).

    python bench/sweep_throughput.py [--seeds 64] [--skip-ray]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from nodegen.sweep.driver import SweepOptions, run_sweep  # noqa: E402


def one(label: str, seeds: int, out: Path, workers: int, ray: str | None) -> dict:
    opts = SweepOptions(str(ROOT / "graphs" / "txt2img.json"), [f"Sampler.seed=1..{seeds}"], out=str(out),
                        workers=workers, ray=ray, device="cpu", threads=1)
    t0 = time.perf_counter()
    report = run_sweep(opts)
    wall = time.perf_counter() - t0
    sampler = sum(r.get("timings", {}).get("5", 0.0) for r in report.records)
    assert report.done == seeds, report
    return {"backend": label, "images": seeds, "wall_s": round(wall, 2),
            "images_per_s": round(seeds / wall, 2),
            "outside_sampler": round(1 - sampler / (wall * workers), 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=64)
    ap.add_argument("--skip-ray", action="store_true")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(one("1 local worker", args.seeds, Path(tmp) / "w1", 1, None))
        rows.append(one("2 local workers", args.seeds, Path(tmp) / "w2", 2, None))
        if not args.skip_ray:
            import ray

            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                     runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
            rows.append(one("Ray, 2 CPUs (2 actors)", args.seeds, Path(tmp) / "ray", 2, "local"))
            ray.shutdown()
    print(json.dumps({"rows": rows, "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, load average "
                      f"{os.getloadavg()[0]:.1f}", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
                     indent=2))


if __name__ == "__main__":
    main()
