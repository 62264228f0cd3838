"""ComfyUI core nodes that published workflows use and nodegen lacked (nodegen/formats/comfy/map_core_gaps.py):
Perp-Neg, SIGMAS edits, per-sampler nodes, latent operations, Epsilon Scaling, ControlNetApplySD3.

Oracles: ComfyUI's own rules, written out below from its source (comfy_extras/nodes_perpneg.py,
nodes_custom_sampler.py, nodes_latent.py, nodes_eps.py, comfy/model_sampling.py), transcribed
rather than imported (ComfyUI is not installed here); where a rule reduces to something diffusers
computes (the discrete sigmas of a model's schedule), diffusers is the reference for that part.
Sampling runs use the tiny SD1 fixture and put ComfyUI's rule in as a hook on the plain model,
computing each prediction afresh, so the nodes' wiring (which prediction is which, which cfg) is
checked, not only the formula.
"""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from nodegen.models.objects import DiffusionModel, TextEncoder
from tests.support.comfy_run import models_folder, run_api
from tests.support.fixtures import fixture
from tests.support.nodes import run
from tests.support.sampling import sample

torch.set_num_threads(1)
DATA = Path(__file__).parent / "data" / "comfy"


# -- ComfyUI's rules, written out ---------------------------------------------------------------------
def comfy_perp_neg(x, noise_pred_pos, noise_pred_neg, noise_pred_nocond, neg_scale, cond_scale):
    """comfy_extras/nodes_perpneg.py: perp_neg."""
    pos = noise_pred_pos - noise_pred_nocond
    neg = noise_pred_neg - noise_pred_nocond
    perp = neg - ((torch.mul(neg, pos).sum()) / (torch.norm(pos) ** 2)) * pos
    perp_neg = perp * neg_scale
    return noise_pred_nocond + cond_scale * (pos - perp_neg)


def comfy_extend_intermediate_sigmas(sigmas, steps, start_at_sigma, end_at_sigma, spacing):
    """nodes_custom_sampler.py: ExtendIntermediateSigmas.execute."""
    if start_at_sigma < 0:
        start_at_sigma = float("inf")
    interpolator = {"linear": lambda x: x, "cosine": lambda x: torch.sin(x * math.pi / 2),
                    "sine": lambda x: 1 - torch.cos(x * math.pi / 2)}[spacing]
    x = torch.linspace(0, 1, steps + 1, device=sigmas.device)[1:-1]
    computed_spacing = interpolator(x)
    extended_sigmas = []
    for i in range(len(sigmas) - 1):
        sigma_current = sigmas[i]
        sigma_next = sigmas[i + 1]
        extended_sigmas.append(sigma_current)
        if end_at_sigma <= sigma_current <= start_at_sigma:
            interpolated_steps = computed_spacing * (sigma_next - sigma_current) + sigma_current
            extended_sigmas.extend(interpolated_steps.tolist())
    if len(sigmas) > 0:
        extended_sigmas.append(sigmas[-1])
    return torch.FloatTensor(extended_sigmas)


def comfy_manual_sigmas(sigmas: str):
    """nodes_custom_sampler.py: ManualSigmas.execute."""
    sigmas = re.findall(r"[-+]?(?:\d*\.*\d+)", sigmas)
    return torch.FloatTensor([float(i) for i in sigmas])


def comfy_discrete_percent_to_sigma(alphas_cumprod: torch.Tensor, percent: float) -> float:
    """comfy/model_sampling.py ModelSamplingDiscrete: sigmas from alphas_cumprod, ``sigma(t)``
    interpolating log-sigma between the integer timesteps, ``percent_to_sigma``."""
    if percent <= 0.0:
        return 999999999.9
    if percent >= 1.0:
        return 0.0
    log_sigmas = (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).log().float()
    t = torch.tensor((1.0 - percent) * 999.0).clamp(min=0, max=len(log_sigmas) - 1)
    low_idx, high_idx = t.floor().long(), t.ceil().long()
    w = t.frac()
    return float(((1 - w) * log_sigmas[low_idx] + w * log_sigmas[high_idx]).exp())


def comfy_gaussian_kernel(kernel_size: int, sigma: float, device=None):
    """comfy_extras/nodes_post_processing.py: gaussian_kernel."""
    x, y = torch.meshgrid(torch.linspace(-1, 1, kernel_size, device=device),
                          torch.linspace(-1, 1, kernel_size, device=device), indexing="ij")
    d = torch.sqrt(x * x + y * y)
    g = torch.exp(-(d * d) / (2.0 * sigma * sigma))
    return g / g.sum()


def comfy_tonemap_reinhard(multiplier):
    """nodes_latent.py: LatentOperationTonemapReinhard.op."""
    def tonemap_reinhard(latent, **kwargs):
        latent_vector_magnitude = (torch.linalg.vector_norm(latent, dim=(1)) + 0.0000000001)[:, None]
        normalized_latent = latent / latent_vector_magnitude
        mean = torch.mean(latent_vector_magnitude, dim=(1, 2, 3), keepdim=True)
        std = torch.std(latent_vector_magnitude, dim=(1, 2, 3), keepdim=True)
        top = (std * 5 + mean) * multiplier
        latent_vector_magnitude *= (1.0 / top)
        new_magnitude = latent_vector_magnitude / (latent_vector_magnitude + 1.0)
        new_magnitude *= top
        return normalized_latent * new_magnitude
    return tonemap_reinhard


def comfy_sharpen(sharpen_radius, sigma, alpha):
    """nodes_latent.py: LatentOperationSharpen.op (its double padding included)."""
    def sharpen(latent, **kwargs):
        luminance = (torch.linalg.vector_norm(latent, dim=(1)) + 1e-6)[:, None]
        normalized_latent = latent / luminance
        channels = latent.shape[1]
        kernel_size = sharpen_radius * 2 + 1
        kernel = comfy_gaussian_kernel(kernel_size, sigma, device=luminance.device)
        center = kernel_size // 2
        kernel *= alpha * -10
        kernel[center, center] = kernel[center, center] - kernel.sum() + 1.0
        padded_image = F.pad(normalized_latent, (sharpen_radius, sharpen_radius, sharpen_radius, sharpen_radius), "reflect")
        sharpened = F.conv2d(padded_image, kernel.repeat(channels, 1, 1).unsqueeze(1), padding=kernel_size // 2,
                             groups=channels)[:, :, sharpen_radius:-sharpen_radius, sharpen_radius:-sharpen_radius]
        return luminance * sharpened
    return sharpen


def comfy_latent_apply_operation_cfg(operation):
    """nodes_latent.py: LatentApplyOperationCFG's pre-CFG function (a skipped negative is zeros)."""
    def pre(cond, uncond):
        return operation(latent=(cond - uncond)) + uncond, uncond
    return pre


def comfy_epsilon_scaling(scaling_factor):
    """nodes_eps.py: EpsilonScaling's post-CFG function."""
    def post(denoised, x):
        return x - (x - denoised) / scaling_factor
    return post


