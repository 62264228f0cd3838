"""Settings > Live previews: the choice reaches the engine at once, persists in the editor's
settings for the next session, and gives way to --preview / NODEGEN_PREVIEW for a session."""

from __future__ import annotations

from nodegen.runtime.engine import Engine


def _menu_titles(window) -> list[str]:
    settings = next(a.menu() for a in window.menuBar().actions() if a.text() == "&Settings")
    sub = next(a.menu() for a in settings.actions() if a.text() == "Live previews")
    return [a.text() for a in sub.actions()]


def test_the_choice_reaches_the_engine_and_persists(make_window, tmp_path, monkeypatch):
    monkeypatch.delenv("NODEGEN_PREVIEW", raising=False)
    w = make_window()
    assert w.engine.preview_method == "auto" and w.actions_by_name["preview_auto"].isChecked()
    assert _menu_titles(w) == list(Engine.preview_methods().values())
    w.actions_by_name["preview_latent2rgb"].trigger()
    assert w.engine.preview_method == "latent2rgb" and w.actions_by_name["preview_latent2rgb"].isChecked()
    assert not w.actions_by_name["preview_auto"].isChecked()

    fresh = Engine(input_dir=tmp_path, output_dir=tmp_path / "out", device="cpu")
    assert fresh.preview_method == "auto"
    w2 = make_window(fresh)  # the next session
    assert fresh.preview_method == "latent2rgb" and fresh.env.preview_source == "settings"
    assert w2.actions_by_name["preview_latent2rgb"].isChecked()


def test_the_command_line_and_the_variable_win_for_their_session(make_window, tmp_path, monkeypatch):
    monkeypatch.delenv("NODEGEN_PREVIEW", raising=False)
    make_window().actions_by_name["preview_none"].trigger()
    chosen = Engine(input_dir=tmp_path, output_dir=tmp_path / "out", device="cpu", preview="taesd")
    w = make_window(chosen)
    assert chosen.preview_method == "taesd" and w.actions_by_name["preview_taesd"].isChecked()
    monkeypatch.setenv("NODEGEN_PREVIEW", "latent2rgb")
    from_env = Engine(input_dir=tmp_path, output_dir=tmp_path / "out", device="cpu")
    make_window(from_env)
    assert from_env.preview_method == "latent2rgb"
    monkeypatch.delenv("NODEGEN_PREVIEW")
    stale = Engine(input_dir=tmp_path, output_dir=tmp_path / "out", device="cpu")
    make_window(stale)
    assert stale.preview_method == "none"  # the saved choice again
