"""Running a ComfyUI API-format workflow from a file, as a user opens one, over a models folder laid
out as ComfyUI users lay it out (links to the test fixtures' files under their published names)."""

from __future__ import annotations

import json
import os
from pathlib import Path


def models_folder(tmp_path: Path, links) -> Path:
    """``tmp_path/models`` with ``(sub-folder, file, published name)`` links, and an empty input
    folder ``tmp_path/in`` beside it."""
    models = tmp_path / "models"
    for sub, src, name in links:
        (models / sub).mkdir(parents=True, exist_ok=True)
        os.symlink(src, models / sub / name)
    (tmp_path / "in").mkdir(exist_ok=True)
    return models


def flux_models(fx, tmp_path: Path, diffusion_model=None, name: str | None = None, extra=()) -> Path:
    """The Flux fixture's files as Flux workflows name them (``flux1-dev.safetensors``, ``ae``,
    ``clip_l``, ``t5xxl_fp16``), plus ``extra`` links."""
    dm = diffusion_model if diffusion_model is not None else fx.diffusion_model
    return models_folder(tmp_path, [("diffusion_models", dm, name or os.path.basename(dm)),
                                    ("vae", fx.vae_file, "ae.safetensors"),
                                    ("text_encoders", fx.clip_l, "clip_l.safetensors"),
                                    ("text_encoders", fx.t5xxl, "t5xxl_fp16.safetensors"), *extra])


def run_api(api: dict, models: Path, tmp_path: Path, check: bool = True, targets: list[str] | None = None):
    """Run the document from ``tmp_path/workflow.json``; with ``check`` it must succeed; ``targets``:
    the nodes to run (and whose outputs the result keeps), else the output nodes."""
    from nodegen.formats import open_any
    from nodegen.runtime.engine import Engine

    (tmp_path / "workflow.json").write_text(json.dumps(api))
    engine = Engine(models=models, input_dir=tmp_path / "in", output_dir=tmp_path / "out", device="cpu")
    result = engine.run(open_any(tmp_path / "workflow.json"), targets=targets)
    if check:
        assert result.ok, (result.problems, [str(f) + getattr(f, "traceback", "") for f in result.failures])
    return result
