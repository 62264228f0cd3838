"""ComfyUI's model merging nodes and CheckpointSave."""

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
]
