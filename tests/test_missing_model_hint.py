"""A model file that is not found: the error says what to choose instead (the same file name in a
sub-folder, else the models there are)."""

from __future__ import annotations

from nodegen.runtime.engine import Engine


def _problem(tmp_path, name: str) -> str:
    engine = Engine(models=tmp_path / "models", input_dir=tmp_path, output_dir=tmp_path, device="cpu")
    wf = {"format": "nodegen-workflow", "version": 1,
          "nodes": {"1": {"type": "CheckpointLoader", "inputs": {"ckpt_name": name}}}}
    problems = engine.validate(wf, targets=["1"]).problems
    assert [(p.node_id, p.input, p.code) for p in problems] == [("1", "ckpt_name", "missing_file")]
    return problems[0].message


def test_same_name_in_a_sub_folder_is_suggested(tmp_path):
    (tmp_path / "models" / "checkpoints" / "sd15").mkdir(parents=True)
    (tmp_path / "models" / "checkpoints" / "sd15" / "dreamshaper.safetensors").touch()
    assert "'sd15/dreamshaper.safetensors': use that name" in _problem(tmp_path, "dreamshaper.safetensors")


def test_otherwise_the_models_found_are_listed(tmp_path):
    (tmp_path / "models" / "checkpoints").mkdir(parents=True)
    (tmp_path / "models" / "checkpoints" / "mine.safetensors").touch()
    message = _problem(tmp_path, "theirs.safetensors")
    assert "'mine.safetensors'" in message and "'nodegen-demo-shapes.safetensors'" in message
