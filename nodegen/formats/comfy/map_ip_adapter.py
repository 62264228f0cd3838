"""ComfyUI_IPAdapter_plus's everyday nodes (by cubiq) -> ours: the model loader, the unified loader, the
apply nodes and the embeddings helpers; widget order from the pack's INPUT_TYPES (IPAdapterPlus.py)."""

from nodegen.formats.comfy.node_map import nm

MAPS = [
    nm("IPAdapterModelLoader", "IPAdapterLoader", "ipadapter_file", "ipadapter"),
    nm("IPAdapterUnifiedLoader", "IPAdapterUnifiedLoader", "preset", "model ipadapter"),
    nm("IPAdapter", "IPAdapter", "weight start_at end_at weight_type", "model"),
    nm("IPAdapterAdvanced", "IPAdapterAdvanced",
       "weight weight_type combine_embeds start_at end_at embeds_scaling", "model"),
    nm("IPAdapterEncoder", "IPAdapterEncoder", "weight", "pos_embed neg_embed"),
    nm("IPAdapterCombineEmbeds", "IPAdapterCombineEmbeds", "method", "embeds"),
    nm("IPAdapterEmbeds", "IPAdapterEmbeds", "weight weight_type start_at end_at embeds_scaling", "model"),
]
