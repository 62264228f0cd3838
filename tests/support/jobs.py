"""Light workflows for the job server and sweep tests: a tiny input image, inverted and saved.

No model is involved, so a job costs a few milliseconds (the 1000-job flood), and ``slow_workflow``
scales the image up first so a job runs long enough to be killed in the middle.
"""

from __future__ import annotations

from pathlib import Path


def tiny_png(folder: Path, name: str = "tiny.png", size: int = 4) -> Path:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    Image.new("RGB", (size, size), (200, 30, 60)).save(path)
    return path


def light_workflow(image: str = "tiny.png", prefix: str = "light") -> dict:
    return {
        "format": "nodegen-workflow", "version": 1,
        "nodes": {
            "1": {"type": "LoadImage", "title": "Source", "inputs": {"image": image}},
            "2": {"type": "ImageInvert", "title": "Invert", "inputs": {"image": {"from": ["1", "image"]}}},
            "3": {"type": "SaveImage", "title": "Save",
                  "inputs": {"images": {"from": ["2", "image"]}, "filename_prefix": prefix}},
        },
    }


def slow_workflow(image: str = "tiny.png", size: int = 3072) -> dict:
    """Scale the image to ``size`` square before saving: a few seconds of PNG encoding."""
    doc = light_workflow(image, "slow")
    doc["nodes"]["4"] = {"type": "ImageScale", "title": "Big",
                         "inputs": {"image": {"from": ["1", "image"]}, "method": "nearest-exact",
                                    "width": size, "height": size, "crop": "disabled"}}
    doc["nodes"]["2"]["inputs"]["image"] = {"from": ["4", "image"]}
    return doc
