"""Block-wise merging of Flux.1 and SD3 / SD 3.5 models (ComfyUI's ModelMergeFlux1,
ModelMergeSD3_2B, ModelMergeSD35_Large): one ratio per original block; see
:mod:`nodegen.models.merge_blocks_flow`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node
from nodegen.models import merge_blocks_flow as FLOW
from nodegen.models.merge_blocks_flow import FLUX_BLOCKS, SD3_2B_BLOCKS, SD35_LARGE_BLOCKS, input_name

_CATEGORY = "advanced/model_merging"


def _ratio(prefix: str):
    return Input.float(input_name(prefix), 1.0, min=0.0, max=1.0, step=0.01,
                       description=f"Share of model1 in the weights under {prefix!r} (original names)")


def _flow_block_node(type_name: str, family: str, label: str, prefixes: list[str]):
    @node(type_name, category=_CATEGORY,
          description=f"Blend two {label} models with a ratio per transformer block (1 = only model1); "
                      f"weights no block names take the first ratio, as in ComfyUI.",
          inputs=[Input.link("model1", T.MODEL), Input.link("model2", T.MODEL), *(_ratio(p) for p in prefixes)],
          outputs=[Output("model", T.MODEL)], keywords=("merge", "block weights", family))
    def merge(ctx, model1, model2, **ratios):
        chosen = {p: float(ratios[input_name(p)]) for p in prefixes}
        return FLOW.merge_flow_blocks(model1, model2, family, chosen, type_name)

    return merge


model_merge_flux1 = _flow_block_node("ModelMergeFlux1", "flux", "Flux.1", FLUX_BLOCKS)
model_merge_sd3_2b = _flow_block_node("ModelMergeSD3_2B", "sd3", "SD3 Medium / SD 3.5 Medium (24 blocks)",
                                      SD3_2B_BLOCKS)
model_merge_sd35_large = _flow_block_node("ModelMergeSD35_Large", "sd3", "SD 3.5 Large (38 blocks)",
                                          SD35_LARGE_BLOCKS)
