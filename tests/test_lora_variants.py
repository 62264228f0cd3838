"""LoHa, LoKr, DoRA (peft as the oracle: its own layers' delta weights) and LoCon with a Tucker
core (ComfyUI/LyCORIS's formula written out here), read from kohya-named files."""

from __future__ import annotations

import copy

import pytest
import torch

from nodegen.compat import torchvision as _tv
from nodegen.models.lora import apply_lora, parse_lora
from nodegen.models.objects import DiffusionModel
from tests.support.fixtures import fixture

_tv.apply()
torch.set_num_threads(1)
TARGETS = ["to_q", "to_v", "proj_in", "conv1"]


@pytest.fixture(scope="module")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


def _peft_adapter(unet, config):
    from peft import inject_adapter_in_model

    model = inject_adapter_in_model(config, copy.deepcopy(unet))
    return model


def _kohya_from_peft(model, names: tuple[str, ...], alpha: float, dora: bool = False) -> dict:
    """The adapter's tensors under kohya names (``lora_unet_<module_with_underscores>.<tensor>``)."""
    sd = {}
    for mod_name, mod in model.named_modules():
        if not hasattr(mod, "base_layer"):
            continue
        key = "lora_unet_" + mod_name.replace(".", "_")
        for n in names:
            holder = getattr(mod, n, None)
            if holder is None or "default" not in holder:
                continue
            t = holder["default"]
            t = t.weight if isinstance(t, torch.nn.Module) else t
            sd[f"{key}.{n}"] = t.detach().clone()
        sd[f"{key}.alpha"] = torch.tensor(alpha)
        if dora:
            m = mod.lora_magnitude_vector["default"].weight.detach().clone()
            sd[f"{key}.dora_scale"] = m.reshape(-1, *[1] * (mod.base_layer.weight.ndim - 1))
    return sd


def _peft_deltas(model) -> dict[str, torch.Tensor]:
    out = {}
    for mod_name, mod in model.named_modules():
        if hasattr(mod, "base_layer"):
            base = mod.base_layer.weight.detach().clone()
            mod.merge(adapter_names=["default"])
            out[mod_name + ".weight"] = mod.base_layer.weight.detach().clone() - base
    return out


def _ours(unet, sd) -> dict[str, torch.Tensor]:
    model = DiffusionModel.from_unet(unet, "sd1")
    base = {k: v.detach().clone() for k, v in unet.named_parameters()}
    patched, _ = apply_lora(model, None, parse_lora(sd), 1.0, 1.0)
    with patched.use("cpu") as u:
        return {k: v.detach() - base[k] for k, v in u.named_parameters()}


def _compare(ours, want):
    assert want
    for k, d in want.items():
        assert torch.allclose(ours[k], d, atol=1e-5, rtol=1e-4), (k, float((ours[k] - d).abs().max()))
    changed = {k for k, v in ours.items() if v.abs().max() > 0}
    assert changed == set(want)


def test_loha_equals_peft(sd1, tmp_path):
    from peft import LoHaConfig
    from safetensors.torch import save_file

    from nodegen.models.lora import read_lora

    model = _peft_adapter(sd1.unet, LoHaConfig(r=4, alpha=2, target_modules=TARGETS, init_weights=False))
    sd = _kohya_from_peft(model, ("hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"), 2.0)
    assert any(k.endswith("hada_w1_a") for k in sd)
    _compare(_ours(sd1.unet, sd), _peft_deltas(model))
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "loha.safetensors"))
    lora = read_lora(tmp_path / "loha.safetensors")  # recognised as a LoRA-type file
    assert {type(x).__name__ for x in lora.layers} == {"LycorisLayer"} and lora.layout == "kohya"


def test_lokr_equals_peft(sd1):
    from peft import LoKrConfig

    model = _peft_adapter(sd1.unet, LoKrConfig(r=4, alpha=3, target_modules=TARGETS, init_weights=False))
    sd = _kohya_from_peft(model, ("lokr_w1", "lokr_w1_a", "lokr_w1_b", "lokr_w2", "lokr_w2_a", "lokr_w2_b"), 3.0)
    want = _peft_deltas(model)
    # a LyCORIS file whose two factors are both whole carries no scale (LyCORIS and ComfyUI apply
    # none); peft scales every layer by alpha / r
    whole = {k[len("lora_unet_"):-len(".lokr_w2")] for k in sd if k.endswith(".lokr_w2")}
    assert whole and any(k.endswith(".lokr_w2_b") for k in sd)  # both cases are covered
    for k in want:
        if k[: -len(".weight")].replace(".", "_") in whole:
            want[k] = want[k] * 4 / 3
    _compare(_ours(sd1.unet, sd), want)


def test_dora_equals_peft(sd1):
    from peft import LoraConfig

    model = _peft_adapter(sd1.unet, LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_v", "proj_in"],
                                               use_dora=True, init_lora_weights=False))
    for mod in model.modules():  # a trained magnitude differs from the weight's own norm
        if hasattr(mod, "lora_magnitude_vector") and "default" in mod.lora_magnitude_vector:
            with torch.no_grad():
                mod.lora_magnitude_vector["default"].weight.mul_(1.3)
    raw = _kohya_from_peft(model, ("lora_A", "lora_B"), 4.0, dora=True)
    sd = {k.replace(".lora_A", ".lora_down.weight").replace(".lora_B", ".lora_up.weight"): v for k, v in raw.items()}
    assert any(k.endswith(".dora_scale") for k in sd)
    _compare(_ours(sd1.unet, sd), _peft_deltas(model))