def randn(*shape, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


# -- the SD1 fixture -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    fx = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    te = TextEncoder.from_components([fx.tokenizer], [fx.text_encoder], "sd1")
    return SimpleNamespace(fx=fx, model=DiffusionModel.from_unet(fx.unet, "sd1", "epsilon"),
                           pos=te.encode("a red house"), neg=te.encode("a lion"), empty=te.encode(""))


def _sample(sd1, model, positive=None, negative=None, cfg=6.0, sampler="euler", sigmas=None):
    return sample(model, positive or sd1.pos, negative if negative is not None else sd1.neg,
                  {"samples": torch.zeros(1, 4, 8, 8)}, seed=3, cfg=cfg, sampler=sampler, device="cpu",
                  **(dict(sigmas=sigmas) if sigmas is not None else dict(steps=4, scheduler="normal")))["samples"]


def _guided(sd1, guider, sampler="euler"):
    from tests.support.nodes import run as run_node

    sig = run_node("KarrasScheduler", steps=4, sigma_max=14.6, sigma_min=0.03, rho=7.0)["sigmas"]
    return sample(guider.model, guider.positive, guider.negative, {"samples": torch.zeros(1, 4, 8, 8)}, seed=3,
                  cfg=guider.cfg, sampler=sampler, sigmas=sig, device="cpu")["samples"]


# -- Perp-Neg ------------------------------------------------------------------------------------------
def test_perp_neg_guider_follows_comfyui(sd1):
    """Each step: positive, negative and empty prompt predicted afresh, then ComfyUI's perp_neg. At
    cfg 1 the guider still runs the negative (ComfyUI skips it only at neg_scale 0)."""
    for cfg, neg_scale in ((5.0, 1.5), (1.0, 0.8)):
        guider = run("PerpNegGuider", model=sd1.model, positive=sd1.pos, negative=sd1.neg,
                     empty_conditioning=sd1.empty, cfg=cfg, neg_scale=neg_scale)["guider"]

        def comfy(den, x, sigma, denoised, cfg=cfg, neg_scale=neg_scale):
            preds = [den.predict(c, x, sigma) for c in (sd1.pos, sd1.neg, sd1.empty)]
            return comfy_perp_neg(x, *preds, neg_scale, cfg)

        want = _guided(sd1, SimpleNamespace(model=sd1.model.with_denoise_hook(comfy), positive=sd1.pos,
                                            negative=sd1.neg, cfg=cfg))
        torch.testing.assert_close(_guided(sd1, guider), want, rtol=1e-4, atol=1e-4)
    assert not sd1.model.options.get("denoise_hooks")


def test_perp_neg_at_neg_scale_zero_is_cfg_against_the_empty_prompt(sd1):
    """With neg_scale 0 only ``empty + cfg * (positive - empty)`` is left: CFGGuider with the empty
    prompt as negative computes it on its own (an independent route through the sampler)."""
    perp = run("PerpNegGuider", model=sd1.model, positive=sd1.pos, negative=sd1.neg,
               empty_conditioning=sd1.empty, cfg=4.0, neg_scale=0.0)["guider"]
    cfg = run("CFGGuider", model=sd1.model, positive=sd1.pos, negative=sd1.empty, cfg=4.0)["guider"]
    torch.testing.assert_close(_guided(sd1, perp), _guided(sd1, cfg), rtol=1e-4, atol=1e-4)


def test_perp_neg_model_patch_follows_comfyui(sd1):
    """The deprecated patch replaces KSampler's CFG; at cfg 1 ComfyUI's skipped negative is zeros."""
    patched = run("PerpNeg", model=sd1.model, empty_conditioning=sd1.empty, neg_scale=1.2)["model"]
    for cfg in (6.0, 1.0):
        def comfy(den, x, sigma, denoised, cfg=cfg):
            pos, empty = den.predict(sd1.pos, x, sigma), den.predict(sd1.empty, x, sigma)
            neg = den.predict(sd1.neg, x, sigma) if cfg != 1.0 else torch.zeros_like(pos)
            return comfy_perp_neg(x, pos, neg, empty, 1.2, cfg)

        torch.testing.assert_close(_sample(sd1, patched, cfg=cfg), _sample(sd1, sd1.model.with_denoise_hook(comfy), cfg=cfg),
                                   rtol=1e-4, atol=1e-4)


def test_perp_neg_bad_input_names_node_and_input(sd1):
    with pytest.raises(ValueError, match="PerpNegGuider: input 'empty_conditioning'"):
        run("PerpNegGuider", model=sd1.model, positive=sd1.pos, negative=sd1.neg, empty_conditioning=[],
            cfg=5.0, neg_scale=1.0)
    with pytest.raises(ValueError, match="PerpNeg: input 'empty_conditioning'"):
        run("PerpNeg", model=sd1.model, empty_conditioning="", neg_scale=1.0)


# -- SIGMAS edits ----------------------------------------------------------------------------------------
def test_sigma_edits_follow_comfyui():
    s = torch.tensor([14.6, 8.0, 4.0, 1.5, 0.4, 0.0])
    for kw in (dict(steps=2, start_at_sigma=-1.0, end_at_sigma=12.0, spacing="linear"),
               dict(steps=3, start_at_sigma=-1.0, end_at_sigma=1.0, spacing="cosine"),
               dict(steps=4, start_at_sigma=5.0, end_at_sigma=0.0, spacing="sine"),
               dict(steps=1, start_at_sigma=-1.0, end_at_sigma=0.0, spacing="linear")):
        got = run("ExtendIntermediateSigmas", sigmas=s, **kw)["sigmas"]
        torch.testing.assert_close(got, comfy_extend_intermediate_sigmas(s, **kw))
    assert len(run("ExtendIntermediateSigmas", sigmas=s, steps=3, start_at_sigma=-1.0, end_at_sigma=1.0,
                   spacing="linear")["sigmas"]) == len(s) + 4 * 2  # 4 intervals start at >= 1
    out = run("SetFirstSigma", sigmas=s, sigma=20.5)["sigmas"]
    assert out.tolist()[0] == 20.5 and torch.equal(out[1:], s[1:]) and float(s[0]) == pytest.approx(14.6)
    for text in ("1, 0.5", "14.6 6.0 2.5,0.9 ,0", "-1 +2.5 .5", "", "sigmas: 3; 2; 1"):
        torch.testing.assert_close(run("ManualSigmas", sigmas=text)["sigmas"], comfy_manual_sigmas(text))


def test_sigma_edits_bad_input():
    with pytest.raises(ValueError, match="SetFirstSigma: input 'sigmas' is empty"):
        run("SetFirstSigma", sigmas=torch.zeros(0), sigma=1.0)
    with pytest.raises(ValueError, match="ManualSigmas: input 'sigmas': '1..5'"):
        run("ManualSigmas", sigmas="1..5, 0")
    with pytest.raises(ValueError, match="ExtendIntermediateSigmas: input 'sigmas'"):
        run("ExtendIntermediateSigmas", sigmas="high", steps=2, start_at_sigma=-1.0, end_at_sigma=1.0, spacing="linear")


def test_sampling_percent_to_sigma_follows_comfyui(sd1):
    from diffusers import DDPMScheduler

    # diffusers' SD1 training schedule (scaled_linear 0.00085 .. 0.012) is the model's
    acp = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).alphas_cumprod.double()
    for p in (0.0, 0.2, 0.5, 0.8751, 1.0):
        got = run("SamplingPercentToSigma", model=sd1.model, sampling_percent=p, return_actual_sigma=False)["sigma_value"]
        assert got == pytest.approx(comfy_discrete_percent_to_sigma(acp, p), rel=1e-5)
    sig = ((1 - acp) / acp).sqrt()
    top = run("SamplingPercentToSigma", model=sd1.model, sampling_percent=0.0, return_actual_sigma=True)["sigma_value"]
    low = run("SamplingPercentToSigma", model=sd1.model, sampling_percent=1.0, return_actual_sigma=True)["sigma_value"]
    assert top == pytest.approx(float(sig[-1]), rel=1e-5) and low == pytest.approx(float(sig[0]), rel=1e-5)


