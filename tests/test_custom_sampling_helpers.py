"""Per-sampler nodes (options reach the algorithm) and SIGMAS surgery nodes (ComfyUI's rules)."""

from __future__ import annotations

import torch

from tests.support.nodes import run


def test_per_sampler_nodes_carry_their_options():
    s = run("SamplerDPMPP_2M_SDE", solver_type="heun", eta=0.7, s_noise=1.2, noise_device="gpu")["sampler"]
    assert s.name == "dpmpp_2m_sde" and s.options == {"eta": 0.7, "s_noise": 1.2, "solver_type": "heun"}
    assert s.brownian
    assert run("SamplerEulerAncestral", eta=0.0, s_noise=1.0)["sampler"].options["eta"] == 0.0
    assert run("SamplerDPMPP_SDE", eta=1.0, s_noise=1.0, r=0.3, noise_device="cpu")["sampler"].options["r"] == 0.3
    assert run("SamplerLMS", order=3)["sampler"].options == {"order": 3}
    assert run("SamplerEulerAncestralCFGPP", eta=1.0, s_noise=1.0)["sampler"].name == "euler_ancestral_cfg_pp"
    # eta 0 really makes euler ancestral deterministic
    x = torch.randn(1, 4, 4, 4) * 14.6
    sig = torch.tensor([14.6, 3.0, 0.5, 0.0])
    smp = run("SamplerEulerAncestral", eta=0.0, s_noise=1.0)["sampler"]
    from nodegen.diffusion.samplers import get_sampler

    def model(x, sigma, **kw):
        return x * 0.25 / (0.25 + sigma.reshape(-1, 1, 1, 1) ** 2)

    assert torch.allclose(smp(model, x, sig), get_sampler("euler")(model, x, sig), atol=1e-5)


def test_flip_sigmas():
    out = run("FlipSigmas", sigmas=torch.tensor([10.0, 2.0, 0.5, 0.0]))["sigmas"]
    assert torch.allclose(out, torch.tensor([0.0001, 0.5, 2.0, 10.0]))


def test_split_sigmas_denoise():
    s = torch.tensor([10.0, 6.0, 3.0, 1.0, 0.0])
    out = run("SplitSigmasDenoise", sigmas=s, denoise=0.5)
    assert out["high_sigmas"].tolist() == [10.0, 6.0, 3.0] and out["low_sigmas"].tolist() == [3.0, 1.0, 0.0]
    out = run("SplitSigmasDenoise", sigmas=s, denoise=1.0)
    assert out["high_sigmas"].tolist() == [10.0] and torch.equal(out["low_sigmas"], s)
    out = run("SplitSigmasDenoise", sigmas=s, denoise=0.0)
    assert out["high_sigmas"].tolist() == [] and out["low_sigmas"].tolist() == [0.0]


def test_schedule_nodes():
    ays = run("AlignYourStepsScheduler", model_type="SDXL", steps=10, denoise=1.0)["sigmas"]
    assert len(ays) == 11 and abs(float(ays[1]) - 6.3184485287) < 1e-5
    lap = run("LaplaceScheduler", steps=5, sigma_max=14.6, sigma_min=0.03, mu=0.0, beta=0.5)["sigmas"]
    assert len(lap) == 6 and float(lap[-1]) == 0.0


def test_add_noise_uses_the_seed_rule_and_the_schedule_span():
    from types import SimpleNamespace

    from nodegen.diffusion.noise import prepare_noise

    lat = {"samples": torch.full((2, 4, 3, 3), 0.5), "noise_mask": torch.ones(2, 1, 3, 3)}
    sig = torch.tensor([10.0, 4.0, 1.0])
    out = run("AddNoise", model=None, noise=SimpleNamespace(seed=7, add=True), sigmas=sig, latent_image=lat)["latent"]
    n, _ = prepare_noise(lat["samples"], 7)
    assert torch.allclose(out["samples"], 0.5 + n * 9.0) and "noise_mask" in out
    one = run("AddNoise", model=None, noise=SimpleNamespace(seed=7, add=True), sigmas=sig[:1], latent_image=lat)
    assert torch.allclose(one["latent"]["samples"], 0.5 + n * 10.0)
    off = run("AddNoise", model=None, noise=SimpleNamespace(seed=7, add=False), sigmas=sig, latent_image=lat)
    assert torch.equal(off["latent"]["samples"], lat["samples"])
    assert run("AddNoise", model=None, noise=SimpleNamespace(seed=1), sigmas=torch.zeros(0),
               latent_image=lat)["latent"] is lat