def test_locon_tucker_and_strength(sd1):
    name, w = next((n, p) for n, p in sd1.unet.named_parameters() if n.endswith("conv1.weight") and p.ndim == 4)
    w = w.detach().clone()
    key = "lora_unet_" + name[: -len(".weight")].replace(".", "_")
    g = torch.Generator().manual_seed(3)
    r, out_c, in_c, kh, kw = 3, w.shape[0], w.shape[1], w.shape[2], w.shape[3]
    down, mid, up = (torch.randn(r, in_c, 1, 1, generator=g), torch.randn(r, r, kh, kw, generator=g),
                     torch.randn(out_c, r, 1, 1, generator=g))
    sd = {f"{key}.lora_down.weight": down, f"{key}.lora_mid.weight": mid, f"{key}.lora_up.weight": up,
          f"{key}.alpha": torch.tensor(1.5)}
    # LyCORIS: W += up (x) mid (x) down, a 1x1 conv, the kernel, a 1x1 conv, scaled alpha / rank
    want = torch.zeros_like(w)
    for o in range(out_c):
        for i in range(in_c):
            want[o, i] = sum(up[o, a, 0, 0] * mid[a, b] * down[b, i, 0, 0] for a in range(r) for b in range(r))
    want *= 1.5 / r
    ours = _ours(sd1.unet, sd)
    assert torch.allclose(ours[name], want, atol=1e-4)
    model = DiffusionModel.from_unet(sd1.unet, "sd1")
    half, _ = apply_lora(model, None, parse_lora(sd), 0.5, 1.0)
    with half.use("cpu") as u:
        assert torch.allclose(u.get_parameter(name) - w, 0.5 * want, atol=1e-4)


def test_peft_dora_file_equals_peft(sd1, tmp_path):
    """DoRA as PEFT saves it (``lora_magnitude_vector``, diffusers' ``unet.`` / ``text_encoder.`` file
    with PEFT's alpha in the metadata): the patched UNet and text encoder give PEFT's own outputs."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin
    from peft import LoraConfig, get_peft_model_state_dict

    from nodegen.models.lora import read_lora
    from nodegen.models.objects import TextEncoder

    def dora(module, targets):
        config = LoraConfig(r=4, lora_alpha=8, target_modules=targets, use_dora=True, init_lora_weights=False)
        model = _peft_adapter(module, config)
        for mod in model.modules():  # a trained magnitude differs from the weight's own norm
            if hasattr(mod, "lora_magnitude_vector") and "default" in mod.lora_magnitude_vector:
                with torch.no_grad():
                    mod.lora_magnitude_vector["default"].weight.mul_(1.3)
        return model.eval(), {k: v for k, v in config.to_dict().items() if k in ("r", "lora_alpha")}

    unet, unet_meta = dora(sd1.unet, ["to_q", "to_v", "proj_in", "conv1"])
    te, te_meta = dora(sd1.text_encoder, ["q_proj", "v_proj", "fc1"])
    StableDiffusionLoraLoaderMixin.save_lora_weights(
        tmp_path, unet_lora_layers=get_peft_model_state_dict(unet), text_encoder_lora_layers=get_peft_model_state_dict(te),
        unet_lora_adapter_metadata=unet_meta, text_encoder_lora_adapter_metadata=te_meta)
    [path] = tmp_path.glob("*.safetensors")
    lora = read_lora(path)
    assert sum(layer.dora_scale is not None for layer in lora.layers) == len(lora.layers) > 0
    model, clip = apply_lora(DiffusionModel.from_unet(sd1.unet, "sd1"),
                             TextEncoder.from_components([sd1.tokenizer], [sd1.text_encoder], "sd1"), lora, 1.0, 1.0)
    g = torch.Generator().manual_seed(5)
    x, ctx = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 77, sd1.unet.config.cross_attention_dim, generator=g)
    ids = torch.randint(0, 49408, (1, 77), generator=g)
    with torch.no_grad():
        want, base = unet(x, 500, ctx).sample, sd1.unet(x, 500, ctx).sample
    assert (want - base).abs().max() > 1e-2  # the DoRA matters
    with torch.no_grad(), model.use("cpu") as ours_unet, clip.use("cpu") as [ours_te]:  # patched in place
        torch.testing.assert_close(ours_unet(x, 500, ctx).sample, want, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ours_te(ids).last_hidden_state, te(ids).last_hidden_state, rtol=1e-4, atol=1e-5)
    # PeftModel.save_pretrained's spelling of the same UNet adapter
    saved = parse_lora({"base_model.model." + k: v for k, v in get_peft_model_state_dict(unet).items()})
    assert sorted((x.module, float(x.dora_scale.sum())) for x in saved.layers) == sorted(
        (x.module, float(x.dora_scale.sum())) for x in lora.layers if x.component == "unet")
