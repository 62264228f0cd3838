"""ModelSamplingContinuousEDM and ModelSamplingContinuousV: tell nodegen that an SD/SDXL-type model
was trained in continuous time (any sigma in a range, no table of training timesteps): CosXL and
Playground v2.5 (EDM), continuous v-prediction fine-tunes, Cosmos-style rectified flow; see
:mod:`nodegen.diffusion.continuous_sampling` (and :mod:`nodegen.diffusion.latent_formats` for
Playground v2.5's per-channel latent normalisation)."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

#: ComfyUI's sampling names -> (timing, prediction type, sigma_data, latent format or None)
EDM_SAMPLINGS = {"v_prediction": ("edm", "v_prediction", 1.0, None),
                 "edm": ("edm", "edm", 0.5, None),
                 "edm_playground_v2.5": ("edm", "edm", 0.5, "sdxl_playground_2_5"),
                 "eps": ("edm", "epsilon", 1.0, None),
                 "cosmos_rflow": ("cosmos_rflow", "cosmos_rflow", 1.0, None)}
V_SAMPLINGS = {"v_prediction": ("v", "v_prediction", 1.0, None)}
#: the family a latent format is defined for
FORMAT_FAMILY = {"sdxl_playground_2_5": "sdxl"}


def _sigma_inputs(sigma_max: float, sigma_min: float) -> list:
    return [Input.float("sigma_max", sigma_max, min=0.0, max=1000.0, step=0.001,
                        description="The highest noise level (the schedules start here)"),
            Input.float("sigma_min", sigma_min, min=0.0, max=1000.0, step=0.001,
                        description="The lowest noise level (the schedules end here, then 0)")]


@node("ModelSamplingContinuousEDM", category="advanced/model",
      description="Sample an SD/SDXL-type model as a continuous-time (EDM) model: CosXL and Playground v2.5 "
                  "(edm, edm_playground_v2.5), continuous eps / v models, Cosmos rectified flow.",
      inputs=[Input.link("model", T.MODEL),
              Input.choice("sampling", list(EDM_SAMPLINGS), "v_prediction",
                           description="v_prediction: continuous v models (CosXL); edm: Karras' EDM "
                                       "preconditioning (sigma_data 0.5); edm_playground_v2.5: EDM and "
                                       "Playground v2.5's latent normalisation; eps: noise; cosmos_rflow: "
                                       "rectified flow in EDM sigmas"),
              *_sigma_inputs(120.0, 0.002)],
      outputs=[Output("model", T.MODEL)], keywords=("edm", "cosxl", "playground", "continuous", "v-prediction"))
def model_sampling_continuous_edm(ctx, model, sampling="v_prediction", sigma_max=120.0, sigma_min=0.002):
    return _continuous(model, "ModelSamplingContinuousEDM", EDM_SAMPLINGS, sampling, sigma_max, sigma_min)


@node("ModelSamplingContinuousV", category="advanced/model",
      description="Sample an SD/SDXL-type model as a continuous-time v-prediction model (timestep "
                  "atan(sigma) * 2 / pi).",
      inputs=[Input.link("model", T.MODEL),
              Input.choice("sampling", list(V_SAMPLINGS), "v_prediction",
                           description="v_prediction: the model predicts v"),
              *_sigma_inputs(500.0, 0.03)],
      outputs=[Output("model", T.MODEL)], keywords=("continuous", "v-prediction"))
def model_sampling_continuous_v(ctx, model, sampling="v_prediction", sigma_max=500.0, sigma_min=0.03):
    return _continuous(model, "ModelSamplingContinuousV", V_SAMPLINGS, sampling, sigma_max, sigma_min)


def _continuous(model, node_name: str, samplings: dict, sampling: str, sigma_max: float, sigma_min: float):
    """A clone of ``model`` sampled in continuous time (``options["continuous_sampling"]``, read by
    :func:`nodegen.diffusion.sample.model_sampling_for`)."""
    if getattr(model, "prediction_type", None) == "flow":
        raise ValueError(f"{node_name}: input 'model' is a {model.family} flow model; use "
                         "ModelSamplingSD3 / ModelSamplingFlux for it")
    if sampling not in samplings:
        raise ValueError(f"{node_name}: input 'sampling' is {sampling!r}; choose one of {', '.join(samplings)}")
    if not sigma_min > 0:
        raise ValueError(f"{node_name}: input 'sigma_min' must be greater than 0, got {sigma_min}")
    if not sigma_max > sigma_min:
        raise ValueError(f"{node_name}: input 'sigma_max' ({sigma_max}) must be greater than 'sigma_min' "
                         f"({sigma_min})")
    timing, prediction, sigma_data, latent_format = samplings[sampling]
    if latent_format is not None and getattr(model, "family", None) != FORMAT_FAMILY[latent_format]:
        raise ValueError(f"{node_name}: input 'sampling' {sampling!r} is for {FORMAT_FAMILY[latent_format]} "
                         f"models, but input 'model' is a {getattr(model, 'family', '?')} model")
    out = model.clone()
    out.prediction_type = prediction
    out.options["continuous_sampling"] = {"timing": timing, "prediction_type": prediction,
                                          "sigma_min": float(sigma_min), "sigma_max": float(sigma_max),
                                          "sigma_data": sigma_data}
    if latent_format is not None:
        out.options["latent_format"] = latent_format
    return out
