"""``nodegen nodes | head``: when the reader leaves, the command stops quietly (exit 141), without a
'BrokenPipeError' message."""

from __future__ import annotations

import io
import sys

from nodegen.cli import EXIT_BROKEN_PIPE, main


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_broken_pipe_stops_quietly(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["nodes"]) == EXIT_BROKEN_PIPE
    assert "BrokenPipe" not in capsys.readouterr().err
