"""Union ControlNet (ControlNet++ / promax, SDXL) from a diffusers-layout file, with
SetUnionControlNetType; oracle diffusers' StableDiffusionXLControlNetUnionPipeline."""

from __future__ import annotations

import inspect

import pytest
import torch
from safetensors.torch import save_file

from nodegen.compat import torchvision as _tv
from nodegen.diffusion.sample import Steps, sample
from nodegen.kernel.registry import default_registry
from nodegen.models.control_files import load_control as load_controlnet
from nodegen.models.objects import DiffusionModel, TextEncoder
from tests.support.fixtures import fixture

_tv.apply()
torch.set_num_threads(1)
STEPS = 3
REG = default_registry()


def _union(unet, seed: int):
    from diffusers import ControlNetModel, ControlNetUnionModel

    base = dict(ControlNetModel.from_unet(unet).config)
    allowed = set(inspect.signature(ControlNetUnionModel.__init__).parameters)
    cfg = {k: v for k, v in base.items() if k in allowed}
    torch.manual_seed(seed)
    net = ControlNetUnionModel(**cfg, num_control_type=8, num_trans_channel=64, num_trans_head=8,
                               num_proj_channel=int(cfg["block_out_channels"][0]))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # zero-initialised outputs would make the control do nothing
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05 + (p if p.ndim == 1 and p.abs().sum() > 0 else 0))
    return net.eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The SDXL fixture, a random union ControlNet for it, the same loaded from a file, a control image,
    our MODEL and the prompts' conditioning (built once for the module's tests)."""
    fx = fixture("sdxl", tmp_path_factory.mktemp("sdxl"))
    net = _union(fx.unet, 13)
    tmp_path = tmp_path_factory.mktemp("union")
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "promax.safetensors"))
    loaded = load_controlnet(tmp_path / "promax.safetensors")
    assert type(loaded).__name__ == "UnionControlNetModel" and loaded.family == "sdxl"
    img = torch.zeros(1, 64, 64, 3)
    img[:, 12:52, 20:44] = 1.0
    model = DiffusionModel.from_unet(fx.unet, "sdxl", "epsilon")
    te = TextEncoder.from_components([fx.tokenizer, fx.tokenizer_2], [fx.text_encoder, fx.text_encoder_2], "sdxl")
    return fx, net, loaded, img, model, te.encode("a castle"), te.encode("low quality")


def _ours(model, loaded, pos0, neg0, img, kind: str | None, strength: float = 0.8):
    """Our latent after STEPS Euler steps; ``kind`` None: no SetUnionControlNetType (ComfyUI's auto)."""
    typed = loaded if kind is None else REG["SetUnionControlNetType"].run(None, control_net=loaded, type=kind)
    pos, neg = REG["ControlNetApplyAdvanced"].run(None, positive=pos0, negative=neg0, control_net=typed, image=img,
                                                  strength=strength, start_percent=0.0, end_percent=1.0)
    return sample(model, pos, neg, {"samples": torch.zeros(1, 4, 8, 8)}, 3, Steps(STEPS), 5.0,
                  device="cpu").latent["samples"]


def _reference(fx, pipe_cls, net, pos0, neg0, img, **control):
    from diffusers import EulerDiscreteScheduler

    sched = EulerDiscreteScheduler.from_config(fx.scheduler.config, timestep_spacing="linspace")
    pipe = pipe_cls(vae=fx.vae, text_encoder=fx.text_encoder, text_encoder_2=fx.text_encoder_2,
                    tokenizer=fx.tokenizer, tokenizer_2=fx.tokenizer_2, unet=fx.unet, controlnet=net,
                    scheduler=sched, force_zeros_for_empty_prompt=False)
    pipe.set_progress_bar_config(disable=True)
    sched.set_timesteps(STEPS)
    smax = float(sched.sigmas[0])
    latents = torch.randn((1, 4, 8, 8), generator=torch.Generator().manual_seed(3)) * ((smax**2 + 1) ** 0.5 / smax)
    return pipe(prompt_embeds=pos0[0].embeds, pooled_prompt_embeds=pos0[0].pooled,
                negative_prompt_embeds=neg0[0].embeds, negative_pooled_prompt_embeds=neg0[0].pooled,
                controlnet_conditioning_scale=0.8, num_inference_steps=STEPS, guidance_scale=5.0, height=64,
                width=64, latents=latents, generator=torch.Generator().manual_seed(3), output_type="latent",
                **control).images


def test_union_controlnet_matches_diffusers(setup):
    from diffusers import StableDiffusionXLControlNetUnionPipeline

    fx, net, loaded, img, model, pos0, neg0 = setup
    lat = _ours(model, loaded, pos0, neg0, img, "depth")
    ref = _reference(fx, StableDiffusionXLControlNetUnionPipeline, net, pos0, neg0, img,
                     control_image=[img.permute(0, 3, 1, 2)], control_mode=[1])
    assert (lat - ref).abs().max() <= 1e-4 * ref.abs().max(), float((lat - ref).abs().max())
    assert (_ours(model, loaded, pos0, neg0, img, "tile") - lat).abs().max() > 1e-3 * ref.abs().max()  # the type
    assert (_ours(model, loaded, pos0, neg0, img, "depth", 0.0) - lat).abs().max() > 1e-3 * ref.abs().max()


def test_union_auto_runs_as_comfyui_does(setup):
    """No control type ("auto", or no SetUnionControlNetType at all): ComfyUI adds the control image's
    embedding to the first block as a plain ControlNet does and embeds the control type as all zeros.
    Oracle: diffusers' plain ControlNetModel holding the union model's ControlNet weights, its time
    embedding shifted by the union model's embedding of no control type."""
    from diffusers import ControlNetModel, StableDiffusionXLControlNetPipeline

    from nodegen.models.union_controlnet import UNION_KEYS

    fx, net, loaded, img, model, pos0, neg0 = setup
    plain = ControlNetModel.from_unet(fx.unet)
    plain.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith(UNION_KEYS)})
    with torch.no_grad():
        no_type = net.control_type_proj(torch.zeros(int(net.config.num_control_type))).reshape(1, -1)
        plain.time_embedding.linear_2.bias += net.control_add_embedding(no_type)[0]
    ref = _reference(fx, StableDiffusionXLControlNetPipeline, plain.eval(), pos0, neg0, img,
                     image=img.permute(0, 3, 1, 2))
    untyped = _ours(model, loaded, pos0, neg0, img, None)
    assert (untyped - ref).abs().max() <= 1e-4 * ref.abs().max(), float((untyped - ref).abs().max())
    assert torch.equal(_ours(model, loaded, pos0, neg0, img, "auto"), untyped)


