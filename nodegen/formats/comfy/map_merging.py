"""ComfyUI's model merging nodes, CheckpointSave and LoraSave (Extract and Save Lora)."""

from nodegen.formats.comfy.node_map import nm

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


def _per_block(comfy: str, inputs: int, middle: int, outputs: int):
    """ComfyUI's ModelMergeSD1/SDXL: one widget per block, named by its original prefix."""
    prefixes = (["time_embed.", "label_emb."] + [f"input_blocks.{i}." for i in range(inputs)]
                + [f"middle_block.{i}." for i in range(middle)] + [f"output_blocks.{i}." for i in range(outputs)]
                + ["out."])
    return nm(comfy, comfy, " ".join(prefixes), "model",
              rename={p: p.rstrip(".").replace(".", "_") for p in prefixes})


MAPS += [_per_block("ModelMergeSD1", 12, 3, 12), _per_block("ModelMergeSDXL", 9, 3, 9)]


def _flow_blocks(comfy: str, head: str, name: str, count: int, tail: str):
    """ComfyUI's ModelMergeFlux1 / SD3_2B / SD35_Large: one widget per original block prefix."""
    prefixes = head.split() + [f"{name}.{i}." for i in range(count)] + tail.split()
    return nm(comfy, comfy, " ".join(prefixes), "model",
              rename={p: p.rstrip(".").replace(".", "_") for p in prefixes})


_SD3_HEAD = "pos_embed. x_embedder. context_embedder. y_embedder. t_embedder."
MAPS += [_flow_blocks("ModelMergeFlux1", "img_in. time_in. guidance_in vector_in. txt_in.", "double_blocks", 19,
                      " ".join(f"single_blocks.{i}." for i in range(38)) + " final_layer."),
         _flow_blocks("ModelMergeSD3_2B", _SD3_HEAD, "joint_blocks", 24, "final_layer."),
         _flow_blocks("ModelMergeSD35_Large", _SD3_HEAD, "joint_blocks", 38, "final_layer.")]
