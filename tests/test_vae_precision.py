"""The VAE's float32 fallback: a half-precision decode that overflows to NaN is redone in float32,
and the VAE then stays in float32. Runs on the CPU (torch computes fp16 convolutions there too);
tests/test_gpu.py runs the same VAE on a GPU."""

from __future__ import annotations

import torch

from nodegen.models.manager import ModelManager
from nodegen.models.objects import VAEModel
from tests.support.fixtures import VAE_CONFIG

torch.set_num_threads(1)


def overflowing_vae() -> torch.nn.Module:
    """A small VAE whose decoder overflows in fp16 (activations beyond 65504) but not in fp32:
    the first decoder convolution is scaled by 1e5 (the GroupNorm after it normalises again)."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(**VAE_CONFIG, scaling_factor=0.18215).eval()
    with torch.no_grad():
        vae.decoder.conv_in.weight.mul_(1e5)
        vae.decoder.conv_in.bias.mul_(1e5)
    return vae


def decode_count(vae: torch.nn.Module) -> list[torch.dtype]:
    seen: list[torch.dtype] = []
    vae.decoder.register_forward_pre_hook(lambda _m, args: seen.append(args[0].dtype))
    return seen


def test_a_half_precision_nan_decode_falls_back_to_float32(device="cpu"):
    vae = overflowing_vae()
    model = VAEModel.from_vae(vae, manager=ModelManager(device=device))
    latent = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(1)) * 3
    with torch.no_grad():
        raw16 = vae.to(device, torch.float16).decode(latent.to(device, torch.float16)).sample
    assert torch.isnan(raw16).any(), "the test VAE must overflow in fp16"
    ref = model.decode(latent, device=device, dtype=torch.float32)
    seen = decode_count(vae)
    out = model.decode(latent, device=device, dtype=torch.float16)
    assert torch.isfinite(out).all()
    assert seen == [torch.float16, torch.float32]
    assert torch.allclose(out, ref, atol=1e-5)
    assert model.needs_fp32
    seen.clear()
    again = model.decode(latent, device=device, dtype=torch.float16)
    assert seen == [torch.float32], "a VAE that overflowed once goes straight to fp32"
    assert torch.equal(again, out)


def test_a_vae_that_does_not_overflow_stays_in_half_precision():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(**VAE_CONFIG, scaling_factor=0.18215).eval()
    model = VAEModel.from_vae(vae, manager=ModelManager(device="cpu"))
    seen = decode_count(vae)
    out = model.decode(torch.randn(1, 4, 4, 4), device="cpu", dtype=torch.bfloat16)
    assert seen == [torch.bfloat16] and torch.isfinite(out).all() and not model.needs_fp32


def test_dtype_policy_half_on_gpus_float32_on_cpu():
    mgr = ModelManager(device="cpu", gpu_dtype=torch.bfloat16)
    assert mgr.dtype_for("cpu") == torch.float32
    assert mgr.dtype_for("cuda") == torch.bfloat16
    assert ModelManager(device="cpu").dtype_for("cuda:0") == torch.float16


def test_loaders_place_weights_on_a_gpu_manager_device_and_keep_the_cpu_path():
    from nodegen.models import loader

    assert loader._target_device(ModelManager(device="cpu")) == torch.device("cpu")
    assert loader._target_device(ModelManager(device="cuda")) == torch.device("cuda")
    sd = {"w": torch.ones(3, dtype=torch.float16), "i": torch.arange(3)}
    out = loader._cast(dict(sd), torch.float32, torch.device("cpu"))
    assert out["w"].dtype == torch.float32 and out["i"].dtype == torch.int64
    meta = loader._cast(dict(sd), torch.bfloat16, torch.device("meta"))  # the non-CPU path
    assert meta["w"].device.type == "meta" and meta["w"].dtype == torch.bfloat16
    assert meta["i"].dtype == torch.int64
