"""Upscale models: loading (safe, real key layouts), node output == spandrel, tiling, progress,
cancellation, clear errors."""

from __future__ import annotations

import pytest
import torch

from nodegen.image.tiling import run_tiled, tile_starts
from nodegen.kernel.context import Cancelled, CancelToken, RunContext
from nodegen.models.paths import ModelPaths
from nodegen.upscale.model import load_upscale_model
from tests.support import upscale_fixtures as F

torch.set_num_threads(1)
pytestmark = pytest.mark.filterwarnings("ignore:torch.meshgrid")


@pytest.fixture(scope="module")
def models_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    F.write_all(root / "upscale_models")
    return root


def make_ctx(root, progress=None, cancel=None):
    return RunContext(node_id="7", node_title="Upscale", device="cpu", models=None,
                      paths=ModelPaths([root], use_env=False, use_config=False),
                      output_dir=str(root), input_dir=str(root), temp_dir=str(root), workflow=None,
                      cancel=cancel or CancelToken(), _progress=progress)


def image(h=20, w=24, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, h, w, c, generator=g) * 0.8 + 0.1


def direct(desc, img):
    """spandrel's own call API on [1,C,H,W]."""
    return desc(img.permute(0, 3, 1, 2).contiguous()).permute(0, 2, 3, 1)


@pytest.mark.parametrize("name,arch,scale", [
    ("esrgan_old.pth", "ESRGAN", 4), ("esrgan_old.safetensors", "ESRGAN", 4),
    ("esrgan_new.pth", "ESRGAN", 4), ("esrgan_x2plus.pth", "ESRGAN", 2),
    ("compact.pth", "RealESRGAN Compact", 4),
    ("compact.safetensors", "RealESRGAN Compact", 4), ("swinir.safetensors", "SwinIR", 2)])
def test_node_equals_spandrel(models_root, name, arch, scale):
    from nodegen.nodes.upscale import image_upscale_with_model, upscale_model_loader

    ctx = make_ctx(models_root)
    model = upscale_model_loader.run(ctx, model_name=name)
    assert model.architecture == arch and model.scale == scale
    img = image()
    out = image_upscale_with_model.run(ctx, upscale_model=model, image=img, tile_size=0, overlap=0)
    assert out.shape == (1, 20 * scale, 24 * scale, 3)
    ref = direct(model.descriptor, img)
    assert torch.equal(out, ref)
    # not a clamp artefact: the output varies inside (0, 1)
    assert 0 < float(out.std()) and float((out > 0).float().mean()) > 0.5


def test_layouts_give_the_same_model(models_root):
    """Old ESRGAN keys, BasicSR keys under params_ema, and .safetensors all load the same net."""
    img = image(12, 12)
    outs = [direct(load_upscale_model(models_root / "upscale_models" / n).descriptor, img)
            for n in ("esrgan_old.pth", "esrgan_new.pth", "esrgan_old.safetensors")]
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])


@pytest.mark.parametrize("name", ["compact.safetensors", "esrgan_old.safetensors"])
def test_tiled_equals_untiled(models_root, name):
    """With an overlap wider than twice the receptive field the seams are exact."""
    model = load_upscale_model(models_root / "upscale_models" / name)
    img = image(64, 56)
    whole = model.upscale(img, 0, 0)
    tiled = model.upscale(img, 34, 16)
    assert (whole - tiled).abs().max() < 1e-5
    # a narrow overlap is visibly (but boundedly) different, so the test can fail
    rough = model.upscale(img, 32, 8)
    assert 1e-5 < (whole - rough).abs().max() < 0.05


def test_tile_starts_cover_everything():
    for size in (1, 7, 64, 100, 513):
        for tile, ov in ((16, 4), (32, 8), (64, 0)):
            starts = tile_starts(size, tile, ov)
            covered = torch.zeros(size)
            for s in starts:
                covered[s:s + tile] = 1
            assert covered.all() and starts[-1] + min(tile, size) == size
            for a, b in zip(starts, starts[1:], strict=False):
                assert b - a <= tile - ov


def test_blend_of_identity_is_exact():
    """Any tiling of a pure scaler reproduces the scaler (weights normalise to 1)."""
    img = torch.rand(1, 3, 37, 29)
    fn = lambda t: torch.nn.functional.interpolate(t, scale_factor=2, mode="nearest")  # noqa: E731
    out = run_tiled(fn, img, 2, 12, 4)
    assert torch.allclose(out, fn(img), atol=1e-6)


def test_progress_per_tile_and_batch(models_root):
    from nodegen.nodes.upscale import image_upscale_with_model, upscale_model_loader

    seen = []
    ctx = make_ctx(models_root, progress=lambda nid, s, t, p: seen.append((nid, s, t)))
    model = upscale_model_loader.run(ctx, model_name="compact.safetensors")
    img = torch.cat([image(40, 40, seed=1), image(40, 40, seed=2)])
    out = image_upscale_with_model.run(ctx, upscale_model=model, image=img, tile_size=24, overlap=4)
    assert out.shape == (2, 160, 160, 3)
    # 40 px with tile 24 / overlap 4: 2 x 2 tiles per image, 8 in all
    assert seen == [("7", k, 8) for k in range(1, 9)]
    assert torch.allclose(out[1:], model.upscale(img[1:], 24, 4))


