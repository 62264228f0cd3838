"""The sampling-side nodes called directly: latent, mask, VAE and conditioning nodes; area,
combine and concat in the denoiser."""

from __future__ import annotations

import pytest
import torch

from nodegen.diffusion.conditioning import CondItem
from nodegen.diffusion.denoiser import Denoiser
from nodegen.kernel.context import CancelToken, RunContext
from nodegen.models.objects import DiffusionModel, TextEncoder, VAEModel
from nodegen.nodes import conditioning as cn
from nodegen.nodes import latent as ln
from nodegen.nodes import masks as mk
from nodegen.nodes import sampling as sm
from nodegen.nodes import vae as vn
from tests.support.fixtures import fixture

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def sd1(tmp_path_factory):
    return fixture("sd1", tmp_path_factory.mktemp("sd1"))


@pytest.fixture(scope="module")
def parts(sd1):
    model = DiffusionModel.from_unet(sd1.unet, "sd1", "epsilon")
    te = TextEncoder.from_components([sd1.tokenizer], [sd1.text_encoder], "sd1")
    return model, te, VAEModel.from_vae(sd1.vae)


@pytest.fixture()
def ctx():
    return RunContext(node_id="1", node_title="t", device=torch.device("cpu"), models=None, paths=None,
                      output_dir=".", input_dir=".", temp_dir=".", workflow=None, cancel=CancelToken())


def run(nd, ctx, **kw):
    return nd.normalize_result(nd.run(ctx, **kw))


# -- latent nodes ---------------------------------------------------------------------------------

def test_empty_latent(ctx):
    lat = run(ln.empty_latent_image, ctx, width=96, height=64, batch_size=3)["latent"]
    assert lat["samples"].shape == (3, 4, 8, 12) and float(lat["samples"].abs().max()) == 0
    with pytest.raises(ValueError, match="'width' must be a multiple of 8.*got 100, use 96 or 104"):
        run(ln.empty_latent_image, ctx, width=100, height=64, batch_size=1)
    with pytest.raises(ValueError, match="'height'"):
        run(ln.empty_latent_image, ctx, width=64, height=63, batch_size=1)


def test_latent_upscale(ctx):
    s = torch.arange(2 * 4 * 8 * 16, dtype=torch.float32).reshape(2, 4, 8, 16)
    lat = {"samples": s, "noise_mask": torch.ones(2, 1, 64, 128)}
    out = run(ln.latent_upscale, ctx, samples=lat, upscale_method="nearest-exact", width=256, height=128,
              crop="disabled")["latent"]
    assert out["samples"].shape == (2, 4, 16, 32) and "noise_mask" in out
    assert torch.equal(out["samples"][:, :, ::2, ::2], s)  # nearest x2 keeps every value
    # center crop to a square first, then resize
    sq = run(ln.latent_upscale, ctx, samples=lat, upscale_method="bilinear", width=64, height=64, crop="center")["latent"]
    assert torch.allclose(sq["samples"], s[:, :, :, 4:12])
    # width 0 keeps the aspect ratio
    kept = run(ln.latent_upscale, ctx, samples=lat, upscale_method="area", width=0, height=128, crop="disabled")
    assert kept["latent"]["samples"].shape == (2, 4, 16, 32)
    by = run(ln.latent_upscale_by, ctx, samples=lat, upscale_method="bicubic", scale_by=1.5)["latent"]
    assert by["samples"].shape == (2, 4, 12, 24)
    with pytest.raises(ValueError, match="'width' must be a multiple of 8"):
        run(ln.latent_upscale, ctx, samples=lat, upscale_method="bilinear", width=65, height=64, crop="disabled")