# -- per-sampler nodes ------------------------------------------------------------------------------------
def test_per_sampler_nodes_carry_comfyuis_options(sd1):
    dpm = run("SamplerDPMAdaptative", order=2, rtol=0.1, atol=0.01, h_init=0.1, pcoeff=0.0, icoeff=1.0,
              dcoeff=0.0, accept_safety=0.81, eta=0.0, s_noise=1.0)["sampler"]
    assert dpm.name == "dpm_adaptive" and dpm.options["order"] == 2 and dpm.options["rtol"] == 0.1
    # ER-SDE: ComfyUI ignores eta for its own noise scale; ODE / eta 0 reverse-time SDE are noiseless
    er = run("SamplerER_SDE", solver_type="ER-SDE", max_stage=2, eta=0.0, s_noise=1.0)["sampler"]
    assert er.name == "er_sde" and er.options == {"solver_type": "ER-SDE", "max_stage": 2, "eta": 1.0, "s_noise": 1.0}
    seeds = run("SamplerSEEDS2", solver_type="phi_2", eta=0.5, s_noise=1.0, r=1.0)["sampler"]
    assert seeds.name == "seeds_2" and seeds.options == {"solver_type": "phi_2", "eta": 0.5, "s_noise": 1.0, "r": 1.0}
    sa = run("SamplerSASolver", model=sd1.model, eta=1.0, sde_start_percent=0.2, sde_end_percent=0.8, s_noise=1.0,
             predictor_order=3, corrector_order=4, use_pece=False, simple_order_2=False)["sampler"]
    from diffusers import DDPMScheduler

    acp = DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).alphas_cumprod.double()
    start, end = sa.options["tau_interval"]
    assert start == pytest.approx(comfy_discrete_percent_to_sigma(acp, 0.2), rel=1e-5)
    assert end == pytest.approx(comfy_discrete_percent_to_sigma(acp, 0.8), rel=1e-5)
    # they sample: ODE ER-SDE is the same at any seed; the adaptive solver gives a finite result
    ode = run("SamplerER_SDE", solver_type="ODE", max_stage=3, eta=1.0, s_noise=1.0)["sampler"]
    a = sample(sd1.model, sd1.pos, sd1.neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=1, steps=3, cfg=5.0,
               sampler=ode, device="cpu", add_noise=False)["samples"]
    b = sample(sd1.model, sd1.pos, sd1.neg, {"samples": torch.zeros(1, 4, 8, 8)}, seed=2, steps=3, cfg=5.0,
               sampler=ode, device="cpu", add_noise=False)["samples"]
    assert torch.equal(a, b)
    assert torch.isfinite(_sample(sd1, sd1.model, sampler=dpm)).all()


# -- latent operations -----------------------------------------------------------------------------------
def test_latent_operations_follow_comfyui():
    lat = randn(2, 4, 16, 12, seed=1) * 3
    for m in (1.0, 0.5, 3.0):
        op = run("LatentOperationTonemapReinhard", multiplier=m)["operation"]
        torch.testing.assert_close(op(lat), comfy_tonemap_reinhard(m)(latent=lat))
    for r, sigma, alpha in ((1, 1.0, 0.1), (3, 0.5, 1.2), (5, 2.0, 0.0)):
        op = run("LatentOperationSharpen", sharpen_radius=r, sigma=sigma, alpha=alpha)["operation"]
        torch.testing.assert_close(op(lat), comfy_sharpen(r, sigma, alpha)(latent=lat), rtol=1e-5, atol=1e-5)
    latent = {"samples": lat, "noise_mask": torch.ones(2, 1, 16, 12), "batch_index": [3, 4]}
    out = run("LatentApplyOperation", samples=latent, operation=comfy_tonemap_reinhard(1.0))["latent"]
    assert out["batch_index"] == [3, 4] and out["noise_mask"] is latent["noise_mask"]
    torch.testing.assert_close(out["samples"], comfy_tonemap_reinhard(1.0)(latent=lat))
    # tonemapping bounds every pixel's length by top = (mean + 5 std) of the lengths
    assert float(torch.linalg.vector_norm(out["samples"], dim=1).max()) < float(
        torch.linalg.vector_norm(lat, dim=1).max())


def test_latent_apply_operation_cfg_follows_comfyui(sd1):
    for op_node, kw in (("LatentOperationTonemapReinhard", dict(multiplier=0.5)),
                        ("LatentOperationSharpen", dict(sharpen_radius=2, sigma=1.0, alpha=0.5))):
        op = run(op_node, **kw)["operation"]
        patched = run("LatentApplyOperationCFG", model=sd1.model, operation=op)["model"]
        oracle = comfy_tonemap_reinhard(0.5) if op_node.endswith("Reinhard") else comfy_sharpen(2, 1.0, 0.5)
        for cfg in (7.0, 1.0):
            def comfy(den, x, sigma, denoised, cfg=cfg, oracle=oracle):
                cond = den.last_cond  # the plain model's own predictions of this step
                uncond = den.last_uncond if den.ran_uncond else torch.zeros_like(cond)
                cond, uncond = comfy_latent_apply_operation_cfg(oracle)(cond, uncond)
                return uncond + (cond - uncond) * cfg

            got = _sample(sd1, patched, cfg=cfg)
            torch.testing.assert_close(got, _sample(sd1, sd1.model.with_denoise_hook(comfy), cfg=cfg), rtol=1e-4, atol=1e-4)
        assert (got - _sample(sd1, sd1.model, cfg=1.0)).abs().max() > 1e-3


def test_latent_operations_bad_input(sd1):
    with pytest.raises(ValueError, match="LatentApplyOperation: input 'operation'"):
        run("LatentApplyOperation", samples={"samples": torch.zeros(1, 4, 8, 8)}, operation="tonemap")
    with pytest.raises(ValueError, match="LatentApplyOperationCFG: input 'operation'"):
        run("LatentApplyOperationCFG", model=sd1.model, operation=None)
    op = run("LatentOperationSharpen", sharpen_radius=9, sigma=1.0, alpha=0.1)["operation"]
    with pytest.raises(ValueError, match="LatentOperationSharpen: input 'sharpen_radius' 9 needs"):
        run("LatentApplyOperation", samples={"samples": torch.zeros(1, 4, 8, 8)}, operation=op)


# -- Epsilon Scaling ---------------------------------------------------------------------------------------
def test_epsilon_scaling_follows_comfyui(sd1):
    patched = run("EpsilonScaling", model=sd1.model, scaling_factor=1.02)["model"]

    def comfy(den, x, sigma, denoised):
        return comfy_epsilon_scaling(1.02)(denoised, x)

    got = _sample(sd1, patched)
    torch.testing.assert_close(got, _sample(sd1, sd1.model.with_denoise_hook(comfy)), rtol=1e-5, atol=1e-5)
    assert (got - _sample(sd1, sd1.model)).abs().max() > 1e-3
    off = run("EpsilonScaling", model=sd1.model, scaling_factor=1.0)["model"]
    torch.testing.assert_close(_sample(sd1, off), _sample(sd1, sd1.model))


# -- ComfyUI workflows --------------------------------------------------------------------------------------
def _custom_workflow() -> dict:
    """A SamplerCustomAdvanced workflow with the new nodes in every slot (API format)."""
    wf = {k: v for k, v in json.loads((DATA / "txt2img.api.json").read_text()).items() if k != "3"}
    wf["8"]["inputs"]["samples"] = ["30", 0]
    wf.update({
        "10": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "11": {"class_type": "Epsilon Scaling", "inputs": {"model": ["4", 0], "scaling_factor": 1.01}},
        "12": {"class_type": "LatentOperationTonemapReinhard", "inputs": {"multiplier": 1.0}},
        "13": {"class_type": "LatentApplyOperationCFG", "inputs": {"model": ["11", 0], "operation": ["12", 0]}},
        "14": {"class_type": "PerpNegGuider", "inputs": {"model": ["13", 0], "positive": ["6", 0], "negative": ["7", 0],
                                                          "empty_conditioning": ["10", 0], "cfg": 6.0, "neg_scale": 1.0}},
        "15": {"class_type": "BasicScheduler", "inputs": {"model": ["4", 0], "scheduler": "karras", "steps": 3,
                                                          "denoise": 1.0}},
        "16": {"class_type": "ExtendIntermediateSigmas", "inputs": {"sigmas": ["15", 0], "steps": 2,
                                                                    "start_at_sigma": -1.0, "end_at_sigma": 1.0,
                                                                    "spacing": "cosine"}},
        "17": {"class_type": "SetFirstSigma", "inputs": {"sigmas": ["16", 0], "sigma": 14.0}},
        "18": {"class_type": "SamplerER_SDE", "inputs": {"solver_type": "ER-SDE", "max_stage": 3, "eta": 1.0,
                                                         "s_noise": 1.0}},
        "19": {"class_type": "RandomNoise", "inputs": {"noise_seed": 11}},
        "20": {"class_type": "LatentOperationSharpen", "inputs": {"sharpen_radius": 2, "sigma": 1.0, "alpha": 0.1}},
        "21": {"class_type": "LatentApplyOperation", "inputs": {"samples": ["5", 0], "operation": ["20", 0]}},
        "30": {"class_type": "SamplerCustomAdvanced", "inputs": {"noise": ["19", 0], "guider": ["14", 0],
                                                                 "sampler": ["18", 0], "sigmas": ["17", 0],
                                                                 "latent_image": ["21", 0]}},
    })
    return wf


