"""Block-wise merging of the flow transformers (ComfyUI's ModelMergeFlux1, ModelMergeSD3_2B and
ModelMergeSD35_Large): one ratio per block, named by the original checkpoint layout (Black Forest
Labs' Flux names, Stability's MMDiT names) as ComfyUI names them.

nodegen holds these models as diffusers' ``FluxTransformer2DModel`` / ``SD3Transformer2DModel``, so
each diffusers parameter is given its original block name first (the inverse of the conversions in
:mod:`nodegen.models.flux_convert` and diffusers' ``convert_sd3_transformer_checkpoint_to_diffusers``);
then ComfyUI's rule picks the ratio (:func:`nodegen.models.merge.block_ratio`: the longest matching
prefix, else the first block's ratio). Weights are ``ratio * model1 + (1 - ratio) * model2``.

Only the block part of a name is translated (``transformer_blocks.3.attn.to_q.weight`` ->
``double_blocks.3.attn.to_q.weight``): the ratio depends on nothing else. A diffusers weight split
from one original tensor (Flux's fused qkv / ``linear1``) lies in the same block as its source.
"""

from __future__ import annotations

from collections.abc import Callable

#: diffusers module prefix -> original (BFL) prefix (:mod:`nodegen.models.flux_convert`, inverted).
_FLUX_TOP = (("time_text_embed.timestep_embedder.linear_1.", "time_in.in_layer."),
             ("time_text_embed.timestep_embedder.linear_2.", "time_in.out_layer."),
             ("time_text_embed.text_embedder.linear_1.", "vector_in.in_layer."),
             ("time_text_embed.text_embedder.linear_2.", "vector_in.out_layer."),
             ("time_text_embed.guidance_embedder.linear_1.", "guidance_in.in_layer."),
             ("time_text_embed.guidance_embedder.linear_2.", "guidance_in.out_layer."),
             ("context_embedder.", "txt_in."), ("x_embedder.", "img_in."),
             ("norm_out.linear.", "final_layer.adaLN_modulation.1."), ("proj_out.", "final_layer.linear."),
             ("single_transformer_blocks.", "single_blocks."), ("transformer_blocks.", "double_blocks."))

#: the same for SD3 / SD 3.5 (MMDiT): diffusers' patch embedding holds MMDiT's ``x_embedder``. (The
#: fixed sin-cos ``pos_embed`` is a buffer in diffusers, not a weight, so it is not merged.)
_SD3_TOP = (("pos_embed.proj.", "x_embedder.proj."),
            ("time_text_embed.timestep_embedder.linear_1.", "t_embedder.mlp.0."),
            ("time_text_embed.timestep_embedder.linear_2.", "t_embedder.mlp.2."),
            ("time_text_embed.text_embedder.linear_1.", "y_embedder.mlp.0."),
            ("time_text_embed.text_embedder.linear_2.", "y_embedder.mlp.2."),
            ("context_embedder.", "context_embedder."),
            ("norm_out.linear.", "final_layer.adaLN_modulation.1."), ("proj_out.", "final_layer.linear."),
            ("transformer_blocks.", "joint_blocks."))

_TABLES = {"flux": _FLUX_TOP, "sd3": _SD3_TOP}


def _blocks(head: list[str], name: str, count: int, tail: list[str]) -> list[str]:
    return [*head, *(f"{name}.{i}." for i in range(count)), *tail]


#: ComfyUI's block prefixes in its widget order (``guidance_in`` has no dot in ComfyUI too).
FLUX_BLOCKS = _blocks(["img_in.", "time_in.", "guidance_in", "vector_in.", "txt_in."], "double_blocks", 19,
                      [*(f"single_blocks.{i}." for i in range(38)), "final_layer."])
_SD3_HEAD = ["pos_embed.", "x_embedder.", "context_embedder.", "y_embedder.", "t_embedder."]
SD3_2B_BLOCKS = _blocks(_SD3_HEAD, "joint_blocks", 24, ["final_layer."])
SD35_LARGE_BLOCKS = _blocks(_SD3_HEAD, "joint_blocks", 38, ["final_layer."])


def input_name(prefix: str) -> str:
    """nodegen's input name for a block prefix: ``double_blocks.3.`` -> ``double_blocks_3``."""
    return prefix.rstrip(".").replace(".", "_")


def original_name(family: str, key: str) -> str:
    """The original-layout name of diffusers parameter ``key`` of a ``family`` ("flux"/"sd3")
    transformer, up to its block (the rest of the name is kept); ``key`` itself if unknown."""
    for ours, theirs in _TABLES[family]:
        if key.startswith(ours):
            return theirs + key[len(ours):]
    return key


def block_ratios(family: str, prefix_ratios: dict[str, float]) -> Callable[[str], float]:
    """diffusers key -> its ratio by ComfyUI's rule (default: the first block's ratio)."""
    from nodegen.models.merge import block_ratio

    pick = block_ratio(prefix_ratios, next(iter(prefix_ratios.values())))
    return lambda key: pick(original_name(family, key))


def check_family(model, family: str, node: str, input_name: str) -> None:
    """A ValueError naming ``node`` and ``input_name`` unless ``model`` is a ``family`` transformer."""
    got = getattr(model, "family", None)
    if got != family:
        names = {"flux": "Flux.1", "sd3": "SD3 / SD 3.5"}
        raise ValueError(f"{node}: input '{input_name}' is a {got or type(model).__name__} model; "
                         f"this node merges {names[family]} models only")


def merge_flow_blocks(model1, model2, family: str, prefix_ratios: dict[str, float], node: str):
    """``ratio * model1 + (1 - ratio) * model2`` with a ratio per original block (lazy: patches)."""
    from nodegen.models.merge import merge_simple

    check_family(model1, family, node, "model1")
    check_family(model2, family, node, "model2")
    try:
        return merge_simple(model1, model2, block_ratios(family, prefix_ratios), "model")
    except ValueError as e:
        raise ValueError(f"{node}: inputs 'model1' and 'model2': {e}") from e
