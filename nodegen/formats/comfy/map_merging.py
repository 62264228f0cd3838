"""ComfyUI's model merging nodes, CheckpointSave and LoraSave (Extract and Save Lora)."""

from nodegen.formats.comfy.node_map import nm
from nodegen.models.merge_blocks_flow import FLUX_BLOCKS, SD3_2B_BLOCKS, SD35_LARGE_BLOCKS, input_name

MAPS = [
    nm("ModelMergeSimple", "ModelMergeSimple", "ratio", "model"),
    nm("ModelMergeBlocks", "ModelMergeBlocks", "input middle out", "model"),
    nm("ModelMergeAdd", "ModelMergeAdd", "", "model"),
    nm("ModelMergeSubtract", "ModelMergeSubtract", "multiplier", "model"),
    nm("CLIPMergeSimple", "CLIPMergeSimple", "ratio", "clip"),
    nm("CLIPMergeAdd", "CLIPMergeAdd", "", "clip"),
    nm("CLIPMergeSubtract", "CLIPMergeSubtract", "multiplier", "clip"),
    nm("CheckpointSave", "CheckpointSave", "filename_prefix", ""),
    nm("LoraSave", "LoraSave", "filename_prefix rank lora_type bias_diff", ""),
]


def _block_map(comfy: str, prefixes: list[str], ours: str | None = None, export: bool = True):
    """ComfyUI's per-block merge nodes: one widget per original block prefix, our input named by
    :func:`nodegen.models.merge_blocks_flow.input_name`."""
    return nm(comfy, ours or comfy, " ".join(prefixes), "model", rename={p: input_name(p) for p in prefixes},
              **({} if export else {"export": False}))


def unet_blocks(inputs: int, middle: int, outputs: int) -> list[str]:
    """ModelMergeSD1/SD2/SDXL's block prefixes."""
    return (["time_embed.", "label_emb."] + [f"input_blocks.{i}." for i in range(inputs)]
            + [f"middle_block.{i}." for i in range(middle)] + [f"output_blocks.{i}." for i in range(outputs)]
            + ["out."])


MAPS += [_block_map("ModelMergeSD1", unet_blocks(12, 3, 12)), _block_map("ModelMergeSDXL", unet_blocks(9, 3, 9)),
         # ComfyUI's ModelMergeSD2 is ModelMergeSD1 under another name ("SD1 and SD2 have the same blocks")
         _block_map("ModelMergeSD2", unet_blocks(12, 3, 12), ours="ModelMergeSD1", export=False),
         _block_map("ModelMergeFlux1", FLUX_BLOCKS), _block_map("ModelMergeSD3_2B", SD3_2B_BLOCKS),
         _block_map("ModelMergeSD35_Large", SD35_LARGE_BLOCKS)]
