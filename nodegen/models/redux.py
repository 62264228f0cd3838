"""Flux.1 Redux: an image prompt for Flux, as extra text tokens.

Black Forest Labs' ``flux1-redux-dev.safetensors`` (ComfyUI's ``models/style_models``) holds two
linear layers that map a SigLIP image tower's last hidden state (``[B, 729, 1152]`` for so400m at
384 px) to Flux's T5 width: ``redux_down(silu(redux_up(x)))``. The tokens are appended to the text
conditioning (see ``StyleModelApply``). The layers are diffusers' ``ReduxImageEncoder`` (the image
embedder of ``FluxPriorReduxPipeline``), sized from the file's tensors.

T2I-Adapter style models (``style_embedding``, SD1's CoAdapter style) are told apart and refused
with a clear message.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from nodegen.models.manager import ModelManager
from nodegen.models.objects import use_module


class ReduxModel:
    """STYLE_MODEL: Flux.1 Redux's image embedder."""

    def __init__(self, module: torch.nn.Module, *, source: str = "", manager: ModelManager | None = None) -> None:
        self.module = module  # diffusers ReduxImageEncoder
        self.source = source
        self.manager = manager

    @property
    def image_width(self) -> int:
        """The image tower's width it takes (SigLIP so400m: 1152)."""
        return int(self.module.redux_up.in_features)

    @property
    def text_width(self) -> int:
        """The width of the tokens it makes (Flux's T5: 4096)."""
        return int(self.module.redux_down.out_features)

    @torch.no_grad()
    def tokens(self, last_hidden_state: torch.Tensor, device=None) -> torch.Tensor:
        """``[B, N, image_width]`` -> ``[B, N, text_width]``."""
        if last_hidden_state.ndim != 3 or last_hidden_state.shape[-1] != self.image_width:
            raise ValueError(f"the image encoding is {tuple(last_hidden_state.shape)} wide; this Redux model "
                             f"takes a SigLIP image tower {self.image_width} wide (sigclip_vision_patch14_384 "
                             "in the clip_vision folder)")
        with use_module(self.manager, self.module, device) as m:
            p = next(m.parameters())
            return m(last_hidden_state.to(p.device, p.dtype)).image_embeds.float()

    def __repr__(self) -> str:
        return f"ReduxModel({self.image_width} -> {self.text_width}, source={self.source!r})"


def load_style_model(path: str | os.PathLike, *, manager: ModelManager | None = None) -> ReduxModel:
    """A STYLE_MODEL file: Flux.1 Redux (safetensors, or a pickled state dict read safely)."""
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder

    sd = _read(Path(path))
    if "style_embedding" in sd:
        raise ValueError(f"{path} is a T2I-Adapter style model (SD1 CoAdapter style); nodegen applies "
                         "Flux.1 Redux style models only")
    if "redux_up.weight" not in sd or "redux_down.weight" not in sd:
        raise ValueError(f"{path} is not a Flux.1 Redux model (no redux_up / redux_down weights)")
    up, down = sd["redux_up.weight"], sd["redux_down.weight"]
    if up.ndim != 2 or down.ndim != 2 or down.shape[1] != up.shape[0]:
        raise ValueError(f"{path}: redux_up {tuple(up.shape)} and redux_down {tuple(down.shape)} do not chain")
    if up.shape[0] != 3 * down.shape[0]:
        raise ValueError(f"{path}: redux_up makes {up.shape[0]} features, not 3 x {down.shape[0]}")
    with torch.device("meta"):
        module = ReduxImageEncoder(redux_dim=up.shape[1], txt_in_features=down.shape[0])
    module.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True, assign=True)
    return ReduxModel(module.eval().requires_grad_(False), source=str(path), manager=manager)


def _read(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix in (".safetensors", ".sft"):
        from safetensors.torch import load_file

        sd = load_file(str(path))
    else:
        sd = torch.load(str(path), map_location="cpu", weights_only=True)
    if not isinstance(sd, dict) or not all(torch.is_tensor(v) for v in sd.values()):
        raise ValueError(f"{path} does not hold a plain state dict of tensors")
    return sd