def test_batch_nodes(ctx):
    s = torch.randn(4, 4, 2, 2)
    lat = {"samples": s, "noise_mask": torch.rand(4, 1, 16, 16)}
    one = run(ln.latent_from_batch, ctx, samples=lat, batch_index=2, length=5)["latent"]
    assert torch.equal(one["samples"], s[2:]) and one["batch_index"] == [2, 3]
    assert torch.equal(one["noise_mask"], lat["noise_mask"][2:])
    rep = run(ln.repeat_latent_batch, ctx, samples=one, amount=3)["latent"]
    assert rep["samples"].shape[0] == 6 and rep["batch_index"] == [2, 3, 6, 7, 10, 11]
    assert rep["noise_mask"].shape[0] == 6
    with pytest.raises(ValueError, match="'batch_index' is 9 but the batch has only 4"):
        run(ln.latent_from_batch, ctx, samples=lat, batch_index=9, length=1)


def test_set_noise_mask_and_mask_nodes(ctx):
    img = torch.rand(2, 8, 8, 4)
    m = run(mk.image_to_mask, ctx, image=img, channel="green")["mask"]
    assert torch.equal(m, img[..., 1])
    assert torch.equal(run(mk.invert_mask, ctx, mask=m)["mask"], 1 - m)
    back = run(mk.mask_to_image, ctx, mask=m)["image"]
    assert back.shape == (2, 8, 8, 3) and torch.equal(back[..., 2], m)
    with pytest.raises(ValueError, match="no alpha channel"):
        run(mk.image_to_mask, ctx, image=img[..., :3], channel="alpha")
    lat = run(ln.set_latent_noise_mask, ctx, samples={"samples": torch.zeros(2, 4, 1, 1)}, mask=m)["latent"]
    assert lat["noise_mask"].shape == (2, 1, 8, 8)


# -- VAE nodes ------------------------------------------------------------------------------------

def test_vae_nodes(ctx, parts):
    _, _, vae = parts
    g = torch.Generator().manual_seed(0)
    img = torch.nn.functional.interpolate(torch.rand(1, 3, 6, 6, generator=g), size=(131, 130),
                                          mode="bilinear").permute(0, 2, 3, 1)
    lat = run(vn.vae_encode, ctx, pixels=img, vae=vae)["latent"]
    assert lat["samples"].shape == (1, 4, 16, 16)  # cropped to 128 x 128
    dec = run(vn.vae_decode, ctx, samples=lat, vae=vae)["image"]
    assert dec.shape == (1, 128, 128, 3)
    # the node passes its pixel sizes to the VAE's tiled decode in latent units
    tiled = run(vn.vae_decode_tiled, ctx, samples=lat, vae=vae, tile_size=96, overlap=32)["image"]
    assert torch.equal(tiled, vae.decode_tiled(lat["samples"], tile=12, overlap=4, device="cpu"))
    # one tile covering everything == the plain decode
    whole = run(vn.vae_decode_tiled, ctx, samples=lat, vae=vae, tile_size=128, overlap=32)["image"]
    assert torch.allclose(whole, dec, atol=1e-5)
    # several tiles: seams blended, close to the plain decode (a random tiny VAE's group norms make
    # tiles differ more than a real VAE's), far closer than a different latent
    other = vae.decode(lat["samples"].flip(-1), device="cpu")
    assert (tiled - dec).abs().mean() < 0.5 * (other - dec).abs().mean()
    enc_t = run(vn.vae_encode_tiled, ctx, pixels=img, vae=vae, tile_size=64, overlap=16)["latent"]
    assert torch.equal(enc_t["samples"], vae.encode_tiled(img[:, 1:129, 1:129], tile=64, overlap=16, device="cpu"))
    enc_whole = run(vn.vae_encode_tiled, ctx, pixels=img, vae=vae, tile_size=128, overlap=16)["latent"]
    assert torch.allclose(enc_whole["samples"], lat["samples"], atol=1e-5)
    with pytest.raises(ValueError, match="'overlap'"):
        run(vn.vae_decode_tiled, ctx, samples=lat, vae=vae, tile_size=64, overlap=32)


