"""Running one built-in node type directly (no graph): its outputs as a dict by output name."""

from __future__ import annotations

from typing import Any

from nodegen.kernel.registry import default_registry

REG = default_registry()


def run(type_name: str, ctx: Any = None, **inputs) -> dict[str, Any]:
    nd = REG[type_name]
    return nd.normalize_result(nd.run(ctx, **inputs))


def run_def(nd, ctx: Any = None, **inputs) -> dict[str, Any]:
    """Run a node definition object (``nodegen.nodes.flow.unet_loader`` ...) directly."""
    return nd.normalize_result(nd.run(ctx, **inputs))


def models_ctx(root) -> Any:
    """A run context over the models folder ``root`` (CPU, its own model manager)."""
    import torch

    from nodegen.kernel.context import CancelToken, RunContext
    from nodegen.models.manager import ModelManager
    from nodegen.models.paths import ModelPaths

    return RunContext(node_id="1", node_title="t", device=torch.device("cpu"), models=ModelManager(device="cpu"),
                      paths=ModelPaths([root], use_env=False, use_config=False), output_dir=".", input_dir=".",
                      temp_dir=".", workflow=None, cancel=CancelToken())
