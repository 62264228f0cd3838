"""ComfyUI's SD3 ControlNet example as an API-format workflow (CheckpointLoaderSimple,
ControlNetLoader, ControlNetApplyAdvanced with the VAE, KSampler), run from a models folder laid
out as ComfyUI users lay it out; the SD3 ControlNet tests of both file layouts share it."""

from __future__ import annotations

from pathlib import Path


def run_sd3_controlnet_workflow(tmp_path: Path, checkpoint: Path, ckpt_name: str, controlnet: Path,
                                cn_name: str):
    """Run the workflow with these files (linked under their published names); returns the result
    and the models folder."""
    from PIL import Image

    from tests.support.comfy_run import models_folder, run_api

    models = models_folder(tmp_path, [("checkpoints", checkpoint, ckpt_name), ("controlnet", controlnet, cn_name)])
    Image.effect_mandelbrot((64, 64), (-2, -1.5, 1, 1.5), 40).convert("RGB").save(tmp_path / "in" / "edges.png")
    api = sd3_controlnet_api(ckpt_name, cn_name)
    result = run_api(api, models, tmp_path, check=False)
    return result, models


def sd3_controlnet_api(ckpt_name: str, cn_name: str) -> dict:
    """The workflow in ComfyUI's API format."""
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "a castle", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "4": {"class_type": "LoadImage", "inputs": {"image": "edges.png"}},
        "5": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": cn_name}},
        "6": {"class_type": "ControlNetApplyAdvanced",
              "inputs": {"strength": 0.6, "start_percent": 0.0, "end_percent": 0.8, "positive": ["2", 0],
                         "negative": ["3", 0], "control_net": ["5", 0], "image": ["4", 0], "vae": ["1", 2]}},
        "7": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "8": {"class_type": "KSampler", "inputs": {"seed": 3, "steps": 2, "cfg": 4.0, "sampler_name": "euler",
                                                   "scheduler": "normal", "denoise": 1.0, "model": ["1", 0],
                                                   "positive": ["6", 0], "negative": ["6", 1], "latent_image": ["7", 0]}},
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["1", 2]}},
        "10": {"class_type": "SaveImage", "inputs": {"filename_prefix": "cn", "images": ["9", 0]}},
    }