def test_comfyui_workflow_with_the_new_nodes_imports_and_runs(sd1, tmp_path):
    from nodegen.formats import open_any

    wf = _custom_workflow()
    doc = open_any(copy.deepcopy(wf)).data["nodes"]
    assert doc["11"]["type"] == "EpsilonScaling" and doc["11"]["inputs"]["scaling_factor"] == 1.01
    assert doc["14"]["type"] == "PerpNegGuider" and doc["14"]["inputs"]["empty_conditioning"] == {"from": ["10", "conditioning"]}
    assert doc["17"]["inputs"]["sigmas"] == {"from": ["16", "sigmas"]}
    from nodegen.formats import comfy

    assert comfy.export_api(comfy.import_comfy(copy.deepcopy(wf))[0]) == wf  # and back to ComfyUI, unchanged
    models = models_folder(tmp_path, [("checkpoints", sd1.fx.single_file, "tiny-sd1.safetensors")])
    result = run_api(wf, models, tmp_path)
    assert len(result.images) == 1
    plain = copy.deepcopy(wf)
    plain["14"] = {"class_type": "CFGGuider", "inputs": {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
                                                        "cfg": 6.0}}
    (tmp_path / "plain" / "in").mkdir(parents=True)
    other = run_api(plain, models, tmp_path / "plain")
    assert list(result.images[0].getdata()) != list(other.images[0].getdata())


def test_comfyui_ksampler_workflow_with_perp_neg_patch_and_sigma_tools_imports(tmp_path):
    """The other new nodes import from API format with their widgets in place (ControlNetApplySD3
    as ControlNetApplyAdvanced with its VAE link), and a document of them validates."""
    from nodegen.formats import open_any

    api = {
        "1": {"class_type": "ManualSigmas", "inputs": {"sigmas": "14.6, 3, 0.5, 0"}},
        "2": {"class_type": "SamplerDPMAdaptative", "inputs": {"order": 3, "rtol": 0.05, "atol": 0.0078, "h_init": 0.05,
                                                              "pcoeff": 0.0, "icoeff": 1.0, "dcoeff": 0.0,
                                                              "accept_safety": 0.81, "eta": 0.0, "s_noise": 1.0}},
        "3": {"class_type": "SamplerSEEDS2", "inputs": {"solver_type": "phi_1", "eta": 1.0, "s_noise": 1.0, "r": 0.5}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "x.safetensors"}},
        "5": {"class_type": "SamplingPercentToSigma", "inputs": {"model": ["4", 0], "sampling_percent": 0.5,
                                                                "return_actual_sigma": False}},
        "6": {"class_type": "SamplerSASolver", "inputs": {"model": ["4", 0], "eta": 1.0, "sde_start_percent": 0.2,
                                                         "sde_end_percent": 0.8, "s_noise": 1.0, "predictor_order": 3,
                                                         "corrector_order": 4, "use_pece": False, "simple_order_2": False}},
        "7": {"class_type": "PerpNeg", "inputs": {"model": ["4", 0], "empty_conditioning": ["8", 0], "neg_scale": 1.0}},
        "8": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "9": {"class_type": "ControlNetApplySD3", "inputs": {"positive": ["8", 0], "negative": ["8", 0],
                                                             "control_net": ["10", 0], "vae": ["4", 2], "image": ["11", 0],
                                                             "strength": 0.7, "start_percent": 0.1, "end_percent": 0.9}},
        "10": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "cn.safetensors"}},
        "11": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
    }
    nodes = open_any(api).data["nodes"]
    assert nodes["1"]["inputs"]["sigmas"] == "14.6, 3, 0.5, 0" and nodes["2"]["inputs"]["accept_safety"] == 0.81
    assert nodes["6"]["inputs"]["corrector_order"] == 4 and nodes["5"]["inputs"]["sampling_percent"] == 0.5
    assert nodes["9"]["type"] == "ControlNetApplyAdvanced"
    assert nodes["9"]["inputs"]["vae"] == {"from": ["4", "vae"]} and nodes["9"]["inputs"]["strength"] == 0.7


# -- attention multipliers -----------------------------------------------------------------------------
def comfy_attention_multiply(attn: str, sd: dict, q, k, v, out) -> dict:
    """nodes_attention_multiply.py's attention_multiply, on a state dict: which keys are scaled by what
    (ComfyUI's add_patches(..., strength_model=f) multiplies the weight by f)."""
    scaled = {}
    for key in sd:
        for proj, f in (("to_q", q), ("to_k", k), ("to_v", v), ("to_out.0", out)):
            if key.endswith(f"{attn}.{proj}.bias") or key.endswith(f"{attn}.{proj}.weight"):
                scaled[key] = f
    return scaled


def test_unet_attention_multiply_follows_comfyui(sd1):
    factors = dict(q=1.3, k=0.7, v=1.1, out=0.9)
    plain = {n: p.detach().clone() for n, p in sd1.model.unet.named_parameters()}
    for node_type, attn in (("UNetSelfAttentionMultiply", "attn1"), ("UNetCrossAttentionMultiply", "attn2")):
        want = comfy_attention_multiply(attn, plain, **factors)
        assert want and all(f"{attn}." in k for k in want)
        patched = run(node_type, model=sd1.model, **factors)["model"]
        with patched.use("cpu") as unet:
            for name, p in unet.named_parameters():
                torch.testing.assert_close(p.detach(), plain[name] * want.get(name, 1.0))
    for name, p in sd1.model.unet.named_parameters():  # the original is untouched after use
        assert torch.equal(p.detach(), plain[name])


def test_attention_multiply_scales_loras_before_it_not_after(sd1):
    """ComfyUI multiplies the weight as patched so far: (W + L1) * q + L2."""
    key = next(n for n, _ in sd1.model.unet.named_parameters() if n.endswith("attn2.to_k.weight"))
    w = dict(sd1.model.unet.named_parameters())[key].detach().clone()
    l1, l2 = randn(*w.shape, seed=5) * 0.1, randn(*w.shape, seed=6) * 0.1
    before = sd1.model.clone()
    before.add_patches({key: l1}, 1.0)
    patched = run("UNetCrossAttentionMultiply", model=before, q=1.0, k=0.5, v=1.0, out=1.0)["model"]
    patched.add_patches({key: l2}, 0.8)
    with patched.use("cpu") as unet:
        torch.testing.assert_close(dict(unet.named_parameters())[key].detach(), (w + l1) * 0.5 + 0.8 * l2)


def test_clip_attention_multiply_follows_comfyui(sd1):
    import copy as copy_mod

    factors = dict(q=0.8, k=1.2, v=1.0, out=1.5)
    te = TextEncoder.from_components([sd1.fx.tokenizer], [sd1.fx.text_encoder], "sd1")
    patched = run("CLIPAttentionMultiply", clip=te, **factors)["clip"]
    # the oracle: a copy of the encoder whose matching weights ComfyUI's rule scaled
    enc = copy_mod.deepcopy(sd1.fx.text_encoder)
    sd = dict(enc.named_parameters())
    for key, p in sd.items():
        for proj, f in (("q_proj", 0.8), ("k_proj", 1.2), ("v_proj", 1.0), ("out_proj", 1.5)):
            if key.endswith(f"self_attn.{proj}.weight") or key.endswith(f"self_attn.{proj}.bias"):
                p.data.mul_(f)
    want = TextEncoder.from_components([sd1.fx.tokenizer], [enc], "sd1").encode("a red house")[0].embeds
    got = patched.encode("a red house")[0].embeds
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (got - te.encode("a red house")[0].embeds).abs().max() > 1e-3


