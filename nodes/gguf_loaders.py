"""GGUF loaders, as city96's ComfyUI-GGUF custom nodes name them: a diffusion model (Flux.1, Chroma
(whose GGUF files say architecture "flux"), SD3 / SD 3.5, SD1 / SDXL UNets) and T5 text encoders from ``.gguf`` files (quantized Q8_0, Q4_K, ...), the
CLIP loaders also taking the usual safetensors files beside them (a GGUF T5 with a safetensors
CLIP-L is the common Flux pairing). A Flux / SD3 model keeps its quantized Linear weights as GGUF
blocks and dequantizes them one layer at a time, per call (:mod:`nodegen.models.gguf_linear`);
everything else (SD1 / SDXL UNets, T5 encoders, biases and norms) is dequantized once, at load, to
the compute dtype (:mod:`nodegen.models.gguf_file`). The models then compute as UNETLoader's and
DualCLIPLoader's.
"""

from __future__ import annotations

from pathlib import Path

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node
from nodegen.models.paths import MODEL_EXTENSIONS
from nodegen.models.resolve import choices_for, fingerprint_for, resolve_model

from .flow import CLIP_TYPES, ONE_CLIP_TYPES, _manager

GGUF = (".gguf",)
#: ``general.architecture`` values nodegen runs (None: no field, stable-diffusion.cpp's files:
#: the architecture is read from the keys)
RUN_IMAGE_ARCHS = (None, "flux", "sd3", "sd1", "sdxl")
RUN_TEXT_ARCHS = ("t5", "t5encoder")


def _gguf_arch(path: Path, node_type: str, input_name: str, name: str) -> str | None:
    from nodegen.models.gguf_file import is_gguf, read_arch

    if not is_gguf(path):
        raise ValueError(f"{node_type}: {input_name} {name!r} ({path}) is not a GGUF file; load safetensors "
                         f"files with the usual loaders (UNETLoader, CLIPLoader, DualCLIPLoader)")
    try:
        return read_arch(path)
    except ValueError as e:
        raise ValueError(f"{node_type}: {input_name} {name!r}: {e}") from e


@node("UnetLoaderGGUF", category="loaders",
      description="Load a diffusion model from a GGUF file (Flux.1, Chroma, SD3 / SD 3.5, SD1 / SDXL; quantized or not).",
      inputs=[Input.file("unet_name", "diffusion_models", choices=choices_for("diffusion_models", GGUF),
                         description="GGUF diffusion model in the diffusion_models (or unet) folder")],
      outputs=[Output("model", T.MODEL)], fingerprint=fingerprint_for("diffusion_models", "unet_name"),
      keywords=("gguf", "flux", "sd3", "unet", "quantized", "load"))
def unet_loader_gguf(ctx, unet_name):
    path = resolve_model(ctx.paths, "diffusion_models", unet_name, "UnetLoaderGGUF", "unet_name")
    arch = _gguf_arch(path, "UnetLoaderGGUF", "unet_name", unet_name)
    if arch not in RUN_IMAGE_ARCHS:
        what = "a text encoder" if arch in RUN_TEXT_ARCHS else "a model"
        raise ValueError(f"UnetLoaderGGUF: unet_name {unet_name!r} ({path}) is {what} of architecture {arch!r}, "
                         f"which nodegen does not run here (it runs {', '.join(a for a in RUN_IMAGE_ARCHS if a)})")
    try:
        return _manager(ctx).load_diffusion_model(path)
    except ValueError as e:
        raise ValueError(f"UnetLoaderGGUF: unet_name {unet_name!r}: {e}") from e


def _clip_file(name: str):
    return Input.file(name, "text_encoders", choices=choices_for("text_encoders", (*MODEL_EXTENSIONS, *GGUF)),
                      description="Text encoder (GGUF or safetensors) in the text_encoders (or clip) folder")


def _clips(ctx, node_type: str, names: list[tuple[str, str]], family: str):
    paths = []
    for inp, name in names:
        path = resolve_model(ctx.paths, "text_encoders", name, node_type, inp)
        if path.suffix.lower() in GGUF:
            arch = _gguf_arch(path, node_type, inp, name)
            if arch not in RUN_TEXT_ARCHS:
                raise ValueError(f"{node_type}: {inp} {name!r} ({path}) is a GGUF file of architecture {arch!r}; "
                                 f"the GGUF text encoders nodegen runs are T5 ({', '.join(RUN_TEXT_ARCHS)})")
        paths.append(path)
    try:
        return _manager(ctx).load_text_encoders(paths, family)
    except ValueError as e:
        raise ValueError(f"{node_type}: {e}") from e


@node("CLIPLoaderGGUF", category="loaders", description="Load one text encoder file (GGUF T5-XXL, or safetensors).",
      inputs=[_clip_file("clip_name"), Input.choice("type", ONE_CLIP_TYPES, "sd3",
                                                    description="The model family (chroma: a T5-XXL file)")],
      outputs=[Output("clip", T.CLIP)], fingerprint=fingerprint_for("text_encoders", "clip_name"),
      keywords=("gguf", "t5", "clip", "text encoder"))
def clip_loader_gguf(ctx, clip_name, type="sd3"):  # noqa: A002 - ComfyUI's input name
    return _clips(ctx, "CLIPLoaderGGUF", [("clip_name", clip_name)], type)


@node("DualCLIPLoaderGGUF", category="loaders",
      description="Load two text encoder files, GGUF or safetensors (Flux: CLIP-L + T5-XXL).",
      inputs=[_clip_file("clip_name1"), _clip_file("clip_name2"),
              Input.choice("type", CLIP_TYPES, "flux", description="The model family")],
      outputs=[Output("clip", T.CLIP)], keywords=("gguf", "t5", "clip", "flux", "text encoder"))
def dual_clip_loader_gguf(ctx, clip_name1, clip_name2, type="flux"):  # noqa: A002
    return _clips(ctx, "DualCLIPLoaderGGUF", [("clip_name1", clip_name1), ("clip_name2", clip_name2)], type)


@node("TripleCLIPLoaderGGUF", category="loaders",
      description="Load SD3's three text encoders, GGUF or safetensors (CLIP-L, CLIP-G, T5-XXL).",
      inputs=[_clip_file("clip_name1"), _clip_file("clip_name2"), _clip_file("clip_name3")],
      outputs=[Output("clip", T.CLIP)], keywords=("gguf", "t5", "clip", "sd3", "text encoder"))
def triple_clip_loader_gguf(ctx, clip_name1, clip_name2, clip_name3):
    return _clips(ctx, "TripleCLIPLoaderGGUF", [("clip_name1", clip_name1), ("clip_name2", clip_name2),
                                                ("clip_name3", clip_name3)], "sd3")
