"""Issue 18: a LoRA or ControlNet of another architecture is refused when it is applied, naming
the file and both architectures (before: a raw shape error inside KSampler, naming no file)."""

from __future__ import annotations

import pytest
import torch

from nodegen.models.lora import apply_lora, parse_lora
from nodegen.models.objects import DiffusionModel, TextEncoder
from tests.support.fixtures import fixture
from tests.support.lora_fixtures import peft_lora

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


def test_lora_of_another_architecture_is_refused_when_applied(sd1):
    sd = peft_lora(sd1, seed=1, text=False)
    # the same layer names, but cross-attention keys 2048 wide: an SDXL LoRA's shapes
    for key in [k for k in sd if "attn2.to_k.lora_A" in k or "attn2.to_v.lora_A" in k]:
        sd[key] = torch.randn(sd[key].shape[0], 2048) * 0.1
    lora = parse_lora(sd, "/loras/xl_style.safetensors")
    model = DiffusionModel.from_unet(sd1.unet, sd1.family, sd1.prediction)
    clip = TextEncoder.from_components([sd1.tokenizer], [sd1.text_encoder], sd1.family)
    with pytest.raises(ValueError) as info:
        apply_lora(model, clip, lora, 1.0, 1.0)
    text = str(info.value)
    assert "xl_style.safetensors" in text and "for SDXL" in text and "model" in text and "SD1" in text
    # the right one still applies
    apply_lora(model, clip, parse_lora(peft_lora(sd1, seed=1), "ok.safetensors"), 1.0, 1.0)


def test_controlnet_of_another_architecture_is_refused_when_applied(sd1):
    from nodegen.diffusion.conditioning import CondItem
    from nodegen.models.controlnet import ControlNetError, ControlNetModel
    from nodegen.nodes.controlnet import with_control
    from tests.support.controlnet_fixtures import build_controlnet

    cn = ControlNetModel(build_controlnet(sd1.unet), "sd1", source="/cn/canny_sd1.safetensors")
    control = cn.control(torch.zeros(1, 64, 64, 3), 1.0, 0.0, 1.0)
    wide = [CondItem(torch.zeros(1, 77, 2048), torch.zeros(1, 1280))]  # an SDXL conditioning
    with pytest.raises(ControlNetError) as info:
        with_control(wide, control)
    assert "canny_sd1.safetensors" in str(info.value) and "2048" in str(info.value)
    ok = [CondItem(torch.zeros(1, 77, 64))]
    assert with_control(ok, control)[0].extras["controls"] == [control]