def test_attention_multiply_bad_input():
    with pytest.raises(ValueError, match="UNetCrossAttentionMultiply: input 'model' must be a MODEL"):
        run("UNetCrossAttentionMultiply", model="sd15.safetensors", q=1.0, k=1.0, v=1.0, out=1.0)
    with pytest.raises(ValueError, match="CLIPAttentionMultiply: input 'clip' must be a CLIP"):
        run("CLIPAttentionMultiply", clip=None, q=1.0, k=1.0, v=1.0, out=1.0)


# -- MaskPreview and LoadImageOutput ---------------------------------------------------------------------
def test_mask_preview_and_load_image_output_workflow(tmp_path):
    """LoadImageOutput reads ``x.png [output]`` from the output folder (ComfyUI's annotated name);
    MaskPreview shows a mask as ComfyUI draws it (the value in R, G and B)."""
    import numpy as np
    from PIL import Image

    (tmp_path / "out").mkdir()
    rgb = (np.arange(16 * 16 * 3).reshape(16, 16, 3) % 256).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "out" / "earlier.png")
    api = {
        "1": {"class_type": "LoadImageOutput", "inputs": {"image": "earlier.png [output]"}},
        "2": {"class_type": "ImageToMask", "inputs": {"image": ["1", 0], "channel": "green"}},
        "3": {"class_type": "MaskPreview", "inputs": {"mask": ["2", 0]}},
    }
    result = run_api(api, models_folder(tmp_path, []), tmp_path)
    shown = np.asarray(result.images[0].convert("RGB"))
    assert shown.shape == (16, 16, 3)
    for c in range(3):
        assert np.array_equal(shown[..., c], rgb[..., 1])
    api["1"]["inputs"]["image"] = "missing.png [output]"
    (tmp_path / "b").mkdir()
    failed = run_api(api, models_folder(tmp_path / "b", []), tmp_path / "b", check=False)
    assert not failed.ok and "missing.png" in str([*failed.problems, *map(str, failed.failures)])


# -- OptimalStepsScheduler, TemporalScoreRescaling, SamplerEulerCFGpp, ModelMergeSD2 ------------------------
def comfy_optimal_steps(levels: list[float], steps: int, denoise: float):
    """nodes_optimalsteps.py: loglinear_interp and OptimalStepsScheduler.execute."""
    import numpy as np

    def loglinear_interp(t_steps, num_steps):
        xs = np.linspace(0, 1, len(t_steps))
        ys = np.log(t_steps[::-1])
        new_xs = np.linspace(0, 1, num_steps)
        new_ys = np.interp(new_xs, xs, ys)
        return np.exp(new_ys)[::-1].copy()

    total_steps = steps
    if denoise < 1.0:
        if denoise <= 0.0:
            return torch.FloatTensor([])
        total_steps = round(steps * denoise)
    sigmas = levels[:]
    if (steps + 1) != len(sigmas):
        sigmas = loglinear_interp(sigmas, steps + 1)
    sigmas = sigmas[-(total_steps + 1):]
    sigmas[-1] = 0
    return torch.FloatTensor(sigmas)


def test_optimal_steps_scheduler_follows_comfyui():
    from nodegen.diffusion.optimal_steps import NOISE_LEVELS

    for model_type, steps, denoise in (("FLUX", 10, 1.0), ("FLUX", 20, 1.0), ("FLUX", 8, 0.5), ("Chroma", 26, 0.8),
                                       ("Wan", 3, 1.0), ("FLUX", 10, 0.0)):
        got = run("OptimalStepsScheduler", model_type=model_type, steps=steps, denoise=denoise)["sigmas"]
        torch.testing.assert_close(got, comfy_optimal_steps(NOISE_LEVELS[model_type], steps, denoise))
    assert NOISE_LEVELS["FLUX"][8] == 0.5512 and len(NOISE_LEVELS["Chroma"]) == 41  # the published tables


def comfy_tsr(x, denoised, sigma: torch.Tensor, flow: bool, tsr_k: float, tsr_sigma: float):
    """nodes_eps.py: temporal_score_rescaling with sigma_to_half_log_snr (k-diffusion sampling.py)."""
    tsr_variance = tsr_sigma ** 2
    if tsr_k == 1 or sigma.item() == 0:
        return denoised
    half_log_snr = sigma.logit().neg() if flow else sigma.log().neg()
    snr = (2 * half_log_snr).exp()
    if snr.item() == 0:
        return denoised
    posinf = torch.isposinf(snr)
    r = torch.where(posinf, tsr_k, (snr * tsr_variance + 1) / (snr * tsr_variance / tsr_k + 1))
    alpha = sigma * half_log_snr.exp()
    return torch.lerp(x / alpha, denoised, r)


def test_temporal_score_rescaling_follows_comfyui(sd1):
    from nodegen.diffusion.temporal_score_rescaling import TemporalScoreRescaling

    x, d = randn(1, 4, 8, 8, seed=1) * 3, randn(1, 4, 8, 8, seed=2)
    for flow, sigma in ((False, 7.5), (False, 0.3), (True, 0.8), (True, 0.05), (True, 1.0)):
        den = SimpleNamespace(model=SimpleNamespace(prediction_type="flow" if flow else "epsilon"))
        got = TemporalScoreRescaling(0.9, 1.5)(den, x, sigma, d)
        torch.testing.assert_close(got, comfy_tsr(x, d, torch.tensor(sigma), flow, 0.9, 1.5), rtol=1e-5, atol=1e-5)
    patched = run("TemporalScoreRescaling", model=sd1.model, tsr_k=0.8, tsr_sigma=2.0)["patched_model"]

    def comfy(den, x, sigma, denoised):
        return comfy_tsr(x, denoised, torch.tensor(sigma), False, 0.8, 2.0)

    got = _sample(sd1, patched)
    torch.testing.assert_close(got, _sample(sd1, sd1.model.with_denoise_hook(comfy)), rtol=1e-5, atol=1e-5)
    assert (got - _sample(sd1, sd1.model)).abs().max() > 1e-3


def test_sampler_euler_cfg_pp_follows_comfyui(sd1):
    from nodegen.diffusion.samplers import Sampler

    assert run("SamplerEulerCFGpp", version="regular")["sampler"].name == "euler_cfg_pp"

    def comfy_euler_pp(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None):
        """nodes_advanced_samplers.py: sample_euler_pp (uncond_denoised captured after each call,
        the negative run even at cfg 1)."""
        model.keep_uncond = True
        s_in = x.new_ones([x.shape[0]])
        for i in range(len(sigmas) - 1):
            sigma_hat = sigmas[i]
            denoised = model(x, sigma_hat * s_in)
            temp = model.last_uncond
            d = ((x - denoised + temp) - denoised) / sigmas[i]
            x = x + d * (sigmas[i + 1] - sigma_hat)
        return x

    alt = run("SamplerEulerCFGpp", version="alternative")["sampler"]
    for cfg in (4.0, 1.0):
        torch.testing.assert_close(_sample(sd1, sd1.model, cfg=cfg, sampler=alt),
                                   _sample(sd1, sd1.model, cfg=cfg, sampler=Sampler("comfy", comfy_euler_pp)),
                                   rtol=1e-5, atol=1e-5)


