"""CLIP text encoder on the CPU: float32 against half-precision storage and half-precision compute.

Builds a full-size text encoder with random weights rounded to fp16 (as an fp16 checkpoint holds
them) and encodes a batch of 77-token prompts four ways, one torch thread, process CPU time:

* ``fp32``: weights upcast at load (what nodegen did before keeping the file's dtype);
* ``fp16 storage``: weights kept in fp16, each layer upcast as it runs, computing in fp32
  (what nodegen does on the CPU now; must equal ``fp32`` exactly);
* ``fp16 compute`` / ``bf16 compute``: weights and activations in half precision.

Reports seconds per encode (median of ``--repeat``), weight memory, and the largest absolute and
relative (to the fp32 output's standard deviation) error of the penultimate hidden layer, the
final normed layer and the pooled output against ``fp32``.

Usage: ``python bench/text_encoder_dtype.py [--model clip_l|open_clip_h|open_clip_g] [--repeat 5]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from nodegen.models import clip_text_model as ctm

MODELS = {
    "clip_l": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                   hidden_act="quick_gelu", projection_dim=768),
    "open_clip_h": dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
                        hidden_act="gelu", projection_dim=1024),
    "open_clip_g": dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                        hidden_act="gelu", projection_dim=1280),
}


def _random_state(cfg: ctm.ClipTextConfig) -> dict[str, torch.Tensor]:
    """Random weights of realistic scale, rounded to fp16 (kept in fp16)."""
    torch.manual_seed(0)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in ctm.ClipTextModelWithProjection(cfg).state_dict().items()}
    out = {}
    for k, shape in shapes.items():
        if k.endswith("bias"):
            t = torch.randn(shape) * 0.02
        elif "layer_norm" in k:
            t = 1.0 + torch.randn(shape) * 0.05
        else:
            t = torch.randn(shape) * (shape[-1] ** -0.5 if len(shape) > 1 else 0.02)
        out[k] = t.to(torch.float16)
    return out


def _run(model, ids: torch.Tensor, repeat: int) -> tuple[float, tuple[torch.Tensor, ...]]:
    times = []
    with torch.no_grad():
        for _ in range(repeat):
            t = time.process_time()
            out = model(ids, output_hidden_states=True)
            times.append(time.process_time() - t)
    return statistics.median(times), (out.hidden_states[-2], out.last_hidden_state, out.text_embeds)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", choices=sorted(MODELS), default="clip_l")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--batch", type=int, default=2, help="prompts per encode (positive + negative: 2)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = ctm.ClipTextConfig(**MODELS[args.model])
    half = _random_state(cfg)
    ids = torch.randint(0, 49406, (args.batch, 77))
    ids[:, 0], ids[:, 40:] = 49406, 49407

    variants = {
        "fp32": lambda: ctm.build(cfg, True, {k: v.float() for k, v in half.items()}),
        "fp16 storage": lambda: ctm.build(cfg, True, dict(half)),
        "fp16 compute": lambda: ctm.build(cfg, True, dict(half)),
        "bf16 compute": lambda: ctm.build(cfg, True, {k: v.to(torch.bfloat16) for k, v in half.items()}),
    }
    results = {}
    for name, make in variants.items():
        model = make()
        original = ctm.compute_dtype_for
        if "compute" in name:  # bypass the float32-on-CPU rule
            ctm.compute_dtype_for = lambda w: w.dtype
        try:
            _run(model, ids, 1)  # warm-up
            secs, outs = _run(model, ids, args.repeat)
        finally:
            ctm.compute_dtype_for = original
        mib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
        results[name] = (secs, mib, [o.float() for o in outs])
    ref = results["fp32"][2]
    print(f"{args.model}, batch {args.batch} x 77 tokens, 1 thread, process CPU s per encode "
          f"(median of {args.repeat}); errors vs fp32 (max abs / max abs over the output's std)")
    print("| variant | s / encode | weights MiB | penultimate | final normed | pooled (projected) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, (secs, mib, outs) in results.items():
        errs = []
        for o, r in zip(outs, ref, strict=True):
            e = (o - r).abs().max().item()
            errs.append(f"{e:.2e} / {e / r.std().item():.2e}")
        print(f"| {name} | {secs:.3f} | {mib:.0f} | {' | '.join(errs)} |")


if __name__ == "__main__":
    main()
