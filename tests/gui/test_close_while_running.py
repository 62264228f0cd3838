"""Closing the window while a run goes on asks first (it cancelled the run without a word), says
what will be lost, and the run goes on when the user says no."""

from __future__ import annotations

from tests.gui.test_queue_gallery import _wait_idle, slow_window  # noqa: F401 - the fixture


def test_closing_during_a_run_asks_and_says_what_is_lost(slow_window, qtbot):  # noqa: F811
    window = slow_window
    item = window.scene.items_by_id[window.slow_id]
    assert window.run_graph() and window.run_graph()  # one running, one queued
    qtbot.waitUntil(lambda: item.state == "running" and item.progress is not None, timeout=20000)
    asked = []
    window.ask_stop_runs = lambda question: asked.append(question) or False
    assert not window.close()
    assert window.isVisible() and window.runner.running_job.status == "running"  # it goes on
    question = asked[0]
    assert "running for" in question and "SlowSteps" in question and "step " in question
    assert "not saved yet are lost" in question and "1 queued run(s) will not run" in question
    window.ask_stop_runs = lambda question: asked.append(question) or True
    assert window.close()
    _wait_idle(qtbot, window)
    assert [window.runner.jobs[n].status for n in (1, 2)] == ["cancelled", "cancelled"]


def test_closing_when_nothing_runs_asks_nothing(window):
    window.ask_stop_runs = lambda question: (_ for _ in ()).throw(AssertionError(question))
    assert window.stop_runs_question() is None
    assert window.close()