def test_model_merge_sd2_imports_as_model_merge_sd1():
    from nodegen.formats import open_any

    ratios = {"time_embed.": 0.1, "label_emb.": 0.2, "input_blocks.4.": 0.3, "middle_block.1.": 0.4,
              "output_blocks.11.": 0.5, "out.": 0.6}
    api = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "a.safetensors"}},
           "2": {"class_type": "ModelMergeSD2", "inputs": {"model1": ["1", 0], "model2": ["1", 0], **ratios}}}
    node = open_any(api).data["nodes"]["2"]
    assert node["type"] == "ModelMergeSD1"
    names = ("time_embed", "label_emb", "input_blocks_4", "middle_block_1", "output_blocks_11", "out")
    assert [node["inputs"][k] for k in names] == list(ratios.values())


# -- LatentConcat, LatentCut, Mahiro -----------------------------------------------------------------------
def comfy_latent_concat(s1, s2, dim):
    """nodes_latent.py: LatentConcat.execute (comfy.utils.repeat_to_batch_size written out)."""
    if s2.shape[0] > s1.shape[0]:
        s2 = s2[:s1.shape[0]]
    elif s2.shape[0] < s1.shape[0]:
        s2 = s2.repeat([math.ceil(s1.shape[0] / s2.shape[0])] + [1] * (s2.ndim - 1))[:s1.shape[0]]
    c = (s2, s1) if "-" in dim else (s1, s2)
    return torch.cat(c, dim=-1 if "x" in dim else -2)


def comfy_latent_cut(s1, dim, index, amount):
    """nodes_latent.py: LatentCut.execute."""
    dim = s1.ndim - 1 if "x" in dim else s1.ndim - 2
    if index >= 0:
        index = min(index, s1.shape[dim] - 1)
        amount = min(s1.shape[dim] - index, amount)
    else:
        index = max(index, -s1.shape[dim])
        amount = min(-index, amount)
    return torch.narrow(s1, dim, index, amount)


def test_latent_concat_and_cut_follow_comfyui():
    a, b = randn(2, 4, 6, 5, seed=1), randn(1, 4, 6, 3, seed=2)
    for dim in ("x", "-x"):
        out = run("LatentConcat", samples1={"samples": a, "batch_index": [0, 1]}, samples2={"samples": b}, dim=dim)
        assert torch.equal(out["latent"]["samples"], comfy_latent_concat(a, b, dim)) and out["latent"]["batch_index"] == [0, 1]
    c = randn(3, 4, 2, 5, seed=3)
    for dim in ("y", "-y"):
        assert torch.equal(run("LatentConcat", samples1={"samples": a}, samples2={"samples": c}, dim=dim)["latent"]["samples"],
                           comfy_latent_concat(a, c, dim))
    for dim, index, amount in (("x", 1, 2), ("x", 9, 3), ("y", -2, 5), ("y", -20, 1), ("x", 0, 100)):
        got = run("LatentCut", samples={"samples": a}, dim=dim, index=index, amount=amount)["latent"]["samples"]
        assert torch.equal(got, comfy_latent_cut(a, dim, index, amount))
    with pytest.raises(ValueError, match="LatentConcat: inputs 'samples1'"):
        run("LatentConcat", samples1={"samples": a}, samples2={"samples": c}, dim="x")
    with pytest.raises(ValueError, match="LatentCut: input 'dim' 't'"):
        run("LatentCut", samples={"samples": a}, dim="t", index=0, amount=1)


def comfy_mahiro(cond_p, uncond_p, cfg_result, scale):
    """nodes_mahiro.py: mahiro_normd."""
    leap = cond_p * scale
    u_leap = uncond_p * scale
    merge = (leap + cfg_result) / 2
    normu = torch.sqrt(u_leap.abs()) * u_leap.sign()
    normm = torch.sqrt(merge.abs()) * merge.sign()
    sim = F.cosine_similarity(normu, normm).mean()
    simsc = 2 * (sim + 1)
    return (simsc * cfg_result + (4 - simsc) * leap) / 4


def test_mahiro_follows_comfyui(sd1):
    patched = run("Mahiro", model=sd1.model)["patched_model"]
    for cfg in (6.0, 1.0):
        def comfy(den, x, sigma, denoised, cfg=cfg):
            uncond = den.last_uncond if den.ran_uncond else torch.zeros_like(den.last_cond)
            return comfy_mahiro(den.last_cond, uncond, denoised, cfg)

        got = _sample(sd1, patched, cfg=cfg)
        torch.testing.assert_close(got, _sample(sd1, sd1.model.with_denoise_hook(comfy), cfg=cfg), rtol=1e-5, atol=1e-5)
        changed = (got - _sample(sd1, sd1.model, cfg=cfg)).abs().max() > 1e-3
        assert changed == (cfg != 1.0)  # at cfg 1 (uncond zeros) the rule gives the positive back


# -- ModelSave, VAESave, CLIPSave --------------------------------------------------------------------------
def test_component_saves_write_comfyuis_layouts_with_patches_baked_in(sd1, tmp_path):
    """A ComfyUI workflow saves a patched UNet, the VAE and a patched text encoder; each file is in
    the layout ComfyUI writes and loads back to the same computation (the text encoder through
    transformers' own CLIPTextModel, strict)."""
    from safetensors.torch import load_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from nodegen.models.manager import ModelManager

    api = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd1.safetensors"}},
        "10": {"class_type": "UNetCrossAttentionMultiply", "inputs": {"model": ["4", 0], "q": 1.0, "k": 0.6, "v": 1.4,
                                                                      "out": 1.0}},
        "11": {"class_type": "CLIPAttentionMultiply", "inputs": {"clip": ["4", 1], "q": 1.2, "k": 1.0, "v": 0.8,
                                                                 "out": 1.0}},
        "12": {"class_type": "ModelSave", "inputs": {"model": ["10", 0], "filename_prefix": "diffusion_models/ComfyUI"}},
        "13": {"class_type": "VAESave", "inputs": {"vae": ["4", 2], "filename_prefix": "vae/ComfyUI_vae"}},
        "14": {"class_type": "CLIPSave", "inputs": {"clip": ["11", 0], "filename_prefix": "clip/ComfyUI"}},
    }
    models = models_folder(tmp_path, [("checkpoints", sd1.fx.single_file, "tiny-sd1.safetensors")])
    run_api(api, models, tmp_path)
    out = tmp_path / "out"
    unet_file = out / "diffusion_models" / "ComfyUI_00001_.safetensors"
    vae_file = out / "vae" / "ComfyUI_vae_00001_.safetensors"
    clip_file = out / "clip" / "ComfyUI_clip_l_00001_.safetensors"
    assert all(k.startswith("model.diffusion_model.") for k in load_file(unet_file))
    vae_keys = set(load_file(vae_file))
    assert "encoder.conv_in.weight" in vae_keys and not any(k.startswith("first_stage_model.") for k in vae_keys)

    manager = ModelManager(device="cpu")
    patched = run("UNetCrossAttentionMultiply", model=sd1.model, q=1.0, k=0.6, v=1.4, out=1.0)["model"]
    loaded = manager.load_diffusion_model(unet_file)
    torch.testing.assert_close(_sample(sd1, loaded), _sample(sd1, patched), rtol=1e-5, atol=1e-5)
    assert (_sample(sd1, loaded) - _sample(sd1, sd1.model)).abs().max() > 1e-3

    vae = manager.load_vae(vae_file)
    lat = randn(1, 4, 8, 8, seed=4)
    with vae.use("cpu") as v, torch.no_grad():  # the fixture's own VAE decodes the same
        torch.testing.assert_close(v.decode(lat).sample, sd1.fx.vae.decode(lat).sample, rtol=1e-5, atol=1e-5)

    te = TextEncoder.from_components([sd1.fx.tokenizer], [sd1.fx.text_encoder], "sd1")
    want = run("CLIPAttentionMultiply", clip=te, q=1.2, k=1.0, v=0.8, out=1.0)["clip"].encode("a red house")[0].embeds
    # transformers reads the file as it reads a published clip_l.safetensors (its "text_model." keys)
    folder = tmp_path / "hf_clip"
    CLIPTextConfig(**{k: v for k, v in sd1.fx.text_encoder.config.to_dict().items()
                      if k in CLIPTextConfig().to_dict()}).save_pretrained(folder)
    (folder / "model.safetensors").write_bytes(clip_file.read_bytes())
    hf = CLIPTextModel.from_pretrained(folder, local_files_only=True)
    assert set(load_file(clip_file)) == {"text_model." + k for k in hf.state_dict()} - {"text_model.embeddings.position_ids"}
    ids = sd1.fx.tokenizer("a red house", padding="max_length", max_length=77, return_tensors="pt").input_ids
    torch.testing.assert_close(hf(ids).last_hidden_state, want, rtol=1e-5, atol=1e-5)


