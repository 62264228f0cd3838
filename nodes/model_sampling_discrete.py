"""ModelSamplingDiscrete: tell nodegen what a discrete-time (SD1/SD2/SDXL) model predicts (eps,
v, x0, or an LCM-distilled model) and optionally rescale its schedule to zero terminal SNR; see
:mod:`nodegen.diffusion.model_sampling` (DistilledModelSampling, zero_terminal_snr)."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

#: ComfyUI's sampling names -> nodegen's prediction types
PREDICTIONS = {"eps": "epsilon", "v_prediction": "v_prediction", "lcm": "lcm", "x0": "x0",
               "img_to_img": "img_to_img"}


@node("ModelSamplingDiscrete", category="advanced/model",
      description="Set what the model predicts (eps, v, LCM-distilled, x0, img_to_img) and optionally rescale its "
                  "noise schedule to zero terminal SNR.",
      inputs=[Input.link("model", T.MODEL),
              Input.choice("sampling", list(PREDICTIONS), "eps",
                           description="eps: noise (most SD models); v_prediction: v models (SD2-768, some "
                                       "SDXL fine-tunes); lcm: latent consistency models and LoRAs; x0: the "
                                       "model gives the clean image; img_to_img: x0, and the model sees its "
                                       "input unscaled (Lotus depth/normal models)"),
              Input.bool("zsnr", False, description="Rescale the schedule to zero terminal SNR (models trained "
                                                    "that way, usually with v_prediction)")],
      outputs=[Output("model", T.MODEL)], keywords=("lcm", "v-prediction", "zsnr", "vpred"))
def model_sampling_discrete(ctx, model, sampling="eps", zsnr=False):
    if getattr(model, "prediction_type", None) == "flow":
        raise ValueError(f"ModelSamplingDiscrete: input 'model' is a {model.family} flow model; use "
                         "ModelSamplingSD3 / ModelSamplingFlux for it")
    out = model.clone()
    out.prediction_type = PREDICTIONS[sampling]
    out.options.pop("continuous_sampling", None)  # discrete again after ModelSamplingContinuousEDM / V
    if zsnr:
        from nodegen.diffusion.model_sampling import zero_terminal_snr

        out.alphas_cumprod = zero_terminal_snr(model.alphas_cumprod)
    return out
