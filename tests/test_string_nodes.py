"""ComfyUI's core string nodes (comfy_extras/nodes_string.py) and PreviewAny (nodes_preview_any.py):
each against ComfyUI's rule, transcribed here with its edge cases; a bad pattern is an error naming
the node and the input; a ComfyUI API document using them imports, validates and runs."""

from __future__ import annotations

import json
import re

import pytest

from nodegen.formats import open_any
from nodegen.formats.comfy import export_api, import_comfy
from nodegen.kernel.registry import default_registry
from nodegen.runtime.engine import Engine
from tests.support.nodes import run

FLAGS = {"case_insensitive": True, "multiline": False, "dotall": False}


def one(type_name: str, **inputs):
    (value,) = run(type_name, **inputs).values()
    return value


# ComfyUI's RegexExtract.execute, transcribed (its try/except re.error left out: we refuse bad patterns)
def comfy_extract(string, regex_pattern, mode, case_insensitive, multiline, dotall, group_index):
    flags = (re.IGNORECASE if case_insensitive else 0) | (re.MULTILINE if multiline else 0) | (
        re.DOTALL if dotall else 0)
    if mode == "First Match":
        match = re.search(regex_pattern, string, flags)
        return match.group(0) if match else ""
    if mode == "All Matches":
        matches = re.findall(regex_pattern, string, flags)
        if not matches:
            return ""
        return "\n".join([m[0] for m in matches] if isinstance(matches[0], tuple) else matches)
    if mode == "First Group":
        match = re.search(regex_pattern, string, flags)
        return match.group(group_index) if match and len(match.groups()) >= group_index else ""
    results = []
    for match in re.finditer(regex_pattern, string, flags):
        if match.groups() and len(match.groups()) >= group_index:
            results.append(match.group(group_index))
    return "\n".join(results)


def test_substring_is_python_slicing():
    s = "Hello, world"
    for start, end in [(0, 5), (7, 100), (-5, -1), (-100, 3), (5, 2), (0, 0), (3, -3)]:
        assert one("StringSubstring", string=s, start=start, end=end) == s[start:end]
    assert one("StringSubstring", string="", start=0, end=4) == ""
    spec = {i.name: i.default for i in default_registry()["StringSubstring"].inputs}
    assert spec == {"string": "", "start": 0, "end": 0}


def test_length_case_and_trim():
    assert one("StringLength", string="") == 0
    assert one("StringLength", string="héllo\n") == 6
    s = "hello wORLD's thing"
    assert one("CaseConverter", string=s, mode="UPPERCASE") == "HELLO WORLD'S THING"
    assert one("CaseConverter", string=s, mode="lowercase") == "hello world's thing"
    assert one("CaseConverter", string=s, mode="Capitalize") == "Hello world's thing"
    assert one("CaseConverter", string=s, mode="Title Case") == "Hello World'S Thing"  # str.title, as ComfyUI
    t = " \t a b \n"
    assert [one("StringTrim", string=t, mode=m) for m in ("Both", "Left", "Right")] == ["a b", "a b \n", " \t a b"]
    reg = default_registry()
    assert reg["CaseConverter"].input("mode").choices == ("UPPERCASE", "lowercase", "Capitalize", "Title Case")
    assert reg["StringTrim"].input("mode").default == "Both"


def test_contains_and_compare_with_case_flags():
    assert one("StringContains", string="A Cat", substring="cat", case_sensitive=True) is False
    assert one("StringContains", string="A Cat", substring="cat", case_sensitive=False) is True
    assert one("StringContains", string="abc", substring="", case_sensitive=True) is True
    assert one("StringContains", string="", substring="a", case_sensitive=False) is False
    cmp = {"string_a": "Photo of a dog", "case_sensitive": True}
    assert one("StringCompare", **cmp, string_b="Photo", mode="Starts With") is True
    assert one("StringCompare", **cmp, string_b="photo", mode="Starts With") is False
    assert one("StringCompare", **{**cmp, "case_sensitive": False}, string_b="photo", mode="Starts With") is True
    assert one("StringCompare", **cmp, string_b="DOG", mode="Ends With") is False
    assert one("StringCompare", **{**cmp, "case_sensitive": False}, string_b="DOG", mode="Ends With") is True
    assert one("StringCompare", **cmp, string_b="Photo of a dog", mode="Equal") is True
    assert one("StringCompare", string_a="", string_b="", mode="Equal", case_sensitive=True) is True
    assert default_registry()["StringCompare"].input("mode").default == "Starts With"
    assert default_registry()["StringContains"].input("case_sensitive").default is True