def test_component_saves_bad_input(tmp_path):
    ctx = SimpleNamespace(output_dir=str(tmp_path), ui=lambda **kw: None)
    with pytest.raises(ValueError, match="CLIPSave: input 'clip'"):
        run("CLIPSave", ctx, clip=SimpleNamespace(encoder_names=()), filename_prefix="clip/x")
    with pytest.raises(ValueError, match="ModelSave: input 'model': saving a flux diffusion model"):
        run("ModelSave", ctx, model=SimpleNamespace(family="flux"), filename_prefix="m")


# -- TCFG and FreSca ---------------------------------------------------------------------------------------
def comfy_score_tangential_damping(cond_score, uncond_score):
    """nodes_tcfg.py: score_tangential_damping."""
    batch_num = cond_score.shape[0]
    cond_score_flat = cond_score.reshape(batch_num, 1, -1).float()
    uncond_score_flat = uncond_score.reshape(batch_num, 1, -1).float()
    score_matrix = torch.cat((uncond_score_flat, cond_score_flat), dim=1)
    _, _, Vh = torch.linalg.svd(score_matrix, full_matrices=False)  # noqa: N806 - ComfyUI's name
    v1 = Vh[:, 0:1, :].to(uncond_score_flat.device)
    uncond_score_td = (uncond_score_flat @ v1.transpose(-2, -1)) * v1
    return uncond_score_td.reshape_as(uncond_score).to(uncond_score.dtype)


def comfy_fourier_filter(x, scale_low=1.0, scale_high=1.5, freq_cutoff=20):
    """nodes_fresca.py: Fourier_filter."""
    import torch.fft as fft

    dtype, device = x.dtype, x.device
    x = x.to(torch.float32)
    x_freq = fft.fftn(x, dim=(-2, -1))
    x_freq = fft.fftshift(x_freq, dim=(-2, -1))
    B, C, H, W = x_freq.shape  # noqa: N806 - ComfyUI's names
    crow, ccol = H // 2, W // 2
    mask = torch.ones((B, C, H, W), device=device) * scale_high
    mask[..., crow - freq_cutoff: crow + freq_cutoff, ccol - freq_cutoff: ccol + freq_cutoff] = scale_low
    x_freq = x_freq * mask
    x_freq = fft.ifftshift(x_freq, dim=(-2, -1))
    return fft.ifftn(x_freq, dim=(-2, -1)).real.to(dtype)


def _pre_cfg_oracle(pre):
    """ComfyUI's sampling_function around a pre-CFG function: a skipped negative is zeros."""
    def hook(den, x, sigma, denoised):
        cond = den.last_cond
        uncond = den.last_uncond if den.ran_uncond else torch.zeros_like(cond)
        cond, uncond = pre(x, cond, uncond, den.ran_uncond)
        return uncond + (cond - uncond) * den.cfg
    return hook


def test_tcfg_follows_comfyui(sd1):
    def comfy(x, cond, uncond, ran_uncond):  # ComfyUI skips it when the negative is None
        return (cond, x - comfy_score_tangential_damping(x - cond, x - uncond)) if ran_uncond else (cond, uncond)

    patched = run("TCFG", model=sd1.model)["patched_model"]
    for cfg in (6.0, 1.0):
        got = _sample(sd1, patched, cfg=cfg)
        torch.testing.assert_close(got, _sample(sd1, sd1.model.with_denoise_hook(_pre_cfg_oracle(comfy)), cfg=cfg),
                                   rtol=1e-4, atol=1e-4)
        assert ((got - _sample(sd1, sd1.model, cfg=cfg)).abs().max() > 1e-3) == (cfg != 1.0)


def test_fresca_follows_comfyui(sd1):
    lat = randn(2, 4, 8, 6, seed=9)
    from nodegen.diffusion.frequency_scaled_guidance import fourier_filter

    for low, high, cutoff in ((1.0, 1.25, 20), (0.5, 2.0, 2), (1.0, 0.0, 1)):
        torch.testing.assert_close(fourier_filter(lat, low, high, cutoff), comfy_fourier_filter(lat, low, high, cutoff))
    patched = run("FreSca", model=sd1.model, scale_low=0.8, scale_high=1.6, freq_cutoff=2)["model"]

    def comfy(x, cond, uncond, ran_uncond):
        return comfy_fourier_filter(cond - uncond, 0.8, 1.6, 2) + uncond, uncond

    for cfg in (6.0, 1.0):
        got = _sample(sd1, patched, cfg=cfg)
        torch.testing.assert_close(got, _sample(sd1, sd1.model.with_denoise_hook(_pre_cfg_oracle(comfy)), cfg=cfg),
                                   rtol=1e-4, atol=1e-4)
        assert (got - _sample(sd1, sd1.model, cfg=cfg)).abs().max() > 1e-3


# -- SkipLayerGuidanceDiTSimple ------------------------------------------------------------------------------
def test_skip_layer_guidance_simple_follows_comfyui(tmp_path_factory):
    """ComfyUI's calc_cond_batch_function: in the window (and with a negative) the negative is
    predicted with the blocks skipped; CFG as usual. Flux fixture; the blocks skipped through the
    same mechanism SkipLayerGuidanceDiT's tests check against diffusers."""
    from nodegen.diffusion.model_sampling import percent_to_sigma
    from nodegen.diffusion.sample import model_sampling_for
    from nodegen.diffusion.skip_layer_guidance import skipped_blocks
    from tests.support.flow_fixtures import fixture as flow_fixture
    from tests.test_oracle_flow import flux_components

    model, te, _ = flux_components(flow_fixture("flux", tmp_path_factory.mktemp("flux")))
    pos, neg = te.encode("a"), te.encode("b")
    ms = model_sampling_for(model)
    start, end = percent_to_sigma(ms, 0.3), percent_to_sigma(ms, 0.9)
    patched = run("SkipLayerGuidanceDiTSimple", model=model, double_layers="0", single_layers="0",
                  start_percent=0.3, end_percent=0.9)["model"]

    def comfy(den, x, sigma, denoised):
        cond = den.last_cond
        if not den.ran_uncond:
            return denoised
        uncond = den.last_uncond
        if end <= sigma <= start:
            with skipped_blocks(den.unet, [0], [0]):
                uncond = den.predict(neg, x, sigma)
        return uncond + (cond - uncond) * den.cfg

    for cfg in (3.0, 1.0):
        got, want, plain = (sample(m, pos, neg, {"samples": torch.zeros(1, 16, 8, 8)}, seed=1, steps=4, cfg=cfg,
                                   scheduler="simple", device="cpu")["samples"]
                            for m in (patched, model.with_denoise_hook(comfy), model))
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        assert ((got - plain).abs().max() > 1e-3) == (cfg != 1.0)
    assert run("SkipLayerGuidanceDiTSimple", model=model, double_layers="", single_layers=" ", start_percent=0.0,
               end_percent=1.0)["model"] is model


# -- DiffControlNetLoader ------------------------------------------------------------------------------------
def comfy_undiff(controlnet_data: dict, model_sd: dict) -> dict:
    """comfy/controlnet.py load_controlnet_state_dict's 'difference' branch (model_sd: the model's
    state dict, keys ``diffusion_model.*``)."""
    for x in controlnet_data:
        c_m = "control_model."
        if x.startswith(c_m):
            sd_key = f"diffusion_model.{x[len(c_m):]}"
            if sd_key in model_sd:
                cd = controlnet_data[x]
                cd += model_sd[sd_key].type(cd.dtype).to(cd.device)
    return controlnet_data


