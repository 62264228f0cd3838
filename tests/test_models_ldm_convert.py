"""The diffusers -> LDM converter, proven by diffusers' own LDM -> diffusers functions."""

from __future__ import annotations

import pytest
import torch

from tests.support.fixtures import fixture

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def fx(tmp_path_factory):
    def get(name):
        return fixture(name, tmp_path_factory.mktemp(name))
    return get


def _same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


def _flat(sd: dict) -> dict:
    return {k.removeprefix("text_model."): v for k, v in sd.items()}


@pytest.mark.parametrize("name", ["sd1", "sd2", "sdxl", "sdxl_refiner", "sd1_inpaint"])
def test_unet_and_vae_round_trip(fx, name):
    from diffusers.loaders import single_file_utils as sfu

    ns = fx(name)
    ldm = ns.ldm_state_dict
    assert all(k.startswith(("model.diffusion_model.", "first_stage_model.", "cond_stage_model.",
                             "conditioner.")) for k in ldm)
    _same(sfu.convert_ldm_unet_checkpoint(ldm, dict(ns.unet.config)), ns.unet.state_dict())
    vae_back = sfu.convert_ldm_vae_checkpoint(ldm, dict(ns.vae.config))
    _same(vae_back, ns.vae.state_dict())
    # the VAE's mid attention is stored as 1x1 convolutions under LDM names
    assert ldm["first_stage_model.encoder.mid.attn_1.q.weight"].ndim == 4
    assert "first_stage_model.decoder.mid.attn_1.proj_out.bias" in ldm


def test_clip_l_round_trip(fx):
    from diffusers.loaders import single_file_utils as sfu

    ns = fx("sd1")
    ldm = ns.ldm_state_dict
    assert "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight" in ldm
    _same(_flat(sfu.convert_ldm_clip_checkpoint(ldm)), ns.text_encoder.state_dict())


def test_open_clip_sd2_round_trip(fx):
    from diffusers.loaders import single_file_utils as sfu

    ns = fx("sd2")
    ldm = ns.ldm_state_dict
    assert "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight" in ldm
    back = _flat(sfu.convert_open_clip_checkpoint(ns.text_encoder, ldm))
    n = ns.text_encoder.config.num_hidden_layers
    # the extra (24th-like) layer is present in the file; diffusers only drops it at full size
    extra = {k for k in back if k.startswith(f"encoder.layers.{n}.")}
    assert extra
    _same({k: v for k, v in back.items() if k not in extra}, ns.text_encoder.state_dict())


def test_sdxl_text_encoders_round_trip(fx):
    from diffusers.loaders import single_file_utils as sfu

    ns = fx("sdxl")
    ldm = ns.ldm_state_dict
    _same(_flat(sfu.convert_ldm_clip_checkpoint(ldm)), ns.text_encoder.state_dict())
    back = sfu.convert_open_clip_checkpoint(ns.text_encoder_2, ldm, prefix="conditioner.embedders.1.model.")
    _same(back, ns.text_encoder_2.state_dict())


def test_sdxl_refiner_text_encoder_round_trip(fx):
    from diffusers.loaders import single_file_utils as sfu

    ns = fx("sdxl_refiner")
    ldm = ns.ldm_state_dict
    assert not any(k.startswith("conditioner.embedders.1.") for k in ldm)
    back = sfu.convert_open_clip_checkpoint(ns.text_encoder_2, ldm, prefix="conditioner.embedders.0.model.")
    _same(back, ns.text_encoder_2.state_dict())
