"""Sweep specs and job order (no engine runs here)."""

from __future__ import annotations

import random

import pytest

from nodegen.runtime.sweep.plan import Axis, PlanError, chunks, expand_jobs, run_order
from nodegen.runtime.sweep.specs import SpecError, expand, parse_over


@pytest.mark.parametrize("spec, values", [
    ("1..5", ["1", "2", "3", "4", "5"]),
    ("1..10:3", ["1", "4", "7", "10"]),
    ("5..1", ["5", "4", "3", "2", "1"]),
    ("0.5..1.5:0.5", ["0.5", "1.0", "1.5"]),
    ("a,b , c", ["a", "b", "c"]),
    ("euler", ["euler"]),
])
def test_specs(spec, values):
    assert expand(spec) == values


def test_file_and_random_specs(tmp_path, monkeypatch):
    (tmp_path / "prompts.txt").write_text("a cat\n\n# a comment\na dog\n")
    monkeypatch.chdir(tmp_path)
    assert expand("@prompts.txt") == ["a cat", "a dog"]
    seeds = expand("random:4", rng=random.Random(0))
    assert len(seeds) == 4 and all(0 <= int(s) < 2**32 for s in seeds) and len(set(seeds)) == 4
    for bad in ("@missing.txt", "random:x", "random:0", "1..5:0", "1..5:-1"):
        with pytest.raises(SpecError):
            expand(bad)
    with pytest.raises(SpecError):
        parse_over("Sampler.seed")
    assert parse_over("Sampler.seed=1..3") == ("Sampler.seed", "1..3")


def test_the_input_nearest_the_outputs_varies_fastest():
    doc = {"nodes": {"9": {"inputs": {"x": {"from": ["2", "o"]}}}, "2": {"inputs": {}}}}
    assert run_order(doc) == ["2", "9"]
    seed = Axis("Sampler.seed", "9", "seed", (1, 2, 3), 1)
    prompt = Axis("Prompt.text", "2", "text", ("cat", "dog"), 0)
    jobs = expand_jobs([seed, prompt])  # given seed first; the prompt still varies slowest
    assert [(j.values["Prompt.text"], j.values["Sampler.seed"]) for j in jobs] == [
        ("cat", 1), ("cat", 2), ("cat", 3), ("dog", 1), ("dog", 2), ("dog", 3)]
    assert [j.index for j in jobs] == list(range(6))
    assert len({j.folder for j in jobs}) == 6


def test_zip_pairs_the_lists():
    a = Axis("A.x", "1", "x", (1, 2), 0)
    b = Axis("B.y", "2", "y", ("p", "q"), 1)
    assert [j.values for j in expand_jobs([a, b], zipped=True)] == [{"A.x": 1, "B.y": "p"}, {"A.x": 2, "B.y": "q"}]
    with pytest.raises(PlanError, match="equally long"):
        expand_jobs([a, Axis("B.y", "2", "y", ("p",), 1)], zipped=True)
    with pytest.raises(PlanError):
        expand_jobs([])


def test_chunks_keep_runs_of_consecutive_jobs():
    parts = chunks(list(range(64)), 2)
    assert [x for part in parts for x in part] == list(range(64)) and len(parts) == 8


def test_a_grid_of_one_input_is_one_labelled_row(tmp_path):
    from PIL import Image

    from nodegen.runtime.sweep.grid import build_grid

    cells = {}
    for i, colour in enumerate(("red", "blue", "green")):
        path = tmp_path / f"{i}.png"
        Image.new("RGB", (16, 12), colour).save(path)
        cells[(i,)] = path
    cells[(3,)] = None  # a failed job: an outlined empty cell
    grid = build_grid([("Sampler.seed", [0, 1, 2, 3])], cells)
    assert grid.width >= 4 * 16 and 12 < grid.height < 2 * 12 + 40  # one row under the labels
    pixels = grid.load()
    row = [pixels[x, grid.height - 6] for x in range(grid.width)]
    first = [row.index(c) for c in ((255, 0, 0), (0, 0, 255), (0, 128, 0))]
    assert first == sorted(first)  # the cells in the order of the values
    with pytest.raises(ValueError, match="one, two or three"):
        build_grid([("a", [1]), ("b", [1]), ("c", [1]), ("d", [1])], {})
