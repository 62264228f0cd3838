"""Node discovery: built-ins, a user nodes folder, broken plugins, duplicates, schema export."""

from __future__ import annotations

import json

from nodegen.kernel.registry import NodeRegistry

PLUGIN = '''
from nodegen.kernel.node import node, Input, Output
from nodegen.kernel import types as T

@node("PluginDouble", category="plugins", inputs=[Input.int("x", 1)], outputs=[Output("y", T.INT)])
def double(ctx, x):
    return 2 * x
'''


def test_builtin_nodes_are_found():
    reg = NodeRegistry().discover(plugins=False, user_dirs=[])
    for name in ["Int", "Float", "String", "Seed", "IntMath", "FloatMath", "StringConcat", "LoadImage",
                 "SaveImage", "PreviewImage", "ImageScale", "ImageBlend", "ImageInvert", "ImageCrop"]:
        assert name in reg, name
    assert reg.errors == []


def test_user_folder_plugin_broken_plugin_and_duplicate(tmp_path):
    (tmp_path / "good.py").write_text(PLUGIN)
    (tmp_path / "broken.py").write_text("raise ImportError('needs a library that is not here')\n")
    (tmp_path / "dup.py").write_text(PLUGIN.replace("def double", "def other"))
    reg = NodeRegistry().discover(plugins=False, user_dirs=[tmp_path])
    assert "PluginDouble" in reg and "Int" in reg
    msgs = [str(e) for e in reg.errors]
    assert any("broken.py" in m and "needs a library" in m for m in msgs)
    dup = [m for m in msgs if "two node types are named 'PluginDouble'" in m]
    assert dup and "dup.py" in dup[0] and "good.py" in dup[0]


def test_entry_point_plugins(monkeypatch):
    import types as pytypes

    from nodegen.kernel import registry as r

    class EP:
        name, value = "fake", "fake_plugin_mod"

        def load(self):
            mod = pytypes.ModuleType("fake_plugin_mod")
            exec(PLUGIN, mod.__dict__)
            return mod

    class BadEP(EP):
        name, value = "bad", "bad_mod"

        def load(self):
            raise RuntimeError("plugin crashed on import")

    monkeypatch.setattr(r.metadata, "entry_points", lambda group: [EP(), BadEP()])
    reg = NodeRegistry().discover(builtin=(), user_dirs=[])
    assert "PluginDouble" in reg
    assert any("plugin crashed" in str(e) for e in reg.errors)


def test_schema_is_json_with_everything_the_gui_needs():
    reg = NodeRegistry().discover(plugins=False, user_dirs=[])
    schema = json.loads(json.dumps(reg.schema()))
    scale = schema["nodes"]["ImageScale"]
    assert scale["category"] and scale["description"] and scale["version"] >= 1
    width = next(i for i in scale["inputs"] if i["name"] == "width")
    assert (width["widget"], width["type"], width["min"], width["default"]) == ("int", "INT", 0, 512)
    method = next(i for i in scale["inputs"] if i["name"] in ("method",))
    assert "lanczos" in method["choices"]
    assert scale["outputs"] == [{"name": "image", "type": "IMAGE"}]
    assert schema["types"]["IMAGE"]["color"].startswith("#")
    assert "INT" in schema["types"]["FLOAT"]["accepts"]


def test_a_run_function_that_does_not_match_its_inputs_is_refused_at_definition():
    import pytest

    from nodegen import Input, node
    from nodegen.kernel.node import NodeContractError

    with pytest.raises(NodeContractError, match=r"'Bad'.*declared input\(s\) b have no parameter"):
        @node("Bad", inputs=[Input.int("a", 1), Input.int("b", 2)])
        def bad(ctx, a):
            return a
    with pytest.raises(NodeContractError, match=r"'Extra'.*parameter\(s\) c .*not declared inputs"):
        @node("Extra", inputs=[Input.int("a", 1)])
        def extra(ctx, a, c):
            return a
    with pytest.raises(NodeContractError, match="run context as its first parameter"):
        @node("NoCtx", inputs=[])
        def no_ctx(*, a=1):
            return a

    @node("Fine", inputs=[Input.int("a", 1)])
    def fine(ctx, a, extra_with_default=3, **more):
        return a
    assert fine.input_names == ("a",)
