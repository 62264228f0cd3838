"""TemporalScoreRescaling as a model patch, as ComfyUI's node ("TSR - Temporal Score Rescaling");
see :mod:`nodegen.diffusion.temporal_score_rescaling`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node


@node("TemporalScoreRescaling", category="advanced/model", display_name="TSR - Temporal Score Rescaling",
      description="Rescale the model's score each step to steer sampling diversity: lower k gives more "
                  "detail, higher k smoother results (1: off).",
      inputs=[Input.link("model", T.MODEL),
              Input.float("tsr_k", 0.95, min=0.01, max=100.0, step=0.001, description="Rescaling strength (1: off)"),
              Input.float("tsr_sigma", 1.0, min=0.01, max=100.0, step=0.001,
                          description="How early the rescaling takes effect (larger: earlier)")],
      outputs=[Output("patched_model", T.MODEL)], keywords=("tsr", "diversity"))
def temporal_score_rescaling(ctx, model, tsr_k=0.95, tsr_sigma=1.0):
    from nodegen.diffusion.temporal_score_rescaling import TemporalScoreRescaling

    return model.with_denoise_hook(TemporalScoreRescaling(tsr_k, tsr_sigma))
