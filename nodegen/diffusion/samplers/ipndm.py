"""iPNDM, the improved pseudo-numerical method of Zhang & Chen ("Fast Sampling of Diffusion Models
with Exponential Integrator", 2023), as ComfyUI's ``ipndm`` and ``ipndm_v`` run it (after
zju-pi/diff-sampler, Apache 2): Adams-Bashforth multistep on the probability-flow ODE
``dx/dsigma = eps = (x - D(x, sigma)) / sigma``, up to fourth order, warming up from Euler.

* ``ipndm``: the constant-step Adams-Bashforth weights, whatever the spacing of the sigmas.
* ``ipndm_v``: the variable-step weights of diff-sampler's ``ipndm_v``, which follow the actual
  spacing ``h_k = sigma_k+1 - sigma_k`` (second order: the exact variable-step AB2; third and fourth
  order: the published closed forms; on even spacing the third-order one is AB3, while the
  fourth-order one gives (57, -65, 43, -11) / 24 rather than AB4's weights, and on uneven spacing
  its weights need not sum to 1; kept as published so results match ComfyUI's).

The step to sigma 0 lands on the denoised estimate (an Euler step there).
"""

from __future__ import annotations

import torch

from nodegen.diffusion.samplers._common import report, s_in_like

#: Adams-Bashforth weights of eps now and at the previous steps (newest first), by order.
AB_WEIGHTS: dict[int, tuple[float, ...]] = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}


def variable_weights(h: list[float]) -> tuple[float, ...]:
    """diff-sampler's ``ipndm_v`` weights for steps ``h = [h_n, h_n-1, ...]`` (newest first, one
    more step than history points used; ``len(h)`` is the order)."""
    order = len(h)
    if order == 1:
        return (1.0,)
    r1 = h[0] / h[1]
    w = [1 + r1 / 2, -r1 / 2]
    if order == 2:
        return tuple(w)
    h0, h1, h2 = h[0], h[1], h[2]
    t1 = (1 - h0 / (3 * (h0 + h1)) * (h0 * (h0 + h1)) / (h1 * (h1 + h2))) / 2
    q1 = h1 / h2
    w = [w[0] + t1, w[1] - (1 + q1) * t1, t1 * q1]
    if order == 3:
        return tuple(w)
    h3 = h[3]
    t2 = ((1 - h0 / (3 * (h0 + h1))) / 2 + (1 - h0 / (2 * (h0 + h1))) * h0 / (6 * (h0 + h1 + h2))) \
        * (h0 * (h0 + h1) * (h0 + h1 + h2)) / (h1 * (h1 + h2) * (h1 + h2 + h3))
    q2 = h1 * (h1 + h2) / (h2 * (h2 + h3))
    return (w[0] + t2, w[1] - (1 + q1 + q2) * t2, w[2] + (q1 + q2 * (1 + h2 / h3)) * t2, -t2 * q2 * q1)


def _ipndm(model, x, sigmas, extra_args, callback, max_order: int, variable: bool):
    if not 1 <= max_order <= 4:
        raise ValueError(f"ipndm: max_order must be 1 to 4, got {max_order}")
    extra_args = extra_args or {}
    s_in = s_in_like(x)
    steps = [float(s) for s in sigmas]
    history: list[torch.Tensor] = []  # eps of the previous steps, newest first
    for i in range(len(sigmas) - 1):
        denoised = model(x, sigmas[i] * s_in, **extra_args)
        report(callback, x, i, sigmas[i], sigmas[i], denoised)
        eps = (x - denoised) / sigmas[i]
        order = min(max_order, i + 1)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            if variable:
                weights = variable_weights([steps[i + 1 - k] - steps[i - k] for k in range(order)])
            else:
                weights = AB_WEIGHTS[order]
            slope = weights[0] * eps
            for w, old in zip(weights[1:], history, strict=True):
                slope = slope + w * old
            x = x + (sigmas[i + 1] - sigmas[i]) * slope
        history = [eps, *history][: max_order - 1]
    return x


@torch.no_grad()
def sample_ipndm(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
                 max_order=4):
    return _ipndm(model, x, sigmas, extra_args, callback, max_order, variable=False)


@torch.no_grad()
def sample_ipndm_v(model, x, sigmas, extra_args=None, callback=None, disable=None, noise_sampler=None,
                   max_order=4):
    return _ipndm(model, x, sigmas, extra_args, callback, max_order, variable=True)
