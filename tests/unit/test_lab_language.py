"""`labkit lab`'s language: Polish by default (the course's), English on request; it picks
the landing page and JupyterLab's own locale, which goes into the run's settings overrides
next to the installation's (the Docker image's) overrides."""

from __future__ import annotations

import json

from labkit.cli import lab_jupyter


def test_the_lab_is_polish_unless_asked_otherwise(monkeypatch):
    monkeypatch.delenv("LABKIT_LANG", raising=False)
    assert lab_jupyter.lab_language(None) == "pl"
    monkeypatch.setenv("LABKIT_LANG", "en_GB.UTF-8")
    assert lab_jupyter.lab_language(None) == "en"
    assert lab_jupyter.lab_language("pl") == "pl"  # --language wins
    monkeypatch.setenv("LABKIT_LANG", "de")  # not a language of labkit: the course's
    assert lab_jupyter.lab_language(None) == "pl"


def test_the_polish_lab_lands_on_the_polish_landing_page(tmp_path):
    (tmp_path / "README.ipynb").write_text("{}")
    assert lab_jupyter._start_page(tmp_path, "pl") == "/lab/tree/README.ipynb"  # no pl/ yet
    (tmp_path / "pl").mkdir()
    (tmp_path / "pl" / "README.ipynb").write_text("{}")
    assert lab_jupyter._start_page(tmp_path, "pl") == "/lab/tree/pl/README.ipynb"
    assert lab_jupyter._start_page(tmp_path, "en") == "/lab/tree/README.ipynb"
    assert lab_jupyter._start_page(tmp_path / "pl" / "..", "en") == "/lab/tree/README.ipynb"


def test_jupyterlabs_locale_joins_the_installed_overrides(tmp_path, monkeypatch):
    installed = tmp_path / "app" / "settings"
    installed.mkdir(parents=True)
    quiet = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "false"}}
    (installed / "overrides.json").write_text(json.dumps(quiet))
    (installed / "page_config.json").write_text("{}")
    monkeypatch.setenv("JUPYTERLAB_DIR", str(tmp_path / "app"))
    folder = lab_jupyter.lab_settings(tmp_path / "run", "pl")
    overrides = json.loads((folder / "overrides.json").read_text())
    assert overrides == {
        **quiet,
        "@jupyterlab/translation-extension:plugin": {"locale": "pl_PL"},
    }
    assert (folder / "page_config.json").is_file()
    assert (installed / "overrides.json").read_text() == json.dumps(quiet)  # left alone
    english = lab_jupyter.lab_settings(tmp_path / "run-en", "en")
    assert json.loads((english / "overrides.json").read_text())[lab_jupyter.TRANSLATION_PLUGIN] == {
        "locale": "en"
    }


def test_jupyterlab_is_started_with_the_runs_settings(tmp_path, monkeypatch):
    class Args:
        ip, lab_port, no_browser = "127.0.0.1", 8888, True

    (tmp_path / "pl").mkdir()
    (tmp_path / "pl" / "README.ipynb").write_text("{}")
    argv = lab_jupyter._jupyter_argv(Args(), tmp_path, "pl")
    assert "--LabApp.default_url=/lab/tree/pl/README.ipynb" in argv