def test_diff_controlnet_loader_follows_comfyui(sd1, tmp_path):
    """A diff ControlNet made from the fixture ControlNet and the fixture UNet loads to what ComfyUI's
    rule gives (the full ControlNet, up to rounding); a full ControlNet loads as ControlNetLoader loads it;
    ControlNetLoader refuses a diff file and says what to use. A ComfyUI workflow with it runs."""
    from PIL import Image
    from safetensors.torch import load_file, save_file

    from nodegen.models.control_files import load_control
    from nodegen.models.diff_controlnet import base_unet_weights
    from nodegen.models.ldm_export import unet_to_ldm
    from tests.support.controlnet_fixtures import build_controlnet, save_controlnet

    files = save_controlnet(build_controlnet(sd1.fx.unet, seed=5), tmp_path / "cn", "tiny-controlnet")
    full = load_file(files.single_file)
    base = unet_to_ldm({k: v.detach() for k, v in sd1.fx.unet.state_dict().items()}, dict(sd1.fx.unet.config), prefix="")
    diff = {k: (v - base[k[len("control_model."):]] if k[len("control_model."):] in base else v).contiguous()
            for k, v in full.items()}
    assert sum(k[len("control_model."):] in base for k in full) > 10  # the copied encoder is stored as differences
    diff["difference"] = torch.tensor([])
    diff_file = tmp_path / "cn" / "diff-controlnet.safetensors"
    save_file(diff, str(diff_file))

    want = comfy_undiff({k: v.clone() for k, v in diff.items() if k != "difference"},
                        {"diffusion_model." + k: v for k, v in base.items()})
    got = load_control(diff_file, base=lambda: base_unet_weights(sd1.model))
    ref = load_control(files.single_file)
    via_comfy = tmp_path / "cn" / "undiffed.safetensors"
    save_file({k: v.contiguous() for k, v in want.items()}, str(via_comfy))
    theirs = load_control(via_comfy).net.state_dict()
    for k, v in got.net.state_dict().items():
        torch.testing.assert_close(v, theirs[k])
        torch.testing.assert_close(v, ref.net.state_dict()[k], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="load it with DiffControlNetLoader"):
        load_control(diff_file)

    api = json.loads((DATA / "controlnet.api.json").read_text())
    api["11"] = {"class_type": "DiffControlNetLoader", "inputs": {"model": ["4", 0],
                                                                  "control_net_name": "diff-controlnet.safetensors"}}
    models = models_folder(tmp_path, [("checkpoints", sd1.fx.single_file, "tiny-sd1.safetensors"),
                                      ("controlnet", diff_file, "diff-controlnet.safetensors")])
    Image.new("RGB", (64, 64), (200, 30, 30)).save(tmp_path / "in" / "edges.png")
    assert run_api(api, models, tmp_path).images
    # a diff made for another model: one weight of another shape
    key = next(k for k in diff if k.endswith("input_blocks.1.0.in_layers.2.weight"))
    save_file({**diff, key: torch.zeros(3, 3)}, str(diff_file))
    (tmp_path / "b" / "in").mkdir(parents=True)
    Image.new("RGB", (64, 64), (200, 30, 30)).save(tmp_path / "b" / "in" / "edges.png")
    bad = run_api(api, models, tmp_path / "b", check=False)
    said = " ".join(str(f) for f in bad.failures)
    assert not bad.ok and "DiffControlNetLoader: input 'control_net_name'" in said and "does not fit" in said


# -- SamplerLCMUpscale ---------------------------------------------------------------------------------------
def comfy_lcm_upscale(seed: int, upscale):
    """nodes_advanced_samplers.py: sample_lcm_upscale, its noise from torch's global generator, which
    ComfyUI's prepare_noise seeded and drew the starting noise from (``upscale(x, w, h)`` stands in
    for comfy.utils.common_upscale)."""
    import numpy as np

    def sample_lcm_upscale(model, x, sigmas, extra_args=None, callback=None, noise_sampler=None,
                           total_upscale=2.0, upscale_steps=None):
        torch.manual_seed(seed)
        torch.randn(x.shape)  # the starting noise
        if upscale_steps is None:
            upscale_steps = max(len(sigmas) // 2 + 1, 2)
        else:
            upscale_steps += 1
            upscale_steps = min(upscale_steps, len(sigmas) + 1)
        upscales = np.linspace(1.0, total_upscale, upscale_steps)[1:]
        orig_shape = x.size()
        s_in = x.new_ones([x.shape[0]])
        for i in range(len(sigmas) - 1):
            denoised = model(x, sigmas[i] * s_in)
            x = denoised
            if i < len(upscales):
                x = upscale(x, round(orig_shape[-1] * upscales[i]), round(orig_shape[-2] * upscales[i]))
            if sigmas[i + 1] > 0:
                x += sigmas[i + 1] * torch.randn_like(x)
        return x
    return sample_lcm_upscale


def test_sampler_lcm_upscale_follows_comfyui(sd1, tmp_path):
    from nodegen.diffusion.samplers import Sampler
    from nodegen.image.latent_resize import resize

    for ratio, steps, method in ((1.5, -1, "bilinear"), (2.0, 2, "bislerp")):
        smp = run("SamplerLCMUpscale", scale_ratio=ratio, scale_steps=steps, upscale_method=method)["sampler"]
        if method == "bilinear":  # common_upscale's bilinear is torch's interpolate
            def up(x, w, h):
                return F.interpolate(x, size=(h, w), mode="bilinear")
        else:
            def up(x, w, h):
                return resize(x, w, h, "bislerp")
        oracle = Sampler("comfy", comfy_lcm_upscale(3, up),
                         {"total_upscale": ratio, "upscale_steps": None if steps < 0 else steps})
        got = _sample(sd1, sd1.model, sampler=smp, cfg=2.0)
        assert got.shape[-2:] == (round(8 * ratio), round(8 * ratio))
        torch.testing.assert_close(got, _sample(sd1, sd1.model, sampler=oracle, cfg=2.0), rtol=1e-5, atol=1e-5)
    api = json.loads((DATA / "custom_sampler.api.json").read_text())  # SamplerCustom, then LatentUpscaleBy 1.5
    api["10"] = {"class_type": "SamplerLCMUpscale", "inputs": {"scale_ratio": 1.5, "scale_steps": -1,
                                                               "upscale_method": "bislerp"}}
    models = models_folder(tmp_path, [("checkpoints", sd1.fx.single_file, "tiny-sd1.safetensors")])
    assert run_api(api, models, tmp_path).images[0].size == (144, 144)


def test_post_cfg_patches_see_the_perp_neg_result(sd1):
    """ComfyUI runs the MODEL's post-CFG functions (here Epsilon Scaling, patched before the guider)
    on PerpNegGuider's result."""
    scaled = run("EpsilonScaling", model=sd1.model, scaling_factor=1.05)["model"]
    guider = run("PerpNegGuider", model=scaled, positive=sd1.pos, negative=sd1.neg, empty_conditioning=sd1.empty,
                 cfg=5.0, neg_scale=1.0)["guider"]

    def comfy(den, x, sigma, denoised):
        preds = [den.predict(c, x, sigma) for c in (sd1.pos, sd1.neg, sd1.empty)]
        return comfy_epsilon_scaling(1.05)(comfy_perp_neg(x, *preds, 1.0, 5.0), x)

    want = _guided(sd1, SimpleNamespace(model=sd1.model.with_denoise_hook(comfy), positive=sd1.pos,
                                        negative=sd1.neg, cfg=5.0))
    torch.testing.assert_close(_guided(sd1, guider), want, rtol=1e-4, atol=1e-4)
