"""The layers import only downward and nothing imports in a circle (docs/ARCHITECTURE.md).

Imports are read with the standard library's ``ast`` (every import statement, also those inside
functions, and every ``lazy_import("...")``), so a lazy import cannot hide an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]

#: layer -> the module prefixes it holds, lowest first. A module may import its own layer and below.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("kernel", ("nodegen.kernel", "nodegen._source_tree")),
    ("library", ("nodegen.compat", "nodegen.image", "nodegen.models", "nodegen.diffusion",
                 "nodegen.controlnet", "nodegen.upscale", "nodegen.style", "nodegen.preprocess",
                 "nodegen.clip", "nodegen.adapters", "nodegen.assets")),
    ("formats", ("nodegen.formats", "nodegen.sharing")),
    ("nodes", ("nodegen.nodes",)),
    ("runtime", ("nodegen.runtime",)),
    ("gui", ("nodegen.gui",)),
    ("apps", ("nodegen.cli", "nodegen.server", "nodegen.sweep", "nodegen.client")),
    ("package", ("nodegen",)),
]
#: Exceptions to "own layer and below", each with its reason.
ALLOWED_SIDEWAYS = {
    # the runtime finds the built-in nodes through the registry (an entry point), never by import;
    # nodes and runtime are siblings: neither imports the other.
}
#: The client is used by scripts on machines without the engine: it imports no torch and no layer.
CLIENT_MAY_IMPORT: tuple[str, ...] = ()


def _folders() -> dict[str, Path]:
    return {"nodegen": ROOT / "nodegen", "nodegen.nodes": ROOT / "nodes", "nodegen.gui": ROOT / "gui"}


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for prefix, folder in _folders().items():
        for path in folder.rglob("*.py"):
            rel = path.relative_to(folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([prefix, *parts])] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{a.name}" for a in node.names]
        elif _is_lazy_import(node):
            targets = [node.args[0].value]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def _is_lazy_import(node: ast.AST) -> bool:
    """``lazy_import("a.b")`` (nodegen.kernel.lazy): an import that happens on first use."""
    return (isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "lazy_import"
            and len(node.args) == 1 and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str))


def _runtime_nodes(tree: ast.AST):
    """Every node except those under ``if TYPE_CHECKING:`` (imports for type hints only, which
    never run and so are no dependency)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def layer_of(module: str) -> int:
    best, best_len = -1, -1
    for i, (_, prefixes) in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    assert best >= 0, f"{module} is in no layer: add it to LAYERS in tests/test_architecture.py"
    return best


@pytest.fixture(scope="module")
def graph() -> nx.DiGraph:
    mods = modules()
    g = nx.DiGraph()
    g.add_nodes_from(mods)
    for name, path in mods.items():
        for target in imports_of(name, path, set(mods)):
            g.add_edge(name, target)
    return g


def _is_package_parent(a: str, b: str) -> bool:
    """Importing ``a.b.c`` runs ``a/__init__`` and ``a/b/__init__``: edges to one's own parents are
    implicit and never a layering problem."""
    return a.startswith(b + ".")


def test_every_module_is_in_a_layer(graph):
    for m in graph.nodes:
        layer_of(m)


def test_no_upward_imports(graph):
    bad = []
    for a, b in graph.edges:
        if _is_package_parent(a, b) or (a, b) in ALLOWED_SIDEWAYS:
            continue
        la, lb = layer_of(a), layer_of(b)
        if lb > la or (LAYERS[la][0], LAYERS[lb][0]) in {("nodes", "runtime"), ("runtime", "nodes")}:
            bad.append(f"{a} ({LAYERS[la][0]}) imports {b} ({LAYERS[lb][0]})")
    assert not bad, "upward imports:\n" + "\n".join(sorted(bad))


def test_no_import_cycles(graph):
    g = graph.copy()
    g.remove_edges_from([(a, b) for a, b in graph.edges if _is_package_parent(a, b)])
    cycles = [c for c in nx.simple_cycles(g, length_bound=12)]
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c + [c[0]]) for c in cycles[:20])


def test_the_kernel_imports_nothing_else_of_nodegen(graph):
    bad = [f"{a} imports {b}" for a, b in graph.edges
           if layer_of(a) == 0 and layer_of(b) != 0 and not _is_package_parent(a, b)]
    assert not bad, "\n".join(bad)


def test_the_client_imports_no_layer(graph):
    bad = [b for a, b in graph.edges if a == "nodegen.client" and b not in CLIENT_MAY_IMPORT]
    assert not bad, f"nodegen.client imports {bad}"


def test_a_lazy_import_counts_as_an_import(tmp_path):
    path = tmp_path / "probe.py"
    path.write_text('from nodegen.kernel.lazy import lazy_import\n\nCLI = lazy_import("nodegen.cli.common")\n')
    known = {"nodegen.kernel.lazy", "nodegen.cli", "nodegen.cli.common"}
    assert imports_of("nodegen.image.probe", path, known) == {"nodegen.kernel.lazy", "nodegen.cli.common"}
