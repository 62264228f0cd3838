"""Per-sampler nodes of custom sampling: a SAMPLER with its options set (ComfyUI's
SamplerEulerAncestral, SamplerDPMPP_2M_SDE, ...). KSamplerSelect gives the defaults.

``noise_device`` is kept for ComfyUI's files: nodegen draws step noise on the CPU from the seed
whatever the device (results are the same on every machine), so ``gpu`` and ``cpu`` sample alike.
"""

from __future__ import annotations

from nodegen.kernel import types as T
from nodegen.kernel.node import Input, Output, node

_OUT = [Output("sampler", T.SAMPLER)]
_CATEGORY = "sampling/custom/samplers"


def _eta(default=1.0, max_=100.0):
    return Input.float("eta", default, min=0.0, max=max_, step=0.01,
                       description="Amount of fresh noise per step (0: deterministic)")


def _s_noise(max_=100.0):
    return Input.float("s_noise", 1.0, min=0.0, max=max_, step=0.01, description="Scale of the step noise")


def _noise_device():
    return Input.choice("noise_device", ["gpu", "cpu"], "gpu",
                        description="Kept for ComfyUI files; nodegen's step noise is always seeded on the CPU")


@node("SamplerEulerAncestral", category=_CATEGORY, description="Euler ancestral with its options.",
      inputs=[_eta(), _s_noise()], outputs=_OUT)
def sampler_euler_ancestral(ctx, eta, s_noise):
    from nodegen.diffusion.samplers import get_sampler

    return get_sampler("euler_ancestral", eta=eta, s_noise=s_noise)


@node("SamplerEulerAncestralCFGPP", category=_CATEGORY,
      description="Euler ancestral with CFG++ guidance, with its options.",
      inputs=[_eta(1.0, 1.0), _s_noise(10.0)], outputs=_OUT)
def sampler_euler_ancestral_cfg_pp(ctx, eta, s_noise):
    from nodegen.diffusion.samplers import get_sampler

    return get_sampler("euler_ancestral_cfg_pp", eta=eta, s_noise=s_noise)


@node("SamplerDPMPP_2S_Ancestral", category=_CATEGORY,
      description="DPM-Solver++(2S) ancestral with its options.", inputs=[_eta(), _s_noise()], outputs=_OUT)
def sampler_dpmpp_2s_ancestral(ctx, eta, s_noise):
    from nodegen.diffusion.samplers import get_sampler

    return get_sampler("dpmpp_2s_ancestral", eta=eta, s_noise=s_noise)


@node("SamplerDPMPP_2M_SDE", category=_CATEGORY, description="DPM-Solver++(2M) SDE with its options.",
      inputs=[Input.choice("solver_type", ["midpoint", "heun"], "midpoint"), _eta(), _s_noise(),
              _noise_device()], outputs=_OUT)
def sampler_dpmpp_2m_sde(ctx, solver_type, eta, s_noise, noise_device):
    from nodegen.diffusion.samplers import get_sampler

    return get_sampler("dpmpp_2m_sde", eta=eta, s_noise=s_noise, solver_type=solver_type)


@node("SamplerDPMPP_SDE", category=_CATEGORY, description="DPM-Solver++ SDE with its options.",
      inputs=[_eta(), _s_noise(), Input.float("r", 0.5, min=0.0, max=100.0, step=0.01,
                                              description="Where the intermediate step lies (0..1)"),
              _noise_device()], outputs=_OUT)
def sampler_dpmpp_sde(ctx, eta, s_noise, r, noise_device):
    from nodegen.diffusion.samplers import get_sampler

    return get_sampler("dpmpp_sde", eta=eta, s_noise=s_noise, r=r)


@node("SamplerDPMPP_3M_SDE", category=_CATEGORY, description="DPM-Solver++(3M) SDE with its options.",
      inputs=[_eta(), _s_noise(), _noise_device()], outputs=_OUT)
def sampler_dpmpp_3m_sde(ctx, eta, s_noise, noise_device):
    from nodegen.diffusion.samplers import get_sampler

    return get_sampler("dpmpp_3m_sde", eta=eta, s_noise=s_noise)


@node("SamplerLMS", category=_CATEGORY, description="Linear multistep with its order.",
      inputs=[Input.int("order", 4, min=1, max=100)], outputs=_OUT)
def sampler_lms(ctx, order):
    from nodegen.diffusion.samplers import get_sampler

    return get_sampler("lms", order=order)
