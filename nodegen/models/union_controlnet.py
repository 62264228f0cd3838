"""Union ControlNet (xinsir's ControlNet++ / "promax" for SDXL): one ControlNet for several control
types, told which type its image is (SetUnionControlNetType). Run by diffusers'
``ControlNetUnionModel``; the files are in diffusers' layout with the union parts
(``task_embedding``, ``transformer_layes.*``, ``spatial_ch_projs``, ``control_add_embedding``).

With no type set ("auto", ComfyUI's default) the model runs as ComfyUI runs it: the control
image's embedding is added to the first block as in a plain ControlNet (no fusion transformer,
no task embedding) and the control-type embedding is that of no type (all zeros).

The configuration comes from the shapes (the ControlNet part as for any ControlNet; the union
part: control types and widths from ``task_embedding``, layers from ``transformer_layes``); the
fusion transformer's head count is not in the shapes and is taken as 8, the published models'.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import torch

from nodegen.models.controlnet import Control, ControlNetError, ControlNetModel

#: The published models' control types (ComfyUI's names and order).
UNION_TYPES = {"openpose": 0, "depth": 1, "hed/pidi/scribble/ted": 2, "canny/lineart/anime_lineart/mlsd": 3,
               "normal": 4, "segment": 5, "tile": 6, "repaint": 7}
UNION_KEYS = ("task_embedding", "transformer_layes.", "spatial_ch_projs.", "control_add_embedding.")
TRANS_HEADS = 8


def is_union(keys) -> bool:
    return "task_embedding" in set(keys)


class UnionControlNetModel(ControlNetModel):
    """CONTROL_NET for a union model; :attr:`control_type` is set by SetUnionControlNetType."""

    control_type: str | None = None

    def with_type(self, control_type: str | None) -> UnionControlNetModel:
        out = UnionControlNetModel(self.net, self.family, self.source, self.manager)
        out.control_type = control_type
        return out

    def control(self, image: torch.Tensor, strength: float = 1.0, start: float = 0.0,
                end: float = 1.0) -> Control:
        return UnionControl(self, image, strength, start, end)


class UnionControl(Control):
    def residuals(self, x, timestep, embeds, pooled_extras, progress):
        if not self.active(progress) or self.strength == 0.0:
            return None
        model: UnionControlNetModel = self.control_net  # type: ignore[assignment]
        with model.use(x.device, x.dtype) as net:
            self.check_compatible(embeds, pooled_extras, net)
            sample = x[:, : int(net.config.in_channels)]
            b, _, h, w = sample.shape
            hint = self.hint(b, h * 8, w * 8, x.device, x.dtype)
            if model.control_type is None:
                return auto_residuals(net, sample, timestep, embeds.to(x.dtype), hint, self.strength,
                                      pooled_extras)
            idx = UNION_TYPES[model.control_type]
            one_hot = torch.zeros(b, int(net.config.num_control_type), device=x.device, dtype=x.dtype)
            one_hot[:, idx] = 1
            down, mid = net(sample, timestep, encoder_hidden_states=embeds.to(x.dtype), controlnet_cond=[hint],
                            control_type=one_hot, control_type_idx=[idx], conditioning_scale=[self.strength],
                            added_cond_kwargs=pooled_extras, return_dict=False)
        return list(down), mid


def auto_residuals(net, sample, timestep, embeds, hint, strength: float, pooled_extras):
    """Residuals with no control type (ComfyUI's "auto"): the union model run as a plain
    ControlNet (diffusers' ``ControlNetModel.forward`` over the same modules, which the union
    model has all of) whose time embedding carries the no-type control embedding."""
    from diffusers import ControlNetModel

    types = int(net.config.num_control_type)
    no_type = torch.zeros(sample.shape[0] * types, device=sample.device)
    extra = net.control_add_embedding(net.control_type_proj(no_type).reshape(sample.shape[0], -1)
                                      .to(sample.dtype))
    hook = net.time_embedding.register_forward_hook(lambda _module, _args, out: out + extra)
    try:
        down, mid = ControlNetModel.forward(net, sample, timestep, encoder_hidden_states=embeds,
                                            controlnet_cond=hint, conditioning_scale=strength,
                                            added_cond_kwargs=pooled_extras, return_dict=False)
    finally:
        hook.remove()
    return list(down), mid


def load_union(path: Path, sd: dict[str, torch.Tensor], manager=None) -> UnionControlNetModel:
    from diffusers import ControlNetUnionModel

    from nodegen.models.controlnet import config_from_ldm, strip_prefix
    from nodegen.models.controlnet_export import controlnet_to_ldm

    base = {k: v for k, v in sd.items() if not k.startswith(UNION_KEYS)}
    shapes = {k: tuple(v.shape) for k, v in strip_prefix(controlnet_to_ldm(base)).items()}
    cfg, family = config_from_ldm(shapes, str(path))
    allowed = set(inspect.signature(ControlNetUnionModel.__init__).parameters)
    cfg = {k: v for k, v in cfg.items() if k in allowed}
    task = sd["task_embedding"]
    layers = {int(m.group(1)) for k in sd if (m := re.match(r"transformer_layes\.(\d+)\.", k))}
    cfg.update(num_control_type=int(task.shape[0]), num_trans_channel=int(task.shape[1]),
               num_trans_head=TRANS_HEADS, num_trans_layer=len(layers),
               num_proj_channel=int(sd["spatial_ch_projs.weight"].shape[0]),
               # the control-type embedding is as wide as the size embedding, per type
               addition_time_embed_dim=int(sd["control_add_embedding.linear_1.weight"].shape[1]) // int(task.shape[0]))
    with torch.device("meta"):
        net = ControlNetUnionModel(**cfg)
    want = set(net.state_dict())
    if want != set(sd):
        raise ControlNetError(f"{path}: the weights do not fit the union ControlNet derived from them "
                              f"(missing {sorted(want - set(sd))[:3]}, unexpected {sorted(set(sd) - want)[:3]})")
    net.load_state_dict({k: v.float() for k, v in sd.items()}, assign=True, strict=True)
    return UnionControlNetModel(net.eval(), family, str(path), manager)