def test_vae_encode_for_inpaint(ctx, parts):
    _, _, vae = parts
    img = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 64, 64)
    mask[:, 20:30, 20:30] = 1
    px, nm = vn.inpaint_inputs(img, mask, 6)
    assert torch.all(px[0, 20:30, 20:30] == 0.5) and torch.equal(px[0, :20], img[0, :20])
    assert nm.shape == (1, 1, 64, 64) and float(nm[0, 0, 18:33, 18:33].min()) == 1
    assert float(nm[0, 0, :18].max()) == 0 and float(nm[0, 0, 33:].max()) == 0  # grown 2-3 px
    lat = run(vn.vae_encode_for_inpaint, ctx, pixels=img, vae=vae, mask=mask, grow_mask_by=0)["latent"]
    assert lat["samples"].shape == (1, 4, 8, 8) and torch.equal(lat["noise_mask"][0, 0], mask[0])


# -- sampling nodes -------------------------------------------------------------------------------

def test_scheduler_nodes(ctx, parts):
    model, _, _ = parts
    s = run(sm.basic_scheduler, ctx, model=model, scheduler="karras", steps=4, denoise=1.0)["sigmas"]
    k = run(sm.karras_scheduler, ctx, steps=4, sigma_max=float(s[0]), sigma_min=float(s[-2]), rho=7.0)["sigmas"]
    assert torch.allclose(s, k, rtol=1e-5)
    e = run(sm.exponential_scheduler, ctx, steps=4, sigma_max=10.0, sigma_min=0.1)["sigmas"]
    assert torch.allclose(e[:-1], torch.tensor([10.0, 10 ** (1 / 3), 10 ** (-1 / 3), 0.1]), rtol=1e-5)
    with pytest.raises(ValueError, match="'sigma_max' must be greater"):
        run(sm.karras_scheduler, ctx, steps=4, sigma_max=0.01, sigma_min=0.1, rho=7.0)
    assert run(sm.ksampler_select, ctx, sampler_name="lcm")["sampler"].name == "lcm"


def test_ksampler_linked_values_are_checked_by_their_socket_types(parts):
    """The layout rules of LATENT and CONDITIONING live on the socket types; the executor checks every
    linked value with them before a node runs, naming the input."""
    from nodegen.kernel.values import InputValueError, check_linked_values

    model, te, _ = parts
    pos = te.encode("x")
    good = dict(model=model, positive=pos, negative=pos, latent_image={"samples": torch.zeros(1, 4, 8, 8)})
    linked = dict.fromkeys(good)
    check_linked_values(sm.ksampler, good, linked)
    with pytest.raises(InputValueError, match="input 'negative' must be a non-empty CONDITIONING"):
        check_linked_values(sm.ksampler, dict(good, negative=[]), linked)
    with pytest.raises(InputValueError, match="input 'latent_image' must be a LATENT"):
        check_linked_values(sm.ksampler, dict(good, latent_image=torch.zeros(1, 4, 8, 8)), linked)


# -- conditioning nodes and the denoiser ------------------------------------------------------------

def _denoise(model, positive, negative=None, cfg=1.0, sigma=3.0, seed=0):
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(seed)) * sigma
    with model.use("cpu", torch.float32) as unet:
        den = Denoiser(model, unet, positive, negative, cfg, latent_image=torch.zeros(1, 4, 8, 8))
        return den(x, torch.tensor([sigma]))


def test_combine_concat_zero_out(ctx, parts):
    model, te, _ = parts
    a, b = te.encode("a red apple"), te.encode("a blue car")
    d_a, d_b = _denoise(model, a), _denoise(model, b)
    both = run(cn.conditioning_combine, ctx, conditioning_1=a, conditioning_2=b)["conditioning"]
    assert len(both) == 2
    assert torch.allclose(_denoise(model, both), (d_a + d_b) / 2, atol=1e-5)
    # concat of a prompt with itself: same prediction (attention over repeated keys is unchanged)
    aa = run(cn.conditioning_concat, ctx, conditioning_to=a, conditioning_from=a)["conditioning"]
    assert aa[0].embeds.shape[1] == 154
    assert torch.allclose(_denoise(model, aa), d_a, atol=1e-4)
    ab = run(cn.conditioning_concat, ctx, conditioning_to=a, conditioning_from=b)["conditioning"]
    assert not torch.allclose(_denoise(model, ab), d_a, atol=1e-3)
    # batching different token lengths together (negative 154 tokens, positive 77) is exact too
    cfg_batched = _denoise(model, a, aa, cfg=3.0)
    assert torch.allclose(cfg_batched, d_a, atol=1e-4)
    z = run(cn.conditioning_zero_out, ctx, conditioning=a)["conditioning"]
    assert float(z[0].embeds.abs().max()) == 0 and a[0].embeds.abs().max() > 0


