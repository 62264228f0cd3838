"""The fixture converters (diffusers -> original layouts) and nodegen's Flux converter, proved with
diffusers' own single_file_utils functions: converting back gives the same keys and tensors."""

from __future__ import annotations

import inspect

import pytest
import torch

from tests.support.flow_fixtures import fixture


@pytest.fixture(scope="module")
def sd3(tmp_path_factory):
    return fixture("sd3", tmp_path_factory.mktemp("sd3"))


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    return fixture("flux", tmp_path_factory.mktemp("flux"))


def _same(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _diffusers_flux_converter(width: int):
    """diffusers' Flux converter with its hard-coded full-size width (3072) replaced by ``width``."""
    from diffusers.loaders import single_file_utils as sfu

    src = inspect.getsource(sfu.convert_flux_transformer_checkpoint_to_diffusers)
    assert "inner_dim = 3072" in src
    scope = dict(vars(sfu))
    exec(src.replace("inner_dim = 3072", f"inner_dim = {width}"), scope)  # noqa: S102 - test-only patch
    return scope["convert_flux_transformer_checkpoint_to_diffusers"]


def test_sd3_original_layout_converts_back_with_diffusers(sd3):
    from diffusers.loaders import single_file_utils as sfu

    ours = dict(sd3.original_transformer)
    back = sfu.convert_sd3_transformer_checkpoint_to_diffusers(ours)
    _same(back, sd3.transformer.state_dict())


def test_flux_original_layout_converts_back_with_diffusers(flux):
    from nodegen.models.flux_convert import flux_to_diffusers

    want = flux.transformer.state_dict()
    back = _diffusers_flux_converter(128)(dict(flux.original_transformer))
    _same(back, want)
    _same(flux_to_diffusers(dict(flux.original_transformer)), want)
    prefixed = {"model.diffusion_model." + k: v for k, v in flux.original_transformer.items()}
    _same(flux_to_diffusers(prefixed, "model.diffusion_model."), want)
    assert not prefixed


def test_vae_original_layout_converts_back_with_diffusers(sd3):
    from diffusers.loaders import single_file_utils as sfu
    from safetensors.torch import load_file

    ldm = load_file(str(sd3.vae_file))
    back = sfu.convert_ldm_vae_checkpoint({"first_stage_model." + k: v for k, v in ldm.items()},
                                          dict(sd3.vae.config))
    _same(back, sd3.vae.state_dict())
