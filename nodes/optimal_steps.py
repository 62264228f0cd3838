"""OptimalStepsScheduler: the Optimal Stepsize schedules of flow models (Pei et al. 2025), as
ComfyUI's node; see :mod:`nodegen.diffusion.optimal_steps`."""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

MODEL_TYPES = ["FLUX", "Wan", "Chroma"]


@node("OptimalStepsScheduler", category="sampling/custom/sigmas",
      description="Published optimal noise levels for flow models (Flux and others), spread over the steps.",
      inputs=[Input.choice("model_type", MODEL_TYPES, "FLUX"),
              Input.int("steps", 20, min=3, max=1000, description="Number of sampling steps"),
              Input.float("denoise", 1.0, min=0.0, max=1.0, step=0.01)],
      outputs=[Output("sigmas", T.SIGMAS)], keywords=("schedule", "optimal stepsize"))
def optimal_steps_scheduler(ctx, model_type="FLUX", steps=20, denoise=1.0):
    from nodegen.diffusion.optimal_steps import optimal_steps_sigmas

    return optimal_steps_sigmas(model_type, int(steps), float(denoise))
