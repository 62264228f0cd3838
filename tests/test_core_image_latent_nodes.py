"""ImageBlur / ImageSharpen, image and latent flips and rotations, latent arithmetic and batches,
against computations written here from ComfyUI's definitions (numpy for the filters)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.support.nodes import run

torch.set_num_threads(1)



def _gauss(r: int, sigma: float) -> np.ndarray:
    ax = np.linspace(-1, 1, 2 * r + 1)
    d2 = ax[:, None] ** 2 + ax[None, :] ** 2
    g = np.exp(-d2 / (2 * sigma * sigma))
    return g / g.sum()


def _correlate(img: np.ndarray, k: np.ndarray) -> np.ndarray:
    r = k.shape[0] // 2
    p = np.pad(img, ((0, 0), (r, r), (r, r), (0, 0)), mode="reflect")
    out = np.zeros_like(img)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out += k[dy, dx] * p[:, dy: dy + img.shape[1], dx: dx + img.shape[2]]
    return out


def _image(seed=0, b=2, h=9, w=7):
    return torch.rand(b, h, w, 3, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(("r", "sigma"), [(1, 1.0), (3, 0.4)])
def test_blur_and_sharpen(r, sigma):
    img = _image()
    got = run("ImageBlur", image=img, blur_radius=r, sigma=sigma)["image"]
    want = _correlate(img.double().numpy(), _gauss(r, sigma))
    assert np.allclose(got.numpy(), want, atol=1e-5)
    k = -_gauss(r, sigma) * 10 * 0.7
    k[r, r] += 1.0 - k.sum()
    got = run("ImageSharpen", image=img, sharpen_radius=r, sigma=sigma, alpha=0.7)["image"]
    assert np.allclose(got.numpy(), np.clip(_correlate(img.double().numpy(), k), 0, 1), atol=1e-5)
    with pytest.raises(ValueError, match="ImageBlur: input 'blur_radius'"):
        run("ImageBlur", image=img[:, :3, :3], blur_radius=5, sigma=1.0)


def test_flips_and_clockwise_rotations():
    img = torch.arange(6.0).reshape(1, 2, 3, 1)  # rows [0 1 2], [3 4 5]
    assert run("ImageFlip", image=img, flip_method="x-axis: vertically")["image"][0, :, :, 0].tolist() == [
        [3, 4, 5], [0, 1, 2]]
    assert run("ImageFlip", image=img, flip_method="y-axis: horizontally")["image"][0, :, :, 0].tolist() == [
        [2, 1, 0], [5, 4, 3]]
    # a quarter turn clockwise: the left column, read bottom to top, becomes the top row
    assert run("ImageRotate", image=img, rotation="90 degrees")["image"][0, :, :, 0].tolist() == [
        [3, 0], [4, 1], [5, 2]]
    assert run("ImageRotate", image=img, rotation="270 degrees")["image"][0, :, :, 0].tolist() == [
        [2, 5], [1, 4], [0, 3]]
    assert torch.equal(run("ImageRotate", image=img, rotation="none")["image"], img)
    lat = {"samples": img.permute(0, 3, 1, 2), "batch_index": [4]}
    out = run("LatentRotate", samples=lat, rotation="90 degrees")["latent"]
    assert out["samples"][0, 0].tolist() == [[3, 0], [4, 1], [5, 2]] and out["batch_index"] == [4]
    assert run("LatentRotate", samples=lat, rotation="180 degrees")["latent"]["samples"][0, 0].tolist() == [
        [5, 4, 3], [2, 1, 0]]
    assert run("LatentFlip", samples=lat, flip_method="x-axis: vertically")["latent"]["samples"][0, 0].tolist() == [
        [3, 4, 5], [0, 1, 2]]
    assert run("LatentFlip", samples=lat, flip_method="y-axis: horizontally")["latent"]["samples"][0, 0].tolist() == [
        [2, 1, 0], [5, 4, 3]]


def test_latent_arithmetic_fits_the_second_latent():
    g = torch.Generator().manual_seed(1)
    a = {"samples": torch.randn(2, 4, 4, 6, generator=g), "noise_mask": torch.ones(1, 8, 8)}
    b = {"samples": torch.randn(1, 4, 6, 6, generator=g)}
    # ComfyUI: b (6x6) cut around the centre to a's 3:2 aspect (rows 1..4), then resized bilinearly
    fitted = torch.nn.functional.interpolate(b["samples"][:, :, 1:5, :], size=(4, 6), mode="bilinear")
    add = run("LatentAdd", samples1=a, samples2=b)["latent"]
    assert torch.allclose(add["samples"], a["samples"] + fitted.repeat(2, 1, 1, 1))
    assert add["noise_mask"] is a["noise_mask"]
    sub = run("LatentSubtract", samples1=a, samples2=a)["latent"]
    assert torch.equal(sub["samples"], torch.zeros_like(a["samples"]))
    assert torch.equal(run("LatentMultiply", samples=a, multiplier=-2.5)["latent"]["samples"], a["samples"] * -2.5)
    batch = run("LatentBatch", samples1=a, samples2=dict(b, batch_index=[7]))["latent"]
    assert torch.allclose(batch["samples"], torch.cat([a["samples"], fitted])) and batch["batch_index"] == [0, 1, 7]
    with pytest.raises(ValueError, match="channels"):
        run("LatentAdd", samples1=a, samples2={"samples": torch.zeros(1, 16, 4, 6)})


def test_batch_seed_behavior_and_its_noise():
    from nodegen.diffusion.noise import prepare_noise

    lat = {"samples": torch.zeros(3, 4, 2, 2), "batch_index": [5, 6, 7]}
    fixed = run("LatentBatchSeedBehavior", samples=lat, seed_behavior="fixed")["latent"]
    assert fixed["batch_index"] == [5, 5, 5]
    noise = prepare_noise(fixed["samples"], 3, fixed["batch_index"])[0]
    assert torch.equal(noise[0], noise[1]) and torch.equal(noise[1], noise[2])
    assert "batch_index" not in run("LatentBatchSeedBehavior", samples=lat, seed_behavior="random")["latent"]
    assert run("LatentBatchSeedBehavior", samples={"samples": torch.zeros(2, 4, 2, 2)},
               seed_behavior="fixed")["latent"]["batch_index"] == [0, 0]
