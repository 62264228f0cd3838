"""SDTurboScheduler (ComfyUI's SD/SDXL Turbo schedule) against the schedule computed here from the
SD noise schedule, and a ComfyUI Turbo workflow (SamplerCustom + KSamplerSelect + SDTurboScheduler)
imported in both formats runs to the same image."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from nodegen.formats import comfy
from nodegen.runtime.engine import Engine

torch.set_num_threads(1)


def _sd_sigmas(timesteps: list[int]) -> torch.Tensor:
    """SD's scaled-linear schedule (betas 0.00085 .. 0.012 over 1000 steps)."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    acp = torch.cumprod(1 - betas, 0)
    return ((1 - acp) / acp).sqrt()[timesteps].float()


def api(steps: int, denoise: float) -> dict:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny-sd1.safetensors"}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red fox", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "5": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler_ancestral"}},
        "6": {"class_type": "SDTurboScheduler", "inputs": {"steps": steps, "denoise": denoise, "model": ["1", 0]}},
        "7": {"class_type": "SamplerCustom", "inputs": {
            "add_noise": True, "noise_seed": 7, "cfg": 1.0, "model": ["1", 0], "positive": ["2", 0],
            "negative": ["3", 0], "sampler": ["5", 0], "sigmas": ["6", 0], "latent_image": ["4", 0]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["1", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "turbo", "images": ["8", 0]}},
    }


def ui(steps: int, denoise: float) -> dict:
    def n(i, t, ins, wv):
        return {"id": i, "type": t, "inputs": [{"name": k, "link": lk} for k, lk in ins], "widgets_values": wv}

    return {"nodes": [
        n(1, "CheckpointLoaderSimple", [], ["tiny-sd1.safetensors"]),
        n(2, "CLIPTextEncode", [("clip", 1)], ["a red fox"]),
        n(3, "CLIPTextEncode", [("clip", 2)], [""]),
        n(4, "EmptyLatentImage", [], [64, 64, 1]),
        n(5, "KSamplerSelect", [], ["euler_ancestral"]),
        n(6, "SDTurboScheduler", [("model", 3)], [steps, denoise]),
        n(7, "SamplerCustom", [("model", 4), ("positive", 5), ("negative", 6), ("sampler", 7), ("sigmas", 8),
                               ("latent_image", 9)], [True, 7, "fixed", 1.0]),
        n(8, "VAEDecode", [("samples", 10), ("vae", 11)], []),
        n(9, "SaveImage", [("images", 12)], ["turbo"]),
    ], "links": [[1, 1, 1, 2, 0, "CLIP"], [2, 1, 1, 3, 0, "CLIP"], [3, 1, 0, 6, 0, "MODEL"], [4, 1, 0, 7, 0, "MODEL"],
                 [5, 2, 0, 7, 1, "CONDITIONING"], [6, 3, 0, 7, 2, "CONDITIONING"], [7, 5, 0, 7, 3, "SAMPLER"],
                 [8, 6, 0, 7, 4, "SIGMAS"], [9, 4, 0, 7, 5, "LATENT"], [10, 7, 0, 8, 0, "LATENT"],
                 [11, 1, 2, 8, 1, "VAE"], [12, 8, 0, 9, 0, "IMAGE"]]}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from tests.support.fixtures import fixture

    sd1 = fixture("sd1", tmp_path_factory.mktemp("sd1"))
    root = tmp_path_factory.mktemp("models")
    (root / "checkpoints").mkdir()
    shutil.copy(sd1.single_file, root / "checkpoints" / "tiny-sd1.safetensors")
    return Engine(models=root, output_dir=tmp_path_factory.mktemp("out"), device="cpu")


@pytest.mark.parametrize(("steps", "denoise", "timesteps"),
                         [(1, 1.0, [999]), (4, 1.0, [999, 899, 799, 699]), (2, 0.5, [499, 399]),
                          (10, 0.75, [699, 599, 499, 399, 299, 199, 99])])
def test_sd_turbo_sigmas(engine, steps, denoise, timesteps):
    doc, _ = comfy.import_comfy(api(steps, denoise))
    result = engine.run(doc, targets=["6"])
    assert result.ok, result.problems
    expected = torch.cat([_sd_sigmas(timesteps), torch.zeros(1)])
    torch.testing.assert_close(torch.as_tensor(result.outputs["6"]["sigmas"]), expected, rtol=1e-5, atol=1e-6)


def test_a_turbo_workflow_runs_the_same_in_both_formats(engine):
    images = []
    for data in (api(1, 1.0), ui(1, 1.0)):
        doc, _ = comfy.import_comfy(data)
        assert doc["nodes"]["6"]["type"] == "SDTurboScheduler" and doc["nodes"]["6"]["inputs"]["steps"] == 1
        result = engine.run(doc)
        assert result.ok, (result.problems, [str(f) for f in result.failures])
        images.append([torch.from_numpy(np.array(im)) for im in result.images])
    assert len(images[0]) == 1 and images[0][0].shape == (64, 64, 3)
    assert torch.equal(images[0][0], images[1][0])
