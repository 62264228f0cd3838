"""LoraSave ("Extract and Save Lora", as ComfyUI's): a LoRA file from the difference between two
models (ModelMergeSubtract / CLIPMergeSubtract), written to ``loras/`` in the output folder; see
:mod:`nodegen.models.lora_extract`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, node

from .image_io import _check_target, _output_folder  # SaveImage's target check and fingerprint

_CATEGORY = "advanced/model_merging"
_NODE = "LoraSave"
#: ComfyUI's file names: ``<prefix>_00001_.safetensors``.
_SUFFIX = "_.safetensors"


@node(_NODE, category=_CATEGORY, output=True, fingerprint=_output_folder, display_name="Extract and Save Lora",
      description="Save the difference a MODEL / CLIP holds (from ModelMergeSubtract / CLIPMergeSubtract) as a "
                  "LoRA file: low-rank factors by SVD, or whole differences; never overwrites a file.",
      inputs=[Input.string("filename_prefix", "loras/ComfyUI_extracted_lora", env_check=_check_target,
                           description="File name start inside the output folder (loras/... to load it back)"),
              Input.int("rank", 8, min=1, max=4096, step=1,
                        description="LoRA rank: how many singular directions each weight keeps"),
              Input.choice("lora_type", ["standard", "full_diff"],
                           description="standard: low-rank factors; full_diff: each whole difference"),
              Input.bool("bias_diff", True, description="Also store the bias and norm differences whole"),
              Input.link("model_diff", T.MODEL, optional=True,
                         description="The ModelMergeSubtract output to turn into a LoRA"),
              Input.link("text_encoder_diff", T.CLIP, optional=True,
                         description="The CLIPMergeSubtract output to turn into a LoRA")],
      keywords=("lora", "extract", "svd", "export", "difference"))
def lora_save(ctx, filename_prefix, rank, lora_type, bias_diff, model_diff=None, text_encoder_diff=None):
    from nodegen.models.lora_extract import ExtractError, extract_lora

    if model_diff is None and text_encoder_diff is None:
        raise ValueError(f"{_NODE}: inputs 'model_diff' and 'text_encoder_diff' are both unconnected: connect a "
                         "MODEL (from ModelMergeSubtract) or a CLIP (from CLIPMergeSubtract), or both")
    try:
        lora = extract_lora(model_diff, text_encoder_diff, rank=rank, lora_type=lora_type, bias_diff=bias_diff,
                            device=ctx.device or "cpu", step=ctx.progress)
    except ExtractError as e:
        raise ValueError(f"{_NODE}: input '{e.what}': {e}") from None
    path = _write(ctx, lora.state_dict, filename_prefix)
    ctx.ui(paths=[str(path)])
    return {}


def _write(ctx, state_dict: dict, filename_prefix: str):
    from safetensors.torch import save

    from nodegen.formats.png_save import save_exclusive

    data = save(state_dict)  # no metadata, as ComfyUI writes these files
    try:
        return save_exclusive(lambda f: f.write(data), ctx.output_dir, filename_prefix, _SUFFIX)
    except (OSError, ValueError) as e:
        reason = f"{e.strerror}: {e.filename}" if isinstance(e, OSError) and e.strerror else str(e)
        raise OSError(f"{_NODE}: input 'filename_prefix': cannot save the LoRA in {ctx.output_dir} as "
                      f"{filename_prefix!r} ({reason})") from e
