"""SD3 / SD 3.5, Flux.1 and Chroma nodes: diffusion model and text encoder loaders, their text encoding,
Flux guidance, flow model sampling (shift), 16-channel empty latents, and the custom-sampling nodes
ComfyUI's workflows for these families use (noise, guiders, SamplerCustomAdvanced, beta schedule).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from nodegen.kernel import types as T
from nodegen.kernel.lazy import lazy_import
from nodegen.kernel.node import Input, Output, node
from nodegen.models.detect import ModelKindError
from nodegen.models.resolve import choices_for, fingerprint_for, resolve_model

torch = lazy_import("torch")

WEIGHT_DTYPES = ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"]
CLIP_TYPES = ["sd3", "flux", "auto"]
#: CLIPLoader's types: also "chroma" (one T5-XXL file, nodegen.models.chroma_text)
ONE_CLIP_TYPES = [*CLIP_TYPES, "chroma"]
MAX_SIZE = 16384


def _manager(ctx):
    """The run's model manager (the engine's: loaded models are shared across runs)."""
    if getattr(ctx, "models", None) is None:
        raise RuntimeError("this run has no model manager: run nodes through an Engine or Executor, "
                           "or give RunContext(models=ModelManager())")
    return ctx.models


def _device(ctx):
    return getattr(ctx, "device", None)


def _flow_clip(clip, node_type: str, families: tuple[str, ...]):
    if getattr(clip, "family", None) not in families or not hasattr(clip, "encode_parts"):
        raise ValueError(f"{node_type}: input 'clip' is a {getattr(clip, 'family', type(clip).__name__)} text "
                         f"encoder; this node needs {' or '.join(families)} text encoders")
    return clip


# ---- loaders ------------------------------------------------------------------------------------

@node("UNETLoader", category="loaders",
      description="Load a diffusion model alone (SD3 / SD 3.5, Flux.1, Chroma), as stored or in fp8.",
      inputs=[Input.file("unet_name", "diffusion_models", choices=choices_for("diffusion_models"),
                         description="Diffusion model in the diffusion_models (or unet) folder"),
              Input.choice("weight_dtype", WEIGHT_DTYPES, "default",
                           description="default: as stored (fp8 files stay fp8); fp8_*: store weights in fp8")],
      outputs=[Output("model", T.MODEL)], fingerprint=fingerprint_for("diffusion_models", "unet_name"),
      keywords=("flux", "sd3", "chroma", "unet", "diffusion model", "load"))
def unet_loader(ctx, unet_name, weight_dtype="default"):
    path = resolve_model(ctx.paths, "diffusion_models", unet_name, "UNETLoader", "unet_name")
    try:
        return _manager(ctx).load_diffusion_model(path, weight_dtype)
    except ModelKindError as e:
        raise ModelKindError(f"UNETLoader: unet_name {unet_name!r}: {e}") from e


def _clips(ctx, node_type: str, names: list[tuple[str, str]], family: str):
    paths = [resolve_model(ctx.paths, "text_encoders", name, node_type, inp) for inp, name in names]
    try:
        return _manager(ctx).load_text_encoders(paths, family)
    except ValueError as e:
        where = f" {names[0][0]} {names[0][1]!r}" if len(names) == 1 else ""
        raise ValueError(f"{node_type}:{where} {e}") from e


def _clip_file(name: str):
    return Input.file(name, "text_encoders", choices=choices_for("text_encoders"),
                      description="Text encoder in the text_encoders (or clip) folder")


@node("CLIPLoader", category="loaders", description="Load one text encoder file (CLIP-L, CLIP-G or T5-XXL).",
      inputs=[_clip_file("clip_name"), Input.choice("type", ONE_CLIP_TYPES, "sd3",
                                                    description="The model family (chroma: a T5-XXL file)")],
      outputs=[Output("clip", T.CLIP)], fingerprint=fingerprint_for("text_encoders", "clip_name"),
      keywords=("t5", "clip", "text encoder"))
def clip_loader(ctx, clip_name, type="sd3"):  # noqa: A002 - ComfyUI's input name
    return _clips(ctx, "CLIPLoader", [("clip_name", clip_name)], type)


@node("DualCLIPLoader", category="loaders",
      description="Load two text encoder files (Flux: CLIP-L + T5-XXL; SD3: CLIP-L + CLIP-G).",
      inputs=[_clip_file("clip_name1"), _clip_file("clip_name2"),
              Input.choice("type", CLIP_TYPES, "flux", description="The model family")],
      outputs=[Output("clip", T.CLIP)], keywords=("t5", "clip", "flux", "text encoder"))
def dual_clip_loader(ctx, clip_name1, clip_name2, type="flux"):  # noqa: A002
    return _clips(ctx, "DualCLIPLoader", [("clip_name1", clip_name1), ("clip_name2", clip_name2)], type)


@node("TripleCLIPLoader", category="loaders", description="Load SD3's three text encoders (CLIP-L, CLIP-G, T5-XXL).",
      inputs=[_clip_file("clip_name1"), _clip_file("clip_name2"), _clip_file("clip_name3")],
      outputs=[Output("clip", T.CLIP)], keywords=("t5", "clip", "sd3", "text encoder"))
def triple_clip_loader(ctx, clip_name1, clip_name2, clip_name3):
    return _clips(ctx, "TripleCLIPLoader", [("clip_name1", clip_name1), ("clip_name2", clip_name2),
                                            ("clip_name3", clip_name3)], "sd3")


# ---- conditioning -------------------------------------------------------------------------------

@node("CLIPTextEncodeSD3", category="conditioning",
      description="SD3 text encoding, one prompt per encoder (CLIP-L, CLIP-G, T5-XXL).",
      inputs=[Input.link("clip", T.CLIP), Input.string("clip_l", "", multiline=True),
              Input.string("clip_g", "", multiline=True), Input.string("t5xxl", "", multiline=True),
              Input.choice("empty_padding", ["none", "empty_prompt"], "none",
                           description="Kept for ComfyUI workflows: nodegen pads as diffusers does either way")],
      outputs=[Output("conditioning", T.CONDITIONING)])
def clip_text_encode_sd3(ctx, clip, clip_l, clip_g, t5xxl, empty_padding="none"):
    _flow_clip(clip, "CLIPTextEncodeSD3", ("sd3",))
    return clip.encode_parts({"clip_l": clip_l, "clip_g": clip_g, "t5": t5xxl}, device=_device(ctx))


@node("CLIPTextEncodeFlux", category="conditioning",
      description="Flux text encoding (CLIP-L and T5-XXL prompts) with distilled guidance.",
      inputs=[Input.link("clip", T.CLIP), Input.string("clip_l", "", multiline=True),
              Input.string("t5xxl", "", multiline=True), Input.float("guidance", 3.5, min=0.0, max=100.0, step=0.1)],
      outputs=[Output("conditioning", T.CONDITIONING)])
def clip_text_encode_flux(ctx, clip, clip_l, t5xxl, guidance=3.5):
    _flow_clip(clip, "CLIPTextEncodeFlux", ("flux",))
    cond = clip.encode_parts({"clip_l": clip_l, "t5": t5xxl}, device=_device(ctx))
    return [c.copy(extras=dict(c.extras, guidance=float(guidance))) for c in cond]


@node("FluxGuidance", category="conditioning",
      description="Flux's distilled guidance strength (dev models; schnell ignores it).",
      inputs=[Input.link("conditioning", T.CONDITIONING), Input.float("guidance", 3.5, min=0.0, max=100.0, step=0.1)],
      outputs=[Output("conditioning", T.CONDITIONING)])
def flux_guidance(ctx, conditioning, guidance=3.5):
    from nodegen.diffusion.conditioning import CondItem

    if not isinstance(conditioning, list) or not all(isinstance(c, CondItem) for c in conditioning):
        raise TypeError("FluxGuidance: input 'conditioning' must be a CONDITIONING")
    return [c.copy(extras=dict(c.extras, guidance=float(guidance))) for c in conditioning]


@node("FluxDisableGuidance", category="conditioning",
      description="Leave out Flux's guidance embedding altogether (ComfyUI's FluxDisableGuidance: no guidance "
                  "term is added to the time vector), for models trained without it.",
      inputs=[Input.link("conditioning", T.CONDITIONING)],
      outputs=[Output("conditioning", T.CONDITIONING)], keywords=("flux", "guidance"))
def flux_disable_guidance(ctx, conditioning):
    from nodegen.diffusion.conditioning import CondItem

    if not isinstance(conditioning, list) or not all(isinstance(c, CondItem) for c in conditioning):
        raise TypeError("FluxDisableGuidance: input 'conditioning' must be a CONDITIONING")
    return [c.copy(extras=dict(c.extras, guidance=None)) for c in conditioning]


# ---- model sampling and latents -------------------------------------------------------------------

def _flow_model(model, node_type: str):
    if getattr(model, "prediction_type", None) != "flow":
        raise ValueError(f"{node_type}: input 'model' is a {getattr(model, 'family', '?')} model; this node is "
                         "for flow models (SD3 / SD 3.5, Flux.1)")
    return model.clone()


@node("ModelSamplingSD3", category="advanced/model", description="Flow model sampling with a fixed shift (SD3: 3).",
      inputs=[Input.link("model", T.MODEL), Input.float("shift", 3.0, min=0.0, max=100.0, step=0.01)],
      outputs=[Output("model", T.MODEL)])
def model_sampling_sd3(ctx, model, shift=3.0):
    m = _flow_model(model, "ModelSamplingSD3")
    m.options["model_sampling"] = {"kind": "flow", "shift": float(shift),
                                   "multiplier": 1000.0 if m.family == "sd3" else 1.0}
    return m


@node("ModelSamplingFlux", category="advanced/model",
      description="Flux's resolution-dependent shift (base_shift at 256 patches, max_shift at 4096).",
      inputs=[Input.link("model", T.MODEL), Input.float("max_shift", 1.15, min=0.0, max=100.0, step=0.01),
              Input.float("base_shift", 0.5, min=0.0, max=100.0, step=0.01),
              Input.int("width", 1024, min=16, max=MAX_SIZE, step=8), Input.int("height", 1024, min=16, max=MAX_SIZE, step=8)],
      outputs=[Output("model", T.MODEL)])
def model_sampling_flux(ctx, model, max_shift=1.15, base_shift=0.5, width=1024, height=1024):
    from nodegen.diffusion.flow_sampling import flux_mu

    m = _flow_model(model, "ModelSamplingFlux")
    m.options["model_sampling"] = {"kind": "flux", "shift": flux_mu(width, height, base_shift, max_shift),
                                   "multiplier": 1.0}
    return m


@node("EmptySD3LatentImage", category="latent", description="Empty 16-channel latents (SD3 / SD 3.5, Flux.1).",
      inputs=[Input.int("width", 1024, min=16, max=MAX_SIZE, step=16), Input.int("height", 1024, min=16, max=MAX_SIZE, step=16),
              Input.int("batch_size", 1, min=1, max=4096)],
      outputs=[Output("latent", T.LATENT)])
def empty_sd3_latent_image(ctx, width, height, batch_size=1):
    for name, v in (("width", width), ("height", height)):
        if v % 8:
            raise ValueError(f"input '{name}' must be a multiple of 8, got {v}")
    return {"samples": torch.zeros(batch_size, 16, height // 8, width // 8)}


# ---- custom sampling ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Noise:
    """NOISE: the seed of the starting noise (drawn on the CPU, see nodegen.diffusion.noise); ``add``
    False for DisableNoise."""

    seed: int = 0
    add: bool = True


@dataclass
class Guider:
    """GUIDER: a model, its conditionings and the guidance scale (1: the negative is not run)."""

    model: object
    positive: list
    negative: list | None = None
    cfg: float = 1.0
    extras: dict = field(default_factory=dict)


@node("RandomNoise", category="sampling/custom", description="Seeded starting noise.",
      inputs=[Input.seed("noise_seed")], outputs=[Output("noise", T.NOISE)])
def random_noise(ctx, noise_seed):
    return Noise(int(noise_seed))


@node("DisableNoise", category="sampling/custom", description="No starting noise (continue a partly denoised latent).",
      inputs=[], outputs=[Output("noise", T.NOISE)])
def disable_noise(ctx):
    return Noise(0, add=False)


def _cond(c, name: str, node_type: str) -> list:
    from nodegen.diffusion.conditioning import CondItem

    if not isinstance(c, list) or not c or not all(isinstance(i, CondItem) for i in c):
        raise ValueError(f"{node_type}: input '{name}' must be a non-empty CONDITIONING")
    return c


@node("BasicGuider", category="sampling/custom", description="Guide with one conditioning (no negative; Flux).",
      inputs=[Input.link("model", T.MODEL), Input.link("conditioning", T.CONDITIONING)],
      outputs=[Output("guider", T.GUIDER)])
def basic_guider(ctx, model, conditioning):
    return Guider(model, _cond(conditioning, "conditioning", "BasicGuider"))


@node("CFGGuider", category="sampling/custom", description="Classifier-free guidance with a negative prompt.",
      inputs=[Input.link("model", T.MODEL), Input.link("positive", T.CONDITIONING), Input.link("negative", T.CONDITIONING),
              Input.float("cfg", 8.0, min=0.0, max=100.0, step=0.1)],
      outputs=[Output("guider", T.GUIDER)])
def cfg_guider(ctx, model, positive, negative, cfg=8.0):
    return Guider(model, _cond(positive, "positive", "CFGGuider"), _cond(negative, "negative", "CFGGuider"), float(cfg))


@node("DualCFGGuider", category="sampling/custom",
      description="Guidance with two prompts and a negative: cond2 against the negative (cfg_cond2_negative), "
                  "then towards cond1 away from cond2 (cfg_conds); nested: the second inside the first.",
      inputs=[Input.link("model", T.MODEL), Input.link("cond1", T.CONDITIONING), Input.link("cond2", T.CONDITIONING),
              Input.link("negative", T.CONDITIONING), Input.float("cfg_conds", 8.0, min=0.0, max=100.0, step=0.1),
              Input.float("cfg_cond2_negative", 8.0, min=0.0, max=100.0, step=0.1),
              Input.choice("style", ["regular", "nested"], "regular")],
      outputs=[Output("guider", T.GUIDER)], keywords=("dual cfg", "guidance", "two prompts"))
def dual_cfg_guider(ctx, model, cond1, cond2, negative, cfg_conds=8.0, cfg_cond2_negative=8.0, style="regular"):
    from nodegen.diffusion.dual_cfg import DualCFG

    hook = DualCFG(_cond(cond1, "cond1", "DualCFGGuider"), cfg_conds, cfg_cond2_negative, nested=style == "nested")
    return Guider(model.with_denoise_hook(hook), _cond(cond2, "cond2", "DualCFGGuider"), _cond(negative, "negative", "DualCFGGuider"),
                  float(cfg_cond2_negative))


@node("SamplerCustomAdvanced", category="sampling/custom",
      description="Sample with a NOISE, a GUIDER, a SAMPLER and SIGMAS.",
      inputs=[Input.link("noise", T.NOISE), Input.link("guider", T.GUIDER), Input.link("sampler", T.SAMPLER),
              Input.link("sigmas", T.SIGMAS), Input.link("latent_image", T.LATENT)],
      outputs=[Output("output", T.LATENT), Output("denoised_output", T.LATENT)])
def sampler_custom_advanced(ctx, noise, guider, sampler, sigmas, latent_image):
    from .sampling import run_sample

    if not isinstance(noise, Noise):
        raise TypeError("SamplerCustomAdvanced: input 'noise' must be a NOISE (RandomNoise)")
    if not isinstance(guider, Guider):
        raise TypeError("SamplerCustomAdvanced: input 'guider' must be a GUIDER (BasicGuider, CFGGuider, DualCFGGuider)")
    if not isinstance(latent_image, dict) or "samples" not in latent_image:
        raise TypeError("SamplerCustomAdvanced: input 'latent_image' must be a LATENT")
    sig = torch.as_tensor(sigmas, dtype=torch.float32).reshape(-1)
    if len(sig) > 1 and not bool((sig[1:] <= sig[:-1]).all()):
        raise ValueError("SamplerCustomAdvanced: input 'sigmas' must be decreasing")
    done = run_sample(ctx, guider.model, guider.positive, guider.negative, latent_image, noise.seed, sig,
                      guider.cfg, sampler, add_noise=noise.add)
    return {"output": done.latent, "denoised_output": done.denoised}


@node("BetaSamplingScheduler", category="sampling/custom",
      description="Beta-distribution schedule (Lee et al. 2024) with its alpha and beta.",
      inputs=[Input.link("model", T.MODEL), Input.int("steps", 20, min=1, max=10000),
              Input.float("alpha", 0.6, min=0.0, max=50.0, step=0.01), Input.float("beta", 0.6, min=0.0, max=50.0, step=0.01)],
      outputs=[Output("sigmas", T.SIGMAS)])
def beta_sampling_scheduler(ctx, model, steps, alpha=0.6, beta=0.6):
    from nodegen.diffusion.sample import model_sampling_for
    from nodegen.diffusion.schedules import beta_sigmas

    return beta_sigmas(model_sampling_for(model), int(steps), float(alpha), float(beta))
