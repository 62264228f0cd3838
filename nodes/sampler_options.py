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


def _float(name: str, default: float, description: str = "", min_: float = 0.0, max_: float = 100.0):
    return Input.float(name, default, min=min_, max=max_, step=0.01, description=description)


@node("SamplerDPMAdaptative", category=_CATEGORY,
      description="DPM-Solver adaptive: chooses its own step sizes within the schedule's range by an error "
                  "estimate (the number of model calls varies).",
      inputs=[Input.int("order", 3, min=2, max=3), _float("rtol", 0.05, "Relative error tolerance"),
              _float("atol", 0.0078, "Absolute error tolerance"), _float("h_init", 0.05, "First step size"),
              _float("pcoeff", 0.0), _float("icoeff", 1.0), _float("dcoeff", 0.0),
              _float("accept_safety", 0.81), _eta(0.0), _s_noise()], outputs=_OUT)
def sampler_dpm_adaptive(ctx, order, rtol, atol, h_init, pcoeff, icoeff, dcoeff, accept_safety, eta, s_noise):
    from nodegen.diffusion.samplers import get_sampler

    return get_sampler("dpm_adaptive", order=int(order), rtol=rtol, atol=atol, h_init=h_init, pcoeff=pcoeff,
                       icoeff=icoeff, dcoeff=dcoeff, accept_safety=accept_safety, eta=eta, s_noise=s_noise)


@node("SamplerER_SDE", category=_CATEGORY,
      description="ER-SDE-Solver-3 with its variant: ER-SDE, a reverse-time SDE of strength eta, or the ODE.",
      inputs=[Input.choice("solver_type", ["ER-SDE", "Reverse-time SDE", "ODE"], "ER-SDE"),
              Input.int("max_stage", 3, min=1, max=3, description="Order (stages) of the solver"),
              _eta(), _s_noise()], outputs=_OUT)
def sampler_er_sde(ctx, solver_type, max_stage, eta, s_noise):
    from nodegen.diffusion.samplers import get_sampler

    if solver_type == "ER-SDE":  # ComfyUI: eta does not apply to ER-SDE's own noise scale
        eta = 1.0
    return get_sampler("er_sde", solver_type=solver_type, max_stage=int(max_stage), eta=eta, s_noise=s_noise)


@node("SamplerSASolver", category=_CATEGORY,
      description="SA-Solver with its options: stochastic between sde_start_percent and sde_end_percent of "
                  "the model's schedule, deterministic outside.",
      inputs=[Input.link("model", T.MODEL), _eta(1.0, 10.0),
              Input.float("sde_start_percent", 0.2, min=0.0, max=1.0, step=0.001),
              Input.float("sde_end_percent", 0.8, min=0.0, max=1.0, step=0.001), _s_noise(),
              Input.int("predictor_order", 3, min=1, max=6), Input.int("corrector_order", 4, min=0, max=6),
              Input.bool("use_pece", False, description="Evaluate the model again after each correction"),
              Input.bool("simple_order_2", False)], outputs=_OUT)
def sampler_sa_solver(ctx, model, eta, sde_start_percent, sde_end_percent, s_noise, predictor_order,
                      corrector_order, use_pece, simple_order_2):
    from nodegen.diffusion.model_sampling import percent_to_sigma
    from nodegen.diffusion.sample import model_sampling_for
    from nodegen.diffusion.samplers import get_sampler

    ms = model_sampling_for(model)
    interval = (percent_to_sigma(ms, sde_start_percent), percent_to_sigma(ms, sde_end_percent))
    return get_sampler("sa_solver", eta=eta, s_noise=s_noise, predictor_order=int(predictor_order),
                       corrector_order=int(corrector_order), use_pece=bool(use_pece),
                       simple_order_2=bool(simple_order_2), tau_interval=interval)


@node("SamplerSEEDS2", category=_CATEGORY,
      description="SEEDS-2 with its options (phi_2, r 1, eta 0 is exp_heun_2_x0; eta 1 its SDE form).",
      inputs=[Input.choice("solver_type", ["phi_1", "phi_2"], "phi_1"), _eta(), _s_noise(),
              Input.float("r", 0.5, min=0.01, max=1.0, step=0.01,
                          description="Relative step size of the intermediate stage")], outputs=_OUT)
def sampler_seeds_2(ctx, solver_type, eta, s_noise, r):
    from nodegen.diffusion.samplers import get_sampler

    return get_sampler("seeds_2", solver_type=solver_type, eta=eta, s_noise=s_noise, r=r)


@node("SamplerEulerCFGpp", category=_CATEGORY, display_name="SamplerEulerCFG++",
      description="Euler with CFG++: 'regular' is KSampler's euler_cfg_pp; 'alternative' ComfyUI's other "
                  "formulation (a step along x - 2 * guided + unconditional).",
      inputs=[Input.choice("version", ["regular", "alternative"], "regular")], outputs=_OUT)
def sampler_euler_cfg_pp(ctx, version="regular"):
    from nodegen.diffusion.samplers import Sampler, get_sampler
    from nodegen.diffusion.samplers.euler_pp import sample_euler_pp

    if version == "alternative":
        return Sampler("euler_pp", sample_euler_pp)
    return get_sampler("euler_cfg_pp")


@node("SamplerLCMUpscale", category=_CATEGORY,
      description="LCM sampling that enlarges the latent step by step to scale_ratio times its size (the "
                  "result is the larger latent).",
      inputs=[Input.float("scale_ratio", 1.0, min=0.1, max=20.0, step=0.01, description="Final size factor"),
              Input.int("scale_steps", -1, min=-1, max=1000,
                        description="Over how many of the first steps to enlarge (-1: about half of them)"),
              Input.choice("upscale_method", ["bislerp", "nearest-exact", "bilinear", "area", "bicubic"], "bislerp")],
      outputs=_OUT, keywords=("lcm", "upscale"))
def sampler_lcm_upscale(ctx, scale_ratio=1.0, scale_steps=-1, upscale_method="bislerp"):
    from nodegen.diffusion.samplers import Sampler
    from nodegen.diffusion.samplers.lcm_upscale import sample_lcm_upscale

    steps = None if scale_steps < 0 else int(scale_steps)
    return Sampler("lcm_upscale", sample_lcm_upscale,
                   {"total_upscale": float(scale_ratio), "upscale_steps": steps, "upscale_method": upscale_method})
