"""``nodes --category`` with a category no node has is an error that lists the categories."""

from __future__ import annotations

from nodegen.cli import main


def test_unknown_category_is_refused_with_the_categories(capsys):
    assert main(["nodes", "--category", "nosuch"]) == 2
    err = capsys.readouterr().err
    assert "'nosuch'" in err and "sampling" in err


def test_known_category_lists_its_nodes(capsys):
    assert main(["nodes", "--category", "sampling"]) == 0
    assert "KSampler" in capsys.readouterr().out