def test_regex_match_flags():
    assert one("RegexMatch", string="Hello", regex_pattern="hello", **FLAGS) is True  # insensitive by default
    assert one("RegexMatch", string="Hello", regex_pattern="hello", **{**FLAGS, "case_insensitive": False}) is False
    assert one("RegexMatch", string="a\nb", regex_pattern="^b$", **FLAGS) is False
    assert one("RegexMatch", string="a\nb", regex_pattern="^b$", **{**FLAGS, "multiline": True}) is True
    assert one("RegexMatch", string="a\nb", regex_pattern="a.b", **FLAGS) is False
    assert one("RegexMatch", string="a\nb", regex_pattern="a.b", **{**FLAGS, "dotall": True}) is True
    assert one("RegexMatch", string="", regex_pattern="", **FLAGS) is True


@pytest.mark.parametrize("pattern", [r"\d+", r"(\d)(\w)?", r"(\d)", r"([a-z])=(\d+)?", r"x(y)?", r"(?P<k>\w+):"])
@pytest.mark.parametrize("mode", ["First Match", "All Matches", "First Group", "All Groups"])
def test_regex_extract_is_comfyuis(pattern, mode):
    text = "a=1 B=22 c= x 7q xy key: Val:\nd=4"
    for group_index in (0, 1, 2, 3):
        for flags in (FLAGS, {**FLAGS, "case_insensitive": False}):
            inputs = dict(string=text, regex_pattern=pattern, mode=mode, group_index=group_index, **flags)
            try:
                want = comfy_extract(**inputs)
            except TypeError:  # ComfyUI fails joining a group that took no part (None); we give ""
                assert isinstance(one("RegexExtract", **inputs), str)
                continue
            # ComfyUI's First Group answers None for a group that took no part; we answer ""
            assert one("RegexExtract", **inputs) == ("" if want is None else want), inputs


def test_regex_extract_edge_cases():
    ex = dict(FLAGS, group_index=1)
    assert one("RegexExtract", string="abc", regex_pattern="z", mode="First Match", **ex) == ""
    assert one("RegexExtract", string="abc", regex_pattern="b", mode="First Group", **ex) == ""  # no groups
    assert one("RegexExtract", string="abc", regex_pattern="b", mode="All Groups", **ex) == ""
    assert one("RegexExtract", string="ab", regex_pattern="(x)?b", mode="First Group", **ex) == ""  # unmatched group
    assert one("RegexExtract", string="b1 b2", regex_pattern="(x)?b(\\d)", mode="All Groups", **ex) == "\n"
    assert one("RegexExtract", string="k=1 j=2", regex_pattern="(\\w)=(\\d)", mode="All Matches", **ex) == "k\nj"
    assert one("RegexExtract", string="k=1 j=2", regex_pattern="(\\w)=(\\d)", mode="All Groups",
               **{**ex, "group_index": 2}) == "1\n2"
    assert one("RegexExtract", string="K=1", regex_pattern="k", mode="First Match",
               **{**ex, "case_insensitive": False}) == ""
    spec = default_registry()["RegexExtract"]
    assert spec.input_names == ("string", "regex_pattern", "mode", "case_insensitive", "multiline", "dotall",
                                "group_index")
    gi = spec.input("group_index")
    assert (gi.default, gi.min, gi.max) == (1, 0, 100)


