"""AddNoise: noise a latent to the level a schedule starts from (ComfyUI's custom-sampling node),
for unsampling / re-noising workflows."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

torch = lazy_import("torch")


@node("AddNoise", category="sampling/custom",
      description="Add the NOISE's seeded noise to a latent at the strength the schedule spans "
                  "(|first sigma - last sigma|).",
      inputs=[Input.link("model", T.MODEL), Input.link("noise", T.NOISE), Input.link("sigmas", T.SIGMAS),
              Input.link("latent_image", T.LATENT)],
      outputs=[Output("latent", T.LATENT)], keywords=("renoise", "unsample"))
def add_noise(ctx, model, noise, sigmas, latent_image):
    from nodegen.diffusion.noise import prepare_noise

    if not isinstance(latent_image, dict) or not torch.is_tensor(latent_image.get("samples")):
        raise TypeError("input 'latent_image' must be a LATENT")
    seed = getattr(noise, "seed", None)
    if seed is None:
        raise TypeError("input 'noise' must be a NOISE (RandomNoise or DisableNoise)")
    sig = torch.as_tensor(sigmas, dtype=torch.float32).reshape(-1)
    if len(sig) == 0:
        return latent_image
    samples = latent_image["samples"].float()
    if getattr(noise, "add", True):
        n, _ = prepare_noise(samples, int(seed), latent_image.get("batch_index"))
    else:
        n = torch.zeros_like(samples)
    scale = float((sig[0] - sig[-1]).abs()) if len(sig) > 1 else float(sig[0])
    out = dict(latent_image)
    out["samples"] = torch.nan_to_num(samples + n.to(samples) * scale, nan=0.0, posinf=0.0, neginf=0.0)
    return out
