"""Building model modules from tensors: meta-device construction given the file's tensors
(``load_state_dict(assign=True)``: no random init, no second copy), the dtype and device to load
to, and aligned copies of tensors read from files. Shared by the loaders of every family."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from nodegen.models.detect import ModelKindError

if TYPE_CHECKING:
    from nodegen.models.manager import ModelManager


def _target_dtype(manager: ModelManager | None) -> torch.dtype:
    """The dtype to load weights in: the manager's for its device; float32 without a manager."""
    return manager.dtype_for(manager.device) if manager is not None else torch.float32


def _target_device(manager: ModelManager | None) -> torch.device:
    """Where loaded weights go at once: the manager's device when it is a GPU (each tensor is
    read from the file and copied there, so the host never holds the whole model), else the CPU
    (also without a manager, as :func:`_target_dtype`)."""
    dev = torch.device(manager.device) if manager is not None else torch.device("cpu")
    return dev if dev.type == "cuda" else torch.device("cpu")


def _cast(sd: dict, dtype: torch.dtype, device: torch.device | None = None) -> dict:
    """Tensors in ``dtype`` (on ``device``, default the CPU), each in its own freshly allocated
    memory: tensors read from a safetensors file may be unaligned, which makes CPU kernels take
    other code paths (results then differ in the last bits from the same weights loaded elsewhere)."""
    out = {}
    if device is not None and device.type != "cpu":
        for k in list(sd):  # one tensor at a time: the host holds one tensor, never the model
            v = sd.pop(k)
            out[k] = v.to(device=device, dtype=dtype if v.is_floating_point() else v.dtype)
        return out
    for k, v in sd.items():
        if v.is_floating_point() and v.dtype != dtype:
            out[k] = v.to(dtype)
        elif v.data_ptr() % 64:
            out[k] = v.clone()
        else:
            out[k] = v
    return out


def realign_(module: torch.nn.Module) -> torch.nn.Module:
    """Give every parameter/buffer that sits in unaligned memory (safetensors mmaps, as
    transformers' ``from_pretrained`` leaves them) its own aligned copy; see :func:`_cast`."""
    with torch.no_grad():
        for t in list(module.parameters()) + list(module.buffers()):
            if t.data_ptr() % 64:
                t.data = t.data.clone()
    return module


def _build(cls, config, state: dict, what: str, path, device: torch.device | None = None) -> torch.nn.Module:
    from accelerate import init_empty_weights

    with init_empty_weights():
        module = cls(config) if not isinstance(config, dict) else cls(**config)
    try:
        module.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as e:
        raise ModelKindError(f"{path}: the {what} weights do not fit the detected architecture: "
                             f"{str(e).splitlines()[0][:300]}") from e
    if device is not None and device.type != "cpu":
        module.to(device)  # the buffers not in the file (the weights are there already)
    return module.eval().requires_grad_(False)


def pretrained_folder(cls, folder, error: type[Exception], what: str) -> torch.nn.Module:
    """A diffusers model class's folder, offline and in float32; ``error`` names the folder."""
    try:
        return cls.from_pretrained(str(folder), local_files_only=True, torch_dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - name the folder
        raise error(f"{folder}: cannot load the {what}: {type(e).__name__}: {e}") from e


def exactly_built(cls, config: dict, tensors: dict, error: type[Exception], what: str, path) -> torch.nn.Module:
    """``cls(**config)`` holding exactly ``tensors`` (float32; meta-device build, no random init):
    a tensor missing or left over is an ``error`` naming both."""
    with torch.device("meta"):
        net = cls(**config)
    missing, unexpected = set(net.state_dict()) - set(tensors), set(tensors) - set(net.state_dict())
    if missing or unexpected:
        raise error(f"{path}: the tensors do not fit the {what} derived from them "
                    f"(missing {sorted(missing)[:4]}, unexpected {sorted(unexpected)[:4]})")
    net.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=True, assign=True)
    return net