def test_cancel_stops_between_tiles(models_root):
    from nodegen.nodes.upscale import image_upscale_with_model, upscale_model_loader

    token = CancelToken()
    calls = []

    def progress(nid, s, t, p):
        calls.append(s)
        if s == 2:
            token.cancel()

    ctx = make_ctx(models_root, progress=progress, cancel=token)
    model = upscale_model_loader.run(ctx, model_name="compact.safetensors")
    with pytest.raises(Cancelled):
        image_upscale_with_model.run(ctx, upscale_model=model, image=image(40, 40),
                                     tile_size=16, overlap=4)
    assert calls == [1, 2]


def test_rgba_keeps_alpha(models_root):
    model = load_upscale_model(models_root / "upscale_models" / "compact.safetensors")
    img = image(10, 10, c=4)
    out = model.upscale(img, 0, 0)
    assert out.shape == (1, 40, 40, 4)
    assert torch.equal(out[..., :3], direct(model.descriptor, img[..., :3].contiguous()))
    assert abs(float(out[..., 3].mean()) - float(img[..., 3].mean())) < 0.02


def test_errors_name_the_fault(models_root, tmp_path):
    from nodegen.nodes.upscale import image_upscale_with_model, upscale_model_loader

    ctx = make_ctx(models_root)
    with pytest.raises(ValueError, match=r"UpscaleModelLoader: model_name 'nope.pth' was not found"):
        upscale_model_loader.run(ctx, model_name="nope.pth")
    bad = tmp_path / "notsr.safetensors"
    F.save({"foo.weight": torch.zeros(3, 3)}, bad)
    with pytest.raises(ValueError, match="notsr.safetensors is not a super-resolution model"):
        load_upscale_model(bad)
    # a pickle that needs code to unpickle is refused by weights_only loading
    evil = tmp_path / "evil.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, evil)
    with pytest.raises(ValueError, match="cannot load .*evil.pth safely"):
        load_upscale_model(evil)
    model = upscale_model_loader.run(ctx, model_name="compact.pth")
    with pytest.raises(ValueError, match="overlap .* less than half of tile_size"):
        image_upscale_with_model.run(ctx, upscale_model=model, image=image(), tile_size=32,
                                     overlap=16)


def test_fingerprint_tracks_the_file(models_root):
    from nodegen.nodes.upscale import upscale_model_loader

    env = type("Env", (), {"paths": ModelPaths([models_root], use_env=False, use_config=False)})()
    fp = upscale_model_loader.fingerprint({"model_name": "compact.pth"}, env)
    assert fp[1] == (models_root / "upscale_models" / "compact.pth").stat().st_size
    names = upscale_model_loader.input("model_name").choice_list(env)
    assert {"esrgan_new.pth", "esrgan_x2plus.pth", "swinir.safetensors"} <= set(names)


def test_tiling_is_exact_beyond_the_receptive_field():
    """Property: for a model whose output depends on inputs within radius r, any tiling whose
    overlap / 4 exceeds r reproduces the whole-image result (any image size, tile, scale)."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    box = torch.ones(3, 1, 3, 3) / 9.0  # radius 1, zero padding at the borders

    def model(scale):
        def fn(t):
            y = torch.nn.functional.conv2d(t, box, padding=1, groups=3)
            return torch.nn.functional.interpolate(y, scale_factor=scale, mode="nearest")
        return fn

    @settings(max_examples=25, deadline=None)
    @given(h=st.integers(1, 70), w=st.integers(1, 70), tile=st.integers(20, 48),
           overlap=st.sampled_from([8, 12, 16]), scale=st.sampled_from([1, 2, 3]))
    def check(h, w, tile, overlap, scale):
        if 2 * overlap >= tile:
            return
        img = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(h * 100 + w))
        fn = model(scale)
        out = run_tiled(fn, img, scale, tile, overlap)
        assert out.shape == (1, 3, h * scale, w * scale)
        assert torch.allclose(out, fn(img), atol=1e-5)

    check()


def test_tiles_respect_the_model_minimum(models_root):
    """SwinIR (window 4, img_size 16) asks for at least 16 px: an 8 px tile becomes 16."""
    model = load_upscale_model(models_root / "upscale_models" / "swinir.safetensors")
    assert model.descriptor.size_requirements.minimum == 16 and model.effective_tile(8) == 16
    calls = []
    out = model.upscale(image(40, 40), 8, 2, progress=lambda d, t: calls.append(t))
    assert out.shape == (1, 80, 80, 3)
    assert calls == [9] * 9  # 16 px tiles with overlap 2 over 40 px: starts 0, 14, 24 per axis
