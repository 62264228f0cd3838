"""Random LoRAs for the fixture models, in diffusers/PEFT and kohya form."""

from __future__ import annotations

import torch

UNET_TARGETS = ("attn1.to_q", "attn2.to_k", "attn2.to_v", "attn1.to_out.0", "proj_in", "conv1", "ff.net.2")
TE_TARGETS = ("q_proj", "v_proj", "out_proj", "fc1")


def _ab(w: torch.Tensor, rank: int, g: torch.Generator):
    if w.ndim == 4:
        return (torch.randn(rank, w.shape[1], *w.shape[2:], generator=g) * 0.1,
                torch.randn(w.shape[0], rank, 1, 1, generator=g) * 0.1)
    return torch.randn(rank, w.shape[1], generator=g) * 0.1, torch.randn(w.shape[0], rank, generator=g) * 0.1


def peft_lora(ns, rank: int = 4, seed: int = 0, text: bool = True) -> dict[str, torch.Tensor]:
    """``unet.<module>.lora_A/B.weight`` (+ ``text_encoder[_2].``) for the fixture ``ns``."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}
    comps = [("unet", ns.unet, UNET_TARGETS)]
    if text:
        comps.append(("text_encoder", ns.text_encoder, TE_TARGETS))
        if getattr(ns, "text_encoder_2", None) is not None:
            comps.append(("text_encoder_2", ns.text_encoder_2, TE_TARGETS))
    for comp, module, targets in comps:
        for name, mod in module.named_modules():
            if name.endswith(targets) and hasattr(mod, "weight"):
                a, b = _ab(mod.weight, rank, g)
                sd[f"{comp}.{name}.lora_A.weight"] = a
                sd[f"{comp}.{name}.lora_B.weight"] = b
    return sd


def peft_to_kohya(sd: dict[str, torch.Tensor], alpha: float | None = None, unet_config: dict | None = None):
    """The same LoRA with kohya names (``lora_unet_``/``lora_te1_``/``lora_te2_``; SD1 naming
    ``lora_te_`` when there is one text encoder). With ``unet_config`` the UNet modules get their
    original LDM names (as kohya writes SDXL LoRAs). ``alpha`` is stored for every layer."""
    from nodegen.models.ldm_export import unet_to_ldm

    two_te = any(k.startswith("text_encoder_2.") for k in sd)
    prefix = {"unet": "lora_unet_", "text_encoder": "lora_te1_" if two_te else "lora_te_",
              "text_encoder_2": "lora_te2_"}
    out: dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        comp, rest = key.split(".", 1)
        module, kind = rest.rsplit(".", 2)[0], rest.rsplit(".", 2)[1]
        if comp == "unet" and unet_config is not None:
            module = next(iter(unet_to_ldm({module + ".weight": t}, unet_config, prefix="")))[: -len(".weight")]
        if comp != "unet" and not module.startswith("text_model."):
            module = "text_model." + module
        name = prefix[comp] + module.replace(".", "_")
        out[f"{name}.{'lora_down' if kind == 'lora_A' else 'lora_up'}.weight"] = t
        if alpha is not None:
            out[f"{name}.alpha"] = torch.tensor(float(alpha))
    return out


def peft_to_comfy(sd: dict[str, torch.Tensor], unet_config: dict) -> dict[str, torch.Tensor]:
    """The same LoRA as ComfyUI's LoraSave writes it: ``diffusion_model.<LDM name>.lora_up/down.weight``
    and ``text_encoders.clip_<l|g>.transformer.text_model.<name>...`` (no alphas)."""
    from nodegen.models.ldm_export import unet_to_ldm

    out: dict[str, torch.Tensor] = {}
    for key, t in sd.items():
        comp, rest = key.split(".", 1)
        module, kind = rest.rsplit(".", 2)[0], rest.rsplit(".", 2)[1]
        if comp == "unet":
            module = "diffusion_model." + next(iter(unet_to_ldm({module + ".weight": t}, unet_config,
                                                                prefix="")))[: -len(".weight")]
        else:
            clip = "clip_g" if comp == "text_encoder_2" else "clip_l"
            module = f"text_encoders.{clip}.transformer." + ("" if module.startswith("text_model.") else
                                                            "text_model.") + module
        out[f"{module}.{'lora_down' if kind == 'lora_A' else 'lora_up'}.weight"] = t
    return out