def test_regex_replace():
    assert one("RegexReplace", string="a1b22c", regex_pattern=r"\d+", replace="#", **FLAGS, count=0) == "a#b#c"
    assert one("RegexReplace", string="a1b22c", regex_pattern=r"\d+", replace="#", **FLAGS, count=1) == "a#b22c"
    assert one("RegexReplace", string="Cat cat", regex_pattern="cat", replace="dog") == "dog dog"  # optional defaults
    assert one("RegexReplace", string="Cat cat", regex_pattern="cat", replace="dog",
               case_insensitive=False) == "Cat dog"
    assert one("RegexReplace", string="x=1", regex_pattern=r"(\w)=(\d)", replace=r"\2=\1") == "1=x"
    assert one("RegexReplace", string="", regex_pattern="^", replace="start") == "start"
    assert [i.optional for i in default_registry()["RegexReplace"].inputs] == [False] * 3 + [True] * 4


@pytest.mark.parametrize("type_name", ["RegexMatch", "RegexExtract", "RegexReplace"])
def test_a_bad_pattern_names_the_node_and_input(type_name):
    inputs = {"string": "abc", "regex_pattern": "(unclosed", "replace": "", "mode": "First Match",
              "group_index": 1, **FLAGS}
    nd = default_registry()[type_name]
    with pytest.raises(ValueError, match=rf"{type_name}: input 'regex_pattern' is not a valid regular expression"):
        run(type_name, **{k: v for k, v in inputs.items() if k in nd.input_names})


@pytest.mark.parametrize("type_name, extra", [("RegexMatch", {}),
                                               ("RegexExtract", {"mode": "All Groups", "group_index": 1}),
                                               ("RegexReplace", {"replace": "x"})])
def test_a_pattern_that_backtracks_without_end_stops_with_an_error(type_name, extra, monkeypatch):
    """(a|aa)+$ on "aaa...b" takes exponential time in a backtracking engine: it is stopped."""
    import time

    from nodegen.nodes import string_ops

    monkeypatch.setattr(string_ops, "REGEX_SECONDS", 0.2)
    flags = {"case_insensitive": False, "multiline": False, "dotall": False}
    t = time.perf_counter()
    with pytest.raises(ValueError, match=f"{type_name}: input 'regex_pattern' .* ran longer than 0.2 s"):
        run(type_name, string="a" * 60 + "b", regex_pattern="(a|aa)+$", **flags, **extra)
    assert time.perf_counter() - t < 5


def test_a_bad_replacement_names_the_input():
    with pytest.raises(ValueError, match=r"RegexReplace: input 'replace'"):
        run("RegexReplace", string="ab", regex_pattern="(a)", replace=r"\3")


def test_preview_any_shows_values_as_comfyui_does():
    class Ctx:
        def __init__(self):
            self.data = {}

        def ui(self, **data):
            self.data.update(data)

    cases = [("text", "text"), (3, "3"), (2.5, "2.5"), (True, "True"), (None, "None"),
             ({"a": [1, 2]}, '{\n    "a": [\n        1,\n        2\n    ]\n}'), ({1, 2}, "{1, 2}")]
    for value, want in cases:
        ctx = Ctx()
        assert run("PreviewAny", ctx, source=value) == {"text": want}
        assert ctx.data == {"text": [want]}
    assert default_registry()["PreviewAny"].output


API = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "model.safetensors"}},
    "2": {"class_type": "StringTrim", "inputs": {"string": "  A Photo Of A CAT  ", "mode": "Both"}},
    "3": {"class_type": "CaseConverter", "inputs": {"string": ["2", 0], "mode": "lowercase"}},
    "4": {"class_type": "RegexReplace", "inputs": {"string": ["3", 0], "regex_pattern": "cat", "replace": "dog",
                                                   "case_insensitive": True, "multiline": False, "dotall": False,
                                                   "count": 0}},
    "5": {"class_type": "StringSubstring", "inputs": {"string": ["4", 0], "start": 0, "end": -4}},
    "6": {"class_type": "RegexExtract", "inputs": {"string": ["4", 0], "regex_pattern": r"of a (\w+)",
                                                   "mode": "First Group", "case_insensitive": True,
                                                   "multiline": False, "dotall": False, "group_index": 1}},
    "7": {"class_type": "StringContains", "inputs": {"string": ["4", 0], "substring": "DOG", "case_sensitive": False}},
    "8": {"class_type": "PreviewAny", "inputs": {"source": ["7", 0]}},
    "9": {"class_type": "CLIPTextEncode", "inputs": {"text": ["4", 0], "clip": ["1", 1]}},
    "10": {"class_type": "StringLength", "inputs": {"string": ["6", 0]}},
    "11": {"class_type": "StringCompare", "inputs": {"string_a": ["5", 0], "string_b": "A PHOTO",
                                                     "mode": "Starts With", "case_sensitive": False}},
    "12": {"class_type": "RegexMatch", "inputs": {"string": ["6", 0], "regex_pattern": "^d", "case_insensitive": True,
                                                  "multiline": False, "dotall": False}},
}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    (root / "checkpoints").mkdir()
    (root / "checkpoints" / "model.safetensors").touch()
    return Engine(models=root, input_dir=tmp_path_factory.mktemp("input"), device="cpu")


def test_api_workflow_imports_validates_and_runs(engine, tmp_path):
    doc, notes = import_comfy(API)
    assert notes == []
    assert doc["nodes"]["9"]["inputs"]["text"] == {"from": ["4", "text"]}
    assert export_api(doc) == API
    path = tmp_path / "strings.json"
    path.write_text(json.dumps(API))
    wf = open_any(path)
    assert engine.validate(wf).problems == []
    r = engine.run(wf, targets=["4", "5", "6", "8", "10", "11", "12"])
    assert r.failures == []
    assert r.output("4", "text") == "a photo of a dog"
    assert r.output("5", "text") == "a photo of a"
    assert r.output("6", "text") == "dog"
    assert r.output("10", "length") == 3
    assert r.output("11", "result") is True and r.output("12", "matches") is True
    assert r.ui["8"] == {"text": ["True"]}


def test_a_bad_literal_pattern_fails_validation_naming_node_and_input(engine):
    api = {"1": {"class_type": "RegexMatch", "inputs": {"string": "a", "regex_pattern": "[a-", **FLAGS}},
           "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}}
    doc, _ = import_comfy(api)
    (p,) = engine.validate(doc).problems
    assert (p.node_id, p.input) == ("1", "regex_pattern") and "not a valid regular expression" in p.message


def test_editor_format_widgets_land_in_place():
    nodes = [{"id": 1, "type": "RegexExtract", "mode": 0,
              "widgets_values": ["a1 b2", r"(\w)(\d)", "All Groups", False, True, False, 2]},
             {"id": 2, "type": "StringCompare", "mode": 0, "widgets_values": ["ab", "A", "Starts With", False]},
             {"id": 3, "type": "PreviewAny", "mode": 0, "widgets_values": [None, None, False],  # its preview widgets
              "inputs": [{"name": "source", "type": "*", "link": 1}]},
             {"id": 4, "type": "PreviewAny", "mode": 0, "widgets_values": ["old text"],
              "inputs": [{"name": "source", "type": "*", "link": 2}]}]
    ui = {"last_node_id": 4, "last_link_id": 2, "nodes": nodes, "groups": [], "version": 0.4,
          "links": [[1, 1, 0, 3, 0, "STRING"], [2, 2, 0, 4, 0, "BOOLEAN"]]}
    doc, notes = import_comfy(ui)
    assert notes == []
    n = doc["nodes"]
    assert n["1"]["inputs"] == {"string": "a1 b2", "regex_pattern": r"(\w)(\d)", "mode": "All Groups",
                                "case_insensitive": False, "multiline": True, "dotall": False, "group_index": 2}
    assert n["2"]["inputs"] == {"string_a": "ab", "string_b": "A", "mode": "Starts With", "case_sensitive": False}
    assert n["3"]["inputs"] == {"source": {"from": ["1", "text"]}}
    assert n["4"]["inputs"] == {"source": {"from": ["2", "result"]}}
