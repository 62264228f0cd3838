"""Recognise a model file from its tensors (keys and shapes), never from its name.

:func:`detect` takes ``{key: shape}`` (see :func:`nodegen.models.files.read_shapes`) and returns
a :class:`Detected`: ``kind`` is one of ``checkpoint``, ``unet``, ``vae``, ``lora``,
``controlnet``, ``upscaler``, ``text_encoder``, ``unknown``; checkpoints and UNets also carry
``family`` ("sd1", "sd2", "sdxl", "sdxl_refiner"), ``inpaint`` and a ``prediction`` guess.

SD2 768-v and 512-base files cannot be told apart from the tensors alone. Like diffusers
(which maps every SD2 file to the 768-v config), SD2 defaults to v-prediction, except that a
full-size file is checked with ComfyUI's rule (the std of one late norm bias is > 0.09 for v
models) when the tensor values are given, inpainting models are epsilon, and a ``v_pred`` key
marks v-prediction; loaders take an explicit ``prediction`` override.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

UNET = "model.diffusion_model."
KIND_ADVICE = {
    "lora": "use a LoRA loader (LoraLoader)",
    "vae": "use a VAE loader (VAELoader)",
    "controlnet": "use a ControlNet loader",
    "upscaler": "use an upscale model loader",
    "checkpoint": "use a checkpoint loader (CheckpointLoader)",
    "text_encoder": "it holds only a text encoder; load a full checkpoint instead",
    "unet": "it holds only a diffusion model; load it with the diffusion model loader (UNETLoader)",
    "taesd": "load it with VAELoader (a TAESD decodes and encodes like a VAE, faster and coarser)",
    "diff_controlnet": "nodegen reads only full ControlNets; use the non-'diff' (fp16/fp32) release of it",
}
KIND_NAMES = {"lora": "a LoRA", "vae": "a VAE", "controlnet": "a ControlNet", "upscaler": "an upscale model",
              "checkpoint": "a checkpoint", "text_encoder": "a text encoder", "unet": "a UNet",
              "taesd": "a TAESD tiny autoencoder",
              "diff_controlnet": "a 'diff' ControlNet (weights stored as differences from a base model)",
              "unknown": "not a model file nodegen recognises"}


@dataclass
class Detected:
    kind: str
    family: str | None = None
    inpaint: bool = False
    prediction: str | None = None
    #: "ldm" (original single-file keys), "diffusers", "kohya", "peft", ...
    layout: str | None = None
    details: dict = field(default_factory=dict)

    def describe(self) -> str:
        text = KIND_NAMES.get(self.kind, self.kind)
        if self.family:
            text += f" ({self.family}{', inpainting' if self.inpaint else ''})"
        return text


class ModelKindError(ValueError):
    """The file is not the kind of model the caller wanted."""


def require(detected: Detected, expected: str | tuple[str, ...], path: str) -> None:
    """Raise :class:`ModelKindError` naming the file, what it is and what to do."""
    kinds = (expected,) if isinstance(expected, str) else expected
    if detected.kind in kinds:
        return
    want = " or ".join(KIND_NAMES.get(k, k).removeprefix("a ").removeprefix("an ") for k in kinds)
    advice = KIND_ADVICE.get(detected.kind)
    msg = f"{path}: this is {detected.describe()}, not {KIND_NAMES.get(kinds[0], kinds[0])}"
    if advice and detected.kind != "unknown":
        msg += f": {advice}"
    elif detected.kind == "unknown":
        msg = (f"{path}: expected {want}, but its tensors match no known layout "
               f"(first keys: {', '.join(detected.details.get('sample_keys', []))})")
    raise ModelKindError(msg)


_LORA_RE = re.compile(r"(lora_up|lora_down|lora_A|lora_B|\.lora\.|lora_unet_|lora_te\d?_|\.hada_w1|\.lokr_w1"
                      r"|_lora\d?\.(down|up)\.weight)")
#: Whole-tensor changes as ComfyUI's LoraSave writes them (its ``full_diff`` files hold only these).
_DIFF_RE = re.compile(r"^(diffusion_model|text_encoders)\..+\.diff(_b)?$")


def _lora_layout(keys) -> str:
    if any(k.startswith(("lora_unet_", "lora_te")) for k in keys):
        return "kohya"
    if any(".lora_A." in k or ".lora_B." in k for k in keys):
        return "peft"
    return "diffusers"


def _family_from_text(keys: set[str], shapes: dict) -> str | None:
    if any(k.startswith("conditioner.embedders.1.model.") for k in keys):
        return "sdxl"
    if any(k.startswith("conditioner.embedders.0.model.") for k in keys):
        return "sdxl_refiner"
    if any(k.startswith("cond_stage_model.model.") for k in keys):
        return "sd2"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd1"
    return None


def _context_dim(shapes: dict, prefix: str) -> int | None:
    for k, s in shapes.items():
        if k.startswith(prefix) and k.endswith("attn2.to_k.weight"):
            return int(s[1])
    return None


def _family_from_unet(shapes: dict, prefix: str, adm_key: str, linear_key_part: str) -> str:
    ctx = _context_dim(shapes, prefix)
    has_adm = adm_key in shapes
    if has_adm:
        return "sdxl_refiner" if ctx == 1280 else "sdxl"
    if ctx == 1024:
        return "sd2"
    if ctx == 768:
        return "sd1"
    # scaled-down models: SD2 uses linear projections in its transformers, SD1 1x1 convs
    for k, s in shapes.items():
        if k.startswith(prefix) and linear_key_part in k and k.endswith("proj_in.weight"):
            return "sd2" if len(s) == 2 else "sd1"
    return "sd1"


#: key endings that mark a rectified-flow transformer: (family, layout, marker)
#: Chroma (Flux blocks without their modulation, plus an approximator) comes before Flux
FLOW_MARKERS = (("sd3", "original", "joint_blocks.0.context_block.adaLN_modulation.1.bias"),
                ("chroma", "original", "distilled_guidance_layer.layers.0.in_layer.weight"),
                ("chroma", "diffusers", "distilled_guidance_layer.layers.0.linear_1.weight"),
                ("flux", "original", "double_blocks.0.img_attn.norm.key_norm.scale"),
                ("flux", "diffusers", "single_transformer_blocks.0.attn.to_q.weight"),
                ("sd3", "diffusers", "transformer_blocks.0.attn.add_q_proj.weight"))
FLOW_TEXT_PREFIX = {"clip_l": "text_encoders.clip_l.transformer.", "clip_g": "text_encoders.clip_g.transformer.",
                    "t5": "text_encoders.t5xxl.transformer."}
T5_MARKER = "encoder.block.0.layer.0.SelfAttention.q.weight"


def detect_flow(keys: set[str]) -> Detected | None:
    """SD3 / SD 3.5, Flux.1 and Chroma files: an all-in-one checkpoint (``model.diffusion_model.`` + a VAE,
    maybe text encoders under ``text_encoders.*``) or a diffusion model alone (any prefix)."""
    for family, layout, marker in FLOW_MARKERS:
        hit = next((k for k in keys if k.endswith(marker) and (layout == "original" or k == marker
                                                                 or k == "transformer." + marker)), None)
        if hit is None:
            continue
        if family == "sd3" and layout == "diffusers" and "pos_embed.proj.weight" not in {
                k.removeprefix("transformer.") for k in keys}:
            continue
        prefix = hit[: -len(marker)]
        has_vae = any(k.startswith(("first_stage_model.", "vae.")) for k in keys)
        text = [r for r, p in FLOW_TEXT_PREFIX.items() if any(k.startswith(p) for k in keys)]
        kind = "checkpoint" if prefix == UNET and has_vae else "unet"
        return Detected(kind, family=family, prediction="flow", layout=layout,
                        details={"prefix": prefix, "has_vae": has_vae, "text": text,
                                 "guidance": any("guidance_in." in k or "guidance_embedder." in k for k in keys)})
    return None


def detect(shapes: dict, values=None) -> Detected:
    """What the tensors ``shapes`` (key -> shape) are. ``values`` (key -> tensor, optional) lets
    the SD2 prediction rule look at one tensor."""
    keys = set(shapes)
    sample = sorted(keys)[:4]
    if not keys:
        return Detected("unknown", details={"sample_keys": []})
    if any(_LORA_RE.search(k) or _DIFF_RE.match(k) for k in keys):
        return Detected("lora", layout=_lora_layout(keys))
    flow = detect_flow(keys)
    if flow is not None:
        return flow
    if any(k.endswith(T5_MARKER) for k in keys):
        return Detected("text_encoder", family="t5")
    if "difference" in keys and any(k.startswith("control_model.") for k in keys):
        return Detected("diff_controlnet", layout="ldm")
    if any(k.startswith("control_model.") for k in keys) or any(
            k.startswith(("controlnet_cond_embedding.", "input_hint_block.")) for k in keys):
        return Detected("controlnet", layout="ldm" if any(k.startswith("control_model.") for k in keys)
                        else "diffusers")
    conv_in = shapes.get(UNET + "input_blocks.0.0.weight")
    if conv_in is not None:
        family = _family_from_text(keys, shapes) or _family_from_unet(
            shapes, UNET, UNET + "label_emb.0.0.weight", "input_blocks")
        in_ch = int(conv_in[1])  # 4; 9: an inpainting model; 8: an InstructPix2Pix model
        if in_ch not in (4, 8, 9):
            return Detected("upscaler" if in_ch == 7 else "unknown", family=family, layout="ldm",
                            details={"in_channels": in_ch, "sample_keys": sample})
        inpaint = in_ch == 9
        has_text = _family_from_text(keys, shapes) is not None
        has_vae = any(k.startswith(("first_stage_model.", "vae.")) for k in keys)
        # text encoders without a VAE: a "no-VAE" checkpoint (loaded, its VAE output refuses use)
        det = Detected("checkpoint" if has_text else "unet", family=family, inpaint=inpaint,
                       layout="ldm", details={"in_channels": in_ch, "has_text": has_text, "has_vae": has_vae})
        det.prediction = guess_prediction(det, keys, values)
        return det
    if {"input_blocks.0.0.weight", "time_embed.0.weight"} <= keys:  # a bare LDM UNet (no model.diffusion_model.)
        det = detect({UNET + k: s for k, s in shapes.items()},
                     {UNET + k: v for k, v in values.items()} if values is not None else None)
        det.layout = "ldm_bare"
        return det
    if "conv_in.weight" in keys and "time_embedding.linear_1.weight" in keys and any(
            k.startswith("down_blocks.") for k in keys):
        family = _family_from_unet(shapes, "", "add_embedding.linear_1.weight", "down_blocks")
        in_ch = int(shapes["conv_in.weight"][1])
        det = Detected("unet", family=family, inpaint=in_ch == 9, layout="diffusers")
        det.prediction = guess_prediction(det, keys, values)
        return det
    if {"encoder.conv_in.weight", "decoder.conv_in.weight"} <= keys:
        layout = "diffusers" if any(k.startswith("encoder.down_blocks.") for k in keys) else "ldm"
        return Detected("vae", layout=layout, details={"latent_channels": int(shapes["decoder.conv_in.weight"][1])})
    if {"first_stage_model.encoder.conv_in.weight", "first_stage_model.decoder.conv_in.weight"} <= keys:
        return Detected("vae", layout="ldm_prefixed")
    if _is_taesd(keys):
        return Detected("taesd")
    if keys & {"conv_first.weight", "model.0.weight", "body.0.weight", "params_ema"} or any(
            k.startswith(("RRDB_trunk.", "body.0.rdb1.", "model.1.sub.")) for k in keys):
        return Detected("upscaler")
    if _family_from_text(keys, shapes) or any(
            re.match(r"(text_model\.)?(encoder\.layers\.0\.self_attn|embeddings\.token_embedding)", k) for k in keys):
        return Detected("text_encoder", family=_family_from_text(keys, shapes))
    return Detected("unknown", details={"sample_keys": sample})


def _is_taesd(keys: set[str]) -> bool:
    """TAESD (madebyollin/taesd): ``taesd_decoder.pth`` / ``taesd_encoder.pth`` are bare
    ``nn.Sequential`` state dicts (decoder: clamp, conv ``1.``, block ``3.conv.0``; encoder: conv
    ``0.``, block ``1.conv.0``); ComfyUI's combined files prefix them ``taesd_decoder.`` /
    ``taesd_encoder.``; diffusers' AutoencoderTiny names them ``decoder.layers.*`` /
    ``encoder.layers.*``."""
    if any(k.startswith(("taesd_decoder.", "taesd_encoder.")) for k in keys):
        return True
    if keys and all(k.startswith(("decoder.layers.", "encoder.layers.")) for k in keys):
        return True  # diffusers' AutoencoderTiny
    return ({"1.weight", "3.conv.0.weight"} <= keys or {"0.weight", "1.conv.0.weight"} <= keys) and all(
        k.split(".")[0].isdigit() for k in keys)


def guess_prediction(det: Detected, keys: set[str], values=None) -> str:
    if "v_pred" in keys:
        return "v_prediction"
    if det.family != "sd2" or det.inpaint:
        return "epsilon"
    k = UNET + "output_blocks.11.1.transformer_blocks.0.norm1.bias"
    if values is not None and k in keys:
        t = values[k]
        return "v_prediction" if float(t.float().std(unbiased=False)) > 0.09 else "epsilon"
    return "v_prediction"
