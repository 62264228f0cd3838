"""Write the node list (one line per node type, by category) into README.md between the
``<!-- nodes:start -->`` and ``<!-- nodes:end -->`` markers. ``--check`` only compares."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
START, END = "<!-- nodes:start -->", "<!-- nodes:end -->"


def node_list_markdown() -> str:
    from nodegen.kernel.registry import NodeRegistry

    reg = NodeRegistry().discover(plugins=False, user_dirs=[])
    by_cat: dict[str, list] = {}
    for nd in reg:
        by_cat.setdefault(nd.category, []).append(nd)
    lines = []
    for cat in sorted(by_cat):
        lines.append(f"**{cat}**")
        lines.append("")
        for nd in sorted(by_cat[cat], key=lambda n: n.type):
            lines.append(f"- `{nd.type}`: {nd.description}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def render(readme: str) -> str:
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{node_list_markdown()}{END}{tail}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    path = ROOT / "README.md"
    text = path.read_text(encoding="utf-8")
    new = render(text)
    if args.check:
        return 0 if new == text else 1
    path.write_text(new, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
