"""Ranking a sweep's pictures with the built-in demo CLIP: a real 8-seed sweep of "a blue star" from
the demo model, ranked inside a graph (LoadSweepImages -> CLIPRankImages) and by ``nodegen rank``;
both put first exactly the pictures the project's shape scorer calls blue stars.

Seeds 15..22 at cfg 3 (measured: the scorer finds blue stars at seeds 18 and 22, CLIP scores 50.5
and 55.9; the other six are stars of other colours scoring 14-22), so the batch holds both hits
and misses and the ranking can fail."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nodegen.cli import main
from nodegen.formats.sweep_results import SweepFolderError, read_sweep_images
from nodegen.runtime.engine import Engine
from nodegen.sweep.driver import SweepOptions, run_sweep
from tools.demo.scorer import score_image

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a blue star"
SEEDS, CFG = "15..22", 3.0


def _sweep_graph() -> dict:
    """graphs/clip_rank.json without its CLIP nodes: one picture per job, saved."""
    doc = json.loads((ROOT / "graphs" / "clip_rank.json").read_text(encoding="utf-8"))
    nodes = doc["nodes"]
    del nodes["8"], nodes["9"]
    nodes["4"]["inputs"]["batch_size"] = 1
    nodes["5"]["inputs"]["cfg"] = CFG
    nodes["7"]["inputs"]["images"] = {"from": ["6", "image"]}
    nodes["7"]["inputs"]["filename_prefix"] = "star"
    return doc


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """(output root, sweep folder, {file: scorer says blue star}) of a real 8-job sweep."""
    root = tmp_path_factory.mktemp("sweeprank")
    graph = root / "stars.json"
    graph.write_text(json.dumps(_sweep_graph()))
    out = root / "out" / "stars"
    report = run_sweep(SweepOptions(str(graph), [f"Sampler.seed={SEEDS}"], out=str(out), threads=1))
    assert (report.done, report.failed) == (8, 0)
    truth = {}
    for e in read_sweep_images(out):
        det = score_image(np.asarray(Image.open(out / e.file).convert("RGB"), dtype=np.float32) / 255.0)
        truth[e.file] = det["color"] == "blue" and det["shape"] == "star"
    return root / "out", out, truth


def _blue_stars_first(hits: list[bool]) -> None:
    assert any(hits) and not all(hits), "the sweep holds both blue stars and misses (else ranking proves nothing)"
    first_miss = hits.index(False)
    assert not any(hits[first_miss:]), hits


def test_reader_lists_the_sweep_pictures_with_their_values(sweep):
    _, out, _ = sweep
    entries = read_sweep_images(out)
    assert [e.values for e in entries] == [{"Sampler.seed": s} for s in range(15, 23)]
    assert all((out / e.file).is_file() and e.file.endswith(".png") for e in entries)
    assert entries[0].label() == "Sampler.seed=15"


def test_rank_node_picks_the_blue_stars_of_a_sweep(sweep):
    root, out, truth = sweep
    doc = {"format": "nodegen-workflow", "version": 1, "nodes": {
        "1": {"type": "LoadSweepImages", "inputs": {"folder": "stars"}},
        "2": {"type": "CLIPModelLoader", "inputs": {"clip_name": "nodegen-demo-clip.safetensors"}},
        "3": {"type": "CLIPRankImages", "inputs": {
            "clip_model": {"from": ["2", "clip_model"]}, "images": {"from": ["1", "images"]},
            "labels": {"from": ["1", "labels"]}, "text": PROMPT, "crop": "center", "k": 0}}}}
    result = Engine(output_dir=root, device="cpu").run(doc, targets=["1", "3"])
    assert result.ok, result.failures
    assert result.outputs["1"]["count"] == 8
    ranked = result.outputs["3"]["labels"].splitlines()
    by_label = {e.label(): e.file for e in read_sweep_images(out)}
    _blue_stars_first([truth[by_label[label]] for label in ranked])
    assert result.outputs["3"]["images"].shape == (8, 64, 64, 3)
    assert result.outputs["3"]["summary"].startswith(f"1. {ranked[0]}: ")


def test_rank_command_writes_and_prints_the_ranking(sweep, capsys):
    _, out, truth = sweep
    assert main(["rank", str(out), "--prompt", PROMPT, "--top", "3"]) == 0
    lines = [json.loads(x) for x in (out / "ranking.jsonl").read_text(encoding="utf-8").splitlines()]
    head, rows = lines[0], lines[1:]
    assert head["event"] == "ranking" and head["prompt"] == PROMPT and head["images"] == 8
    assert [r["rank"] for r in rows] == list(range(1, 9))
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    _blue_stars_first([truth[r["file"]] for r in rows])
    assert {r["values"]["Sampler.seed"] for r in rows} == set(range(15, 23))
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 + 3 and rows[0]["file"] in printed[1] and f"Sampler.seed={rows[0]['values']['Sampler.seed']}" in printed[1]


def test_rank_command_refuses_a_folder_without_a_sweep(tmp_path, capsys):
    assert main(["rank", str(tmp_path), "--prompt", PROMPT]) == 2
    assert "no sweep.jsonl" in capsys.readouterr().err


def _manifest(folder: Path, records: list) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)
    (folder / "sweep.jsonl").write_text(text, encoding="utf-8")


def test_reader_takes_each_jobs_last_record_and_skips_failures(tmp_path):
    _manifest(tmp_path, [
        {"event": "sweep", "graph": "g.json", "over": [], "jobs": 3},
        {"job": 0, "values": {"S.seed": 1}, "files": ["0-a/x.png"], "status": "failed"},
        {"job": 1, "values": {"S.seed": 2}, "files": ["1-b/x.png", "1-b/notes.txt"], "status": "done"},
        {"job": 2, "values": {"S.seed": 3}, "files": ["2-c/x.png"], "status": "failed"},
        {"job": 0, "values": {"S.seed": 1}, "files": ["0-a/x.png"], "status": "done"},
        '{"job": 2, "values": {"S.se',  # cut by a crash
    ])
    assert [(e.job, e.file) for e in read_sweep_images(tmp_path)] == [(0, "0-a/x.png"), (1, "1-b/x.png")]


def test_reader_refuses_files_outside_the_folder(tmp_path):
    _manifest(tmp_path / "s", [{"job": 0, "values": {}, "files": ["../../etc/x.png"], "status": "done"}])
    with pytest.raises(SweepFolderError, match="outside the sweep folder"):
        read_sweep_images(tmp_path / "s")


def test_load_node_names_itself_and_the_input(tmp_path):
    from nodegen.nodes.sweep_images import load_sweep_images

    engine = Engine(output_dir=tmp_path, device="cpu")
    doc = {"format": "nodegen-workflow", "version": 1, "nodes": {
        "1": {"type": "LoadSweepImages", "inputs": {"folder": "nowhere"}}}}
    result = engine.run(doc, targets=["1"])
    assert not result.ok and "LoadSweepImages: input 'folder': no sweep folder 'nowhere'" in str(result.failures[0])
    _manifest(tmp_path / "mixed", [{"job": 0, "values": {}, "files": ["a.png"], "status": "done"},
                                   {"job": 1, "values": {}, "files": ["b.png"], "status": "done"}])
    Image.new("RGB", (8, 8)).save(tmp_path / "mixed" / "a.png")
    Image.new("RGB", (8, 4)).save(tmp_path / "mixed" / "b.png")
    result = engine.run({**doc, "nodes": {"1": {"type": "LoadSweepImages", "inputs": {"folder": "mixed"}}}},
                        targets=["1"])
    assert not result.ok and "a batch needs one size" in str(result.failures[0])
    assert load_sweep_images.type == "LoadSweepImages"
