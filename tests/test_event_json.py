"""The JSON view of events (``run --json``, the server's event stream) leaves images and tensors out
instead of writing their Python repr."""

from __future__ import annotations

import json

import torch
from PIL import Image

from nodegen.kernel.events import Event


def test_images_and_tensors_are_left_out_of_the_json():
    ui = {"images": [Image.new("RGB", (4, 4))], "paths": ["/out/a_00001.png"], "latent": torch.zeros(2),
          "text": ["hello"], "mixed": [Image.new("RGB", (2, 2)), 3]}
    out = Event("node_finished", 1, "7", {"ui": ui, "seconds": 0.5}).to_json()
    assert out["ui"] == {"paths": ["/out/a_00001.png"], "text": ["hello"], "mixed": [3]}
    assert "PIL" not in json.dumps(out)


def test_empty_lists_stay():
    assert Event("run_started", 1, None, {"skipped_targets": []}).to_json()["skipped_targets"] == []