def test_set_union_type_in_comfy_files():
    from nodegen.formats import comfy

    api = {"1": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "promax.safetensors"}},
           "2": {"class_type": "SetUnionControlNetType", "inputs": {"type": "depth", "control_net": ["1", 0]}}}
    doc, notes = comfy.import_comfy(api)
    assert notes == [] and doc["nodes"]["2"]["inputs"] == {"type": "depth", "control_net": {"from": ["1", "control_net"]}}
    assert comfy.export_api(doc) == api
    ui = {"last_node_id": 2, "last_link_id": 1, "version": 0.4, "groups": [], "links": [[1, 1, 0, 2, 0, "CONTROL_NET"]],
          "nodes": [{"id": 1, "type": "ControlNetLoader", "mode": 0, "widgets_values": ["promax.safetensors"],
                     "outputs": [{"name": "CONTROL_NET", "type": "CONTROL_NET", "links": [1]}]},
                    {"id": 2, "type": "SetUnionControlNetType", "mode": 0, "widgets_values": ["depth"],
                     "inputs": [{"name": "control_net", "type": "CONTROL_NET", "link": 1}]}]}
    doc2, _ = comfy.import_comfy(ui)
    assert doc2["nodes"]["2"]["inputs"] == doc["nodes"]["2"]["inputs"]