def test_area_conditioning(ctx, parts):
    model, te, _ = parts
    a, b = te.encode("a red apple"), te.encode("a blue car")
    d_a = _denoise(model, a)
    full = run(cn.conditioning_set_area, ctx, conditioning=a, width=64, height=64, x=0, y=0, strength=1.0)
    assert torch.allclose(_denoise(model, full["conditioning"]), d_a, atol=1e-5)
    left = run(cn.conditioning_set_area, ctx, conditioning=b, width=32, height=64, x=0, y=0, strength=2.0)
    mixed = _denoise(model, a + left["conditioning"])
    assert torch.allclose(mixed[..., 4:], d_a[..., 4:], atol=1e-5)  # outside the area: only a
    assert not torch.allclose(mixed[..., :3], d_a[..., :3], atol=1e-3)  # inside: b mixed in
    with pytest.raises(ValueError, match="'x' must be a multiple of 8"):
        run(cn.conditioning_set_area, ctx, conditioning=a, width=64, height=64, x=3, y=0, strength=1.0)


def test_clip_text_encode_nodes(ctx, parts, sd1):
    _, te, _ = parts
    c = run(cn.clip_text_encode, ctx, clip=te, text="a cat")["conditioning"]
    assert isinstance(c[0], CondItem) and torch.equal(c[0].embeds, te.encode("a cat")[0].embeds)
    with pytest.raises(ValueError, match="input 'clip' is a sd1 text encoder"):
        run(cn.clip_text_encode_sdxl, ctx, clip=te, width=1024, height=1024, crop_w=0, crop_h=0,
            target_width=1024, target_height=1024, text_g="a", text_l="a")


def test_clip_text_encode_sdxl(ctx, tmp_path_factory):
    fx = fixture("sdxl", tmp_path_factory.mktemp("sdxl"))
    te = TextEncoder.from_components([fx.tokenizer, fx.tokenizer_2], [fx.text_encoder, fx.text_encoder_2], "sdxl")
    same = run(cn.clip_text_encode_sdxl, ctx, clip=te, width=800, height=600, crop_w=8, crop_h=16,
               target_width=1024, target_height=768, text_g="a castle", text_l="a castle")["conditioning"][0]
    ref = te.encode("a castle")[0]
    assert torch.allclose(same.embeds, ref.embeds, atol=1e-6) and torch.allclose(same.pooled, ref.pooled, atol=1e-6)
    assert same.extras == dict(width=800, height=600, crop_w=8, crop_h=16, target_width=1024, target_height=768)
    # different texts: CLIP-L part from text_l, OpenCLIP-G part (and pooled) from text_g
    mix = run(cn.clip_text_encode_sdxl, ctx, clip=te, width=64, height=64, crop_w=0, crop_h=0, target_width=64,
              target_height=64, text_g="a castle", text_l="a dog " * 40)["conditioning"][0]
    dog = te.encode("a dog " * 40)[0]
    assert mix.embeds.shape == (1, 154, 192)
    assert torch.allclose(mix.embeds[..., :64], dog.embeds[..., :64], atol=1e-6)
    assert torch.allclose(mix.embeds[:, :77, 64:], ref.embeds[..., 64:], atol=1e-6)
    assert torch.allclose(mix.pooled, ref.pooled, atol=1e-6)
