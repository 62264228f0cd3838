"""ControlNet nodes: load a ControlNet and attach it (with its control image) to conditioning.

Controls accumulate: applying several ControlNets (or one several times) to the same
conditioning adds their residuals at every step (diffusers' MultiControlNet)."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node
from nodegen.models.resolve import choices_for, fingerprint_for, resolve_model


@node("ControlNetLoader", category="controlnet",
      description="Load a ControlNet (SD1.x, SD2.x or SDXL; single file or diffusers folder), a union "
                  "ControlNet (ControlNet++ / promax), a T2I-Adapter, a Flux.1 ControlNet or an SD3 / SD 3.5 "
                  "ControlNet (diffusers layout, or Stability's own SD 3.5 ControlNet files), including Alimama's SD3 "
                  "and Flux.1 inpainting ControlNets.",
      inputs=[Input.file("control_net_name", "controlnet", choices=choices_for("controlnet"),
                         description="ControlNet file or folder in the controlnet models folder")],
      outputs=[Output("control_net", T.CONTROL_NET)],
      fingerprint=fingerprint_for("controlnet", "control_net_name"), keywords=("controlnet",))
def controlnet_loader(ctx, control_net_name):
    from nodegen.models.control_files import load_control

    path = resolve_model(ctx.paths, "controlnet", control_net_name, "ControlNetLoader",
                         "control_net_name")
    manager = getattr(ctx, "models", None)
    return load_control(path, manager=manager if hasattr(manager, "use") else None)


def check_text_width(control, embeds, pooled=None) -> None:
    """A ControlNet made for another family (another text-embedding width) is refused when it is
    applied, naming the file and both families. (Pooled SDXL extras are checked when sampling.)"""
    net = getattr(getattr(control, "control_net", None), "net", None)
    if net is None or embeds is None:
        return
    from nodegen.models.controlnet import CONTEXT_DIMS, FAMILY_NAMES, ControlNetError

    if getattr(control, "kind", "") == "sd3_controlnet":  # SD3 text and pooled widths
        control.control_net.check_conditioning(embeds, pooled)
        return
    if getattr(control, "kind", "") == "flux_controlnet":
        want = int(net.config.joint_attention_dim)
        if int(embeds.shape[-1]) != want:
            raise ControlNetError(f"ControlNet {control.control_net.name!r} is a Flux.1 ControlNet (text "
                                  f"embeddings {want} wide), but this conditioning is {int(embeds.shape[-1])} "
                                  "wide: it is not a Flux text encoding")
        want = int(net.config.pooled_projection_dim)
        if pooled is not None and int(pooled.shape[-1]) != want:
            raise ControlNetError(f"ControlNet {control.control_net.name!r} is a Flux.1 ControlNet (pooled text "
                                  f"embedding {want} wide), but this conditioning's pooled embedding is "
                                  f"{int(pooled.shape[-1])} wide: it is not a Flux text encoding")
        return
    dim = net.config.cross_attention_dim
    want = int(dim[0] if isinstance(dim, (list, tuple)) else dim)
    got = int(embeds.shape[-1])
    if got != want:
        def family(width: int) -> str:
            fam = CONTEXT_DIMS.get(width)
            return f"{FAMILY_NAMES[fam]} models" if fam else f"models with {width}-wide text embeddings"
        made_for = FAMILY_NAMES.get(getattr(control.control_net, "family", None))
        raise ControlNetError(f"ControlNet {control.control_net.name!r} is made for "
                              f"{made_for + ' models' if made_for else family(want)} (text "
                              f"embeddings {want} wide), but this conditioning comes from {family(got)} "
                              f"({got} wide); load a ControlNet made for that model's family")


def with_control(conditioning: list, control) -> list:
    """A copy of ``conditioning`` whose items carry ``control`` after their existing controls."""
    if not isinstance(conditioning, list):
        raise TypeError(f"expected CONDITIONING (a list of CondItem), got {type(conditioning).__name__}")
    out = []
    for item in conditioning:  # another family's ControlNet is refused now, not inside the sampler
        check_text_width(control, getattr(item, "embeds", None), getattr(item, "pooled", None))
    for item in conditioning:
        controls = list(item.extras.get("controls") or [])
        controls.append(control)
        extras = dict(item.extras)
        extras["controls"] = controls
        out.append(item.copy(extras=extras))
    return out


@node("ControlNetApply", category="controlnet",
      description="Guide generation with a ControlNet and its control image (positive conditioning).",
      inputs=[Input.link("conditioning", T.CONDITIONING), Input.link("control_net", T.CONTROL_NET),
              Input.link("image", T.IMAGE),
              Input.float("strength", 1.0, min=0.0, max=10.0, step=0.01)],
      outputs=[Output("conditioning", T.CONDITIONING)], keywords=("controlnet",))
def controlnet_apply(ctx, conditioning, control_net, image, strength=1.0):
    if strength == 0:
        return conditioning
    return with_control(conditioning, control_net.control(image, strength, 0.0, 1.0))


@node("ControlNetApplyAdvanced", category="controlnet",
      description="Apply a ControlNet to positive and negative conditioning over part of the schedule.",
      inputs=[Input.link("positive", T.CONDITIONING), Input.link("negative", T.CONDITIONING),
              Input.link("control_net", T.CONTROL_NET), Input.link("image", T.IMAGE),
              Input.float("strength", 1.0, min=0.0, max=10.0, step=0.01),
              Input.float("start_percent", 0.0, min=0.0, max=1.0, step=0.001,
                          description="Fraction of the schedule where the control starts"),
              Input.float("end_percent", 1.0, min=0.0, max=1.0, step=0.001,
                          description="Fraction of the schedule where the control ends"),
              Input.link("vae", T.VAE, optional=True,
                         description="The VAE that encodes the control image for Flux.1 ControlNets "
                                     "(InstantX, Shakker) and SD3 / SD 3.5 ControlNets; SD1.x/SDXL "
                                     "ControlNets take the image as pixels")],
      outputs=[Output("positive", T.CONDITIONING), Output("negative", T.CONDITIONING)],
      keywords=("controlnet",))
def controlnet_apply_advanced(ctx, positive, negative, control_net, image, strength=1.0,
                              start_percent=0.0, end_percent=1.0, vae=None):
    if start_percent > end_percent:
        raise ValueError(f"ControlNetApplyAdvanced: start_percent ({start_percent}) must not "
                         f"exceed end_percent ({end_percent})")
    if strength == 0:
        return positive, negative
    if getattr(control_net, "family", None) in ("flux", "sd3"):  # these encode the image with the VAE
        try:
            control = control_net.control(image, strength, start_percent, end_percent, vae=vae)
        except ValueError as e:
            raise ValueError(f"ControlNetApplyAdvanced: vae: {e}") from e
    else:
        control = control_net.control(image, strength, start_percent, end_percent)
    return _with_control_named(positive, control, "positive"), _with_control_named(negative, control, "negative")


def _with_control_named(conditioning: list, control, input_name: str, node_name: str = "ControlNetApplyAdvanced") -> list:
    """:func:`with_control`, a refusal naming the node and its input."""
    from nodegen.models.controlnet import ControlNetError

    try:
        return with_control(conditioning, control)
    except ControlNetError as e:
        raise ControlNetError(f"{node_name}: {input_name}: {e}") from e


@node("SetUnionControlNetType", category="controlnet",
      description="Tell a union ControlNet (SDXL ControlNet++ / promax, Flux InstantX / Shakker union) which "
                  "kind of control image it gets, numbered as ComfyUI numbers them ('auto': no type, as with "
                  "no SetUnionControlNetType; run as ComfyUI runs it).",
      inputs=[Input.link("control_net", T.CONTROL_NET),
              Input.choice("type", ["auto", "openpose", "depth", "hed/pidi/scribble/ted",
                                    "canny/lineart/anime_lineart/mlsd", "normal", "segment", "tile", "repaint"],
                           "auto")],
      outputs=[Output("control_net", T.CONTROL_NET)], keywords=("union", "promax", "controlnet++"))
def set_union_controlnet_type(ctx, control_net, type):  # noqa: A002 - ComfyUI's name
    if not hasattr(control_net, "with_type"):
        raise ValueError(f"input 'control_net' is not a union ControlNet ({control_net!r}); only union "
                         f"models (ControlNet++ / promax) take a control type")
    return control_net.with_type(None if type == "auto" else type)


@node("ControlNetInpaintingAliMamaApply", category="controlnet",
      description="Apply an inpainting ControlNet (Alimama's SD3 or Flux.1 inpainting ControlNet) with the image "
                  "and the mask of the area to repaint, to positive and negative conditioning over part of the "
                  "schedule.",
      inputs=[Input.link("positive", T.CONDITIONING), Input.link("negative", T.CONDITIONING),
              Input.link("control_net", T.CONTROL_NET),
              Input.link("vae", T.VAE, description="The VAE that encodes the masked image"),
              Input.link("image", T.IMAGE), Input.link("mask", T.MASK, description="1 where the image is repainted"),
              Input.float("strength", 1.0, min=0.0, max=10.0, step=0.01),
              Input.float("start_percent", 0.0, min=0.0, max=1.0, step=0.001,
                          description="Fraction of the schedule where the control starts"),
              Input.float("end_percent", 1.0, min=0.0, max=1.0, step=0.001,
                          description="Fraction of the schedule where the control ends")],
      outputs=[Output("positive", T.CONDITIONING), Output("negative", T.CONDITIONING)],
      keywords=("controlnet", "inpaint", "alimama"))
def controlnet_inpainting_alimama_apply(ctx, positive, negative, control_net, vae, image, mask, strength=1.0,
                                        start_percent=0.0, end_percent=1.0):
    from nodegen.models.inpaint_control import as_mask, masked_image

    name = "ControlNetInpaintingAliMamaApply"
    if not getattr(control_net, "is_inpainting", False):
        raise ValueError(f"{name}: control_net: {control_net!r} is not an inpainting ControlNet (no extra "
                         "conditioning channel for the mask); load an inpainting ControlNet (Alimama's SD3 or "
                         "Flux.1 inpainting ControlNet) or use ControlNetApplyAdvanced")
    if start_percent > end_percent:
        raise ValueError(f"{name}: start_percent ({start_percent}) must not exceed end_percent ({end_percent})")
    m = as_mask(mask, image, name)
    if strength == 0:
        return positive, negative
    try:
        control = control_net.control(masked_image(image, m), strength, start_percent, end_percent, vae=vae,
                                      keep=1.0 - m)
    except ValueError as e:
        raise ValueError(f"{name}: vae: {e}") from e
    return (_with_control_named(positive, control, "positive", name),
            _with_control_named(negative, control, "negative", name))
