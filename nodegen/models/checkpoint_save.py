"""Save a MODEL + CLIP + VAE as one original-layout (LDM "single file") ``.safetensors``
checkpoint, with every patch (LoRA, merges) baked in, as ComfyUI's CheckpointSave.

The layout is :func:`nodegen.models.ldm_export.convert_pipeline_to_ldm`'s, so the loader (and
other tools) read the file back. SD2 files keep a 24th OpenCLIP layer that SD2 does not use
(the loader drops it, as diffusers does); it is written as a copy of the 23rd so the file has
the shape of a real SD2 checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from nodegen.models.ldm_export import convert_pipeline_to_ldm


def checkpoint_state_dict(model, clip, vae) -> dict[str, torch.Tensor]:
    """The LDM state dict of the patched components (weights as they are used)."""
    family = model.family
    if clip.family != family:
        raise ValueError(f"the CLIP ({clip.family}) does not belong to the model ({family})")
    with model.use("cpu") as unet, clip.use("cpu") as encoders, vae.use("cpu") as v:
        enc = dict(zip(clip.encoder_names, encoders, strict=True))
        extra = _sd2_extra_layer(enc["text_encoder"]) if family == "sd2" else None
        sd = convert_pipeline_to_ldm(unet, v, enc.get("text_encoder"), family, enc.get("text_encoder_2"),
                                     extra_text_layer=extra)
        # copies: the patched weights go back to the originals when the blocks end; one float dtype
        # for the file, the widest the components hold (text encoders may be kept in half precision
        # on the CPU while the UNet is float32: nodegen.models.clip_text_load)
        return cpu_copies(sd)


def cpu_copies(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached CPU copies in one float dtype, the widest the tensors hold."""
    widest = max((t.dtype for t in sd.values() if t.is_floating_point()), key=lambda d: torch.finfo(d).bits,
                 default=torch.float32)
    return {k: t.detach().to("cpu", widest if t.is_floating_point() else t.dtype).contiguous().clone()
            for k, t in sd.items()}


def _sd2_extra_layer(encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """OpenCLIP entries of a copy of the encoder's last layer (see the module doc)."""
    from nodegen.models.ldm_export import open_clip_to_ldm

    te = {k.removeprefix("text_model."): v.detach() for k, v in encoder.state_dict().items()}
    last = max(int(k.split(".")[2]) for k in te if k.startswith("encoder.layers."))
    one = {k.replace(f"layers.{last}.", "layers.0."): v for k, v in te.items()
           if k.startswith(f"encoder.layers.{last}.")}
    return {k.split("resblocks.0.", 1)[1]: v for k, v in open_clip_to_ldm(one, prefix="").items()
            if "resblocks.0." in k}


def save_exclusive(sd: dict[str, torch.Tensor], folder: str | os.PathLike, prefix: str,
                   metadata: dict[str, str] | None = None) -> Path:
    """Write ``folder/<prefix>_00001_.safetensors`` (ComfyUI's naming) with the next free counter;
    never overwrites. ``prefix`` may hold sub-folders but must stay inside ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder).resolve()
    if not prefix.strip() or os.path.isabs(prefix) or prefix.startswith("~"):
        raise ValueError(f"the file name prefix {prefix!r} must be a relative name inside the output folder")
    target = (folder / prefix).parent.resolve()
    if target != folder and folder not in target.parents:
        raise ValueError(f"the file name prefix {prefix!r} leads outside the output folder {folder}")
    target.mkdir(parents=True, exist_ok=True)
    stem = Path(prefix).name
    counter = 1
    for p in target.glob(f"{stem}_*_.safetensors"):
        tail = p.name[len(stem) + 1: -len("_.safetensors")]
        if tail.isdigit():
            counter = max(counter, int(tail) + 1)
    while True:
        path = target / f"{stem}_{counter:05d}_.safetensors"
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            counter += 1
            continue
        os.close(fd)
        save_file(sd, str(path), metadata=metadata or {"format": "pt"})
        return path
