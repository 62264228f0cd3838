"""Model merging (lazy: weight patches, see :mod:`nodegen.models.merge`) and saving a checkpoint."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node

MM = lazy_import("nodegen.models.merge")

_CATEGORY = "advanced/model_merging"


def _ratio(name: str = "ratio"):
    return Input.float(name, 1.0, min=0.0, max=1.0, step=0.01,
                       description="Share of the first input (1 = only the first, 0 = only the second)")


def _multiplier():
    return Input.float("multiplier", 1.0, min=-10.0, max=10.0, step=0.01)


@node("ModelMergeSimple", category=_CATEGORY,
      description="Blend two models: ratio * model1 + (1 - ratio) * model2.",
      inputs=[Input.link("model1", T.MODEL), Input.link("model2", T.MODEL), _ratio()],
      outputs=[Output("model", T.MODEL)], keywords=("merge", "mix", "blend"))
def model_merge_simple(ctx, model1, model2, ratio):
    return MM.merge_simple(model1, model2, ratio)


@node("ModelMergeBlocks", category=_CATEGORY,
      description="Blend two models with one ratio for the input blocks, the middle block and the output side.",
      inputs=[Input.link("model1", T.MODEL), Input.link("model2", T.MODEL),
              _ratio("input"), _ratio("middle"), _ratio("out")],
      outputs=[Output("model", T.MODEL)], keywords=("merge", "block weights"))
def model_merge_blocks(ctx, model1, model2, input, middle, out):  # noqa: A002 - ComfyUI's names
    return MM.merge_blocks(model1, model2, {"input": input, "middle": middle, "out": out})


@node("ModelMergeAdd", category=_CATEGORY, description="Add the second model's weights to the first's.",
      inputs=[Input.link("model1", T.MODEL), Input.link("model2", T.MODEL)],
      outputs=[Output("model", T.MODEL)], keywords=("merge", "add difference"))
def model_merge_add(ctx, model1, model2):
    return MM.merge_add(model1, model2)


@node("ModelMergeSubtract", category=_CATEGORY,
      description="multiplier * (model1 - model2): the difference a fine-tune made (add it to another "
                  "model with ModelMergeAdd).",
      inputs=[Input.link("model1", T.MODEL), Input.link("model2", T.MODEL), _multiplier()],
      outputs=[Output("model", T.MODEL)], keywords=("merge", "add difference"))
def model_merge_subtract(ctx, model1, model2, multiplier):
    return MM.merge_subtract(model1, model2, multiplier)


@node("CLIPMergeSimple", category=_CATEGORY,
      description="Blend two text encoders: ratio * clip1 + (1 - ratio) * clip2.",
      inputs=[Input.link("clip1", T.CLIP), Input.link("clip2", T.CLIP), _ratio()],
      outputs=[Output("clip", T.CLIP)], keywords=("merge",))
def clip_merge_simple(ctx, clip1, clip2, ratio):
    return MM.merge_simple(clip1, clip2, ratio, "text encoder")


@node("CLIPMergeAdd", category=_CATEGORY, description="Add the second text encoder's weights to the first's.",
      inputs=[Input.link("clip1", T.CLIP), Input.link("clip2", T.CLIP)], outputs=[Output("clip", T.CLIP)])
def clip_merge_add(ctx, clip1, clip2):
    return MM.merge_add(clip1, clip2, "text encoder")


@node("CLIPMergeSubtract", category=_CATEGORY, description="multiplier * (clip1 - clip2).",
      inputs=[Input.link("clip1", T.CLIP), Input.link("clip2", T.CLIP), _multiplier()],
      outputs=[Output("clip", T.CLIP)])
def clip_merge_subtract(ctx, clip1, clip2, multiplier):
    return MM.merge_subtract(clip1, clip2, multiplier, "text encoder")


@node("CheckpointSave", category=_CATEGORY, output=True,
      description="Save model, text encoder and VAE (with LoRAs and merges baked in) as one "
                  ".safetensors checkpoint in the original layout, in the output folder.",
      inputs=[Input.link("model", T.MODEL), Input.link("clip", T.CLIP), Input.link("vae", T.VAE),
              Input.string("filename_prefix", "checkpoints/nodegen",
                           description="File name start inside the output folder; never overwrites")],
      keywords=("save", "export", "merge"))
def checkpoint_save(ctx, model, clip, vae, filename_prefix):
    from nodegen.models.checkpoint_save import checkpoint_state_dict, save_exclusive

    path = save_exclusive(checkpoint_state_dict(model, clip, vae), ctx.output_dir, filename_prefix)
    ctx.ui(paths=[str(path)])
    return {}


def _block_prefixes(inputs: int, middle: int, outputs: int) -> list[str]:
    """ComfyUI's per-block merge keys (original UNet names, in its widget order)."""
    return (["time_embed.", "label_emb."] + [f"input_blocks.{i}." for i in range(inputs)]
            + [f"middle_block.{i}." for i in range(middle)] + [f"output_blocks.{i}." for i in range(outputs)]
            + ["out."])


def our_name(prefix: str) -> str:
    """``input_blocks.3.`` -> ``input_blocks_3`` (input names hold no dots)."""
    return prefix.rstrip(".").replace(".", "_")


SD1_BLOCKS = _block_prefixes(12, 3, 12)
SDXL_BLOCKS = _block_prefixes(9, 3, 9)


def _per_block_node(type_name: str, family: str, prefixes: list[str]):
    @node(type_name, category=_CATEGORY,
          description=f"Blend two {family} models with a ratio per UNet block (1 = only model1).",
          inputs=[Input.link("model1", T.MODEL), Input.link("model2", T.MODEL),
                  *(_ratio(our_name(p)) for p in prefixes)],
          outputs=[Output("model", T.MODEL)], keywords=("merge", "block weights"))
    def merge(ctx, model1, model2, **ratios):
        return MM.merge_blocks(model1, model2, {p: float(ratios[our_name(p)]) for p in prefixes})

    return merge


model_merge_sd1 = _per_block_node("ModelMergeSD1", "SD1.x", SD1_BLOCKS)
model_merge_sdxl = _per_block_node("ModelMergeSDXL", "SDXL", SDXL_BLOCKS)
