"""The image panel's buttons are shown whole at the default window size (the dock was narrower than
its one row of eight buttons, so "Open" showed as "..." and "Copy" as "C...y"), and at 1.5x
scaling's smaller window too."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("size", [(1400, 900), (1200, 680)])
def test_viewer_buttons_are_not_squeezed(window, qtbot, size):
    window.resize(*size)
    window.viewer_dock.raise_()
    qtbot.waitUntil(lambda: window.viewer.isVisible())
    qtbot.wait(20)
    for key, button in window.viewer.buttons.items():
        assert button.width() >= button.sizeHint().width(), (key, button.width(), button.sizeHint().width())
        assert button.geometry().right() <= window.viewer.width(), key
