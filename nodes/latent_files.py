"""SaveLatent and LoadLatent: latents to and from ComfyUI's ``.latent`` files.

A ``.latent`` file holds ComfyUI's convention, the VAE's raw latents (:mod:`nodegen.formats.latent_file`).
nodegen's 4-channel LATENTs are scaled (diffusers' convention) and record their scale
(:mod:`nodegen.diffusion.latent_scale`: a sampler's output its model family, an encode node's output
the VAE's scale). SaveLatent divides by that scale, so ComfyUI loads the latent it would have made
itself; LoadLatent gives the raw latents with the record ``vae_scale = 1``, so a sampler scales them
with its model family's factor (as ComfyUI's model does: SD1 0.18215, SDXL 0.13025; SD3 and Flux
latents are raw in both programs) and a decode node decodes them as they are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

from .image_io import _check_target, _output_folder  # SaveImage's target check and fingerprint

torch = lazy_import("torch")


# -- LoadLatent --------------------------------------------------------------------------------
def _input_latents(env) -> list[str]:
    """The ``.latent`` files under the input folder (the choices shown; any name the path policy
    allows is accepted)."""
    folder = getattr(env, "input_dir", None)
    if not folder or not os.path.isdir(folder):
        return []
    root = Path(folder)
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.latent") if p.is_file())


def _latent_path(env, name: str) -> Path:
    """The file LoadLatent's input ``latent`` names: resolved by the engine's input-file policy
    (the input folder, the workflow's folder, configured image folders; ComfyUI's ``[output]``
    suffix), or as a plain path when there is no engine."""
    if env is None:
        p = Path(name).expanduser()
        if p.is_file():
            return p
        raise FileNotFoundError(f"input 'latent': latent file {name!r} not found")
    try:
        path = env.resolve_file("input", name)
    except ValueError as e:  # found, but a folder, FIFO or device
        raise ValueError(f"input 'latent': {e}") from e
    if path is None:
        raise FileNotFoundError(f"input 'latent': latent file {name!r} not found ({env.describe_files('input')})")
    return Path(path)


def _file_sha256(inputs: dict, env) -> str:
    from nodegen.kernel.files import regular_file_sha256

    return regular_file_sha256(_latent_path(env, inputs.get("latent")), "latent file")


@node("LoadLatent", category="latent",
      description="Load latents from a .latent file (ComfyUI's format) in the input folder.",
      inputs=[Input.file("latent", "input", choices=_input_latents,
                         description="A .latent file in the input folder")],
      outputs=[Output("latent", T.LATENT)], fingerprint=_file_sha256,
      keywords=("open", "read", "file", "comfyui", "safetensors"))
def load_latent(ctx, latent):
    from nodegen.diffusion.latent_scale import VAE_SCALE_KEY
    from nodegen.formats.latent_file import LatentFileError, read_latent

    path = _latent_path(getattr(ctx, "env", None), latent)
    try:
        raw, _metadata = read_latent(path)
    except LatentFileError as e:
        raise ValueError(f"input 'latent': {e}") from e
    if raw.ndim != 4:
        raise ValueError(f"input 'latent': {str(path)!r} holds latents of shape {tuple(raw.shape)}; a LATENT "
                         f"here is [batch, channels, height, width] (video and audio latents are not supported)")
    ctx.ui(source=[str(path)])
    return {"samples": raw, VAE_SCALE_KEY: 1.0}


# -- SaveLatent --------------------------------------------------------------------------------
def comfy_latents(latent) -> torch.Tensor:
    """``latent``'s samples in ComfyUI's convention (raw VAE latents), float32 on the CPU: divided
    by the scale the LATENT records. A 4-channel LATENT that records no scale is refused unless it
    is all zeros (an empty latent: every scale gives the same file)."""
    from nodegen.diffusion.latent_scale import samples_scale

    if not isinstance(latent, dict) or not torch.is_tensor(latent.get("samples")):
        raise TypeError("input 'samples' must be a LATENT (a dict with 'samples')")
    samples = latent["samples"].detach().to("cpu", torch.float32)
    scale = samples_scale(latent)
    if scale is None:
        if not torch.count_nonzero(samples):
            return samples
        raise ValueError("input 'samples': this 4-channel LATENT does not record its scale (it was made by "
                         "none of the samplers, VAE encode nodes or LoadLatent), so the raw latents a "
                         ".latent file holds cannot be known; save a sampler's or an encode node's output")
    return samples if scale == 1.0 else samples / scale


def _metadata(ctx, batch_size: int) -> dict[str, str]:
    """Provenance as safetensors metadata: the workflow and the values used (as SaveImage embeds
    them in PNGs) and, where the workflow exports to ComfyUI, its ``prompt`` as ComfyUI writes it."""
    from nodegen.formats.png import VALUES_KEY, WORKFLOW_KEY, values_used

    workflow = getattr(ctx, "workflow", None)
    if workflow is None:
        return {}
    values = values_used(workflow, ctx.node_id, 0, ctx.paths)
    del values["batch_index"]  # the file holds the whole batch
    values["batch_size"] = batch_size
    out = {WORKFLOW_KEY: json.dumps(workflow, ensure_ascii=False),
           VALUES_KEY: json.dumps(values, ensure_ascii=False, default=str)}
    from nodegen.formats.comfy.export import export_api

    try:
        out["prompt"] = json.dumps(export_api(workflow))
    except ValueError:  # a node ComfyUI does not have: nodegen's record only
        pass
    return out


@node("SaveLatent", category="latent", output=True, fingerprint=_output_folder,
      description="Save latents as a .latent file (ComfyUI's format) in the output folder, with the "
                  "workflow embedded; never overwrites a file.",
      inputs=[Input.link("samples", T.LATENT),
              Input.string("filename_prefix", "latents/nodegen", env_check=_check_target,
                           description="File name start; may contain sub-folders of the output folder")],
      keywords=("write", "export", "file", "comfyui", "safetensors"))
def save_latent(ctx, samples, filename_prefix):
    from nodegen.formats.latent_file import write_latent_exclusive

    raw = comfy_latents(samples)
    try:
        path = write_latent_exclusive(raw, ctx.output_dir, filename_prefix, _metadata(ctx, raw.shape[0]))
    except (OSError, ValueError) as e:
        reason = f"{e.strerror}: {e.filename}" if isinstance(e, OSError) and e.strerror else str(e)
        raise OSError(f"input 'filename_prefix': cannot save the latent in {ctx.output_dir} as "
                      f"{filename_prefix!r} ({reason})") from e
    ctx.ui(paths=[str(path)])
    return {}
