"""``labkit lab``'s JupyterLab: its command line, environment, settings and start page.

Theory of operation
-------------------
Pure decisions, no processes (``lab_supervisor`` starts and stops JupyterLab).
JupyterLab gets ``LABKIT_BOOTSTRAP`` (the broker's address), the notebooks folder as
its root, token auth (``$JUPYTER_TOKEN`` or a fresh random token, chosen by
``lab_cmd.run``), terminals, and no port retries: a taken port is reported with its fix
rather than silently moved. ``notebooks/README.ipynb``, when present, is the landing
page.

The lab's language (``--language``, else ``LABKIT_LANG``, else Polish: the course's)
picks the landing page (``notebooks/pl/README.ipynb`` for Polish, when present, with a
link to the English series) and JupyterLab's own menus: a settings directory of this
run holds the installation's ``overrides.json`` (the Docker image's) plus the locale of
``@jupyterlab/translation-extension:plugin`` (``pl_PL``, from the language pack
``jupyterlab-language-pack-pl-PL`` of the lab extras). It is a default: a student who
picks another language in Settings > Language keeps it. The kernels need no language:
every notebook of the series names its own in its metadata (``labkit.i18n``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from labkit.cli.lab_supervisor import _IS_WINDOWS, LabError

LANDING_PAGE = "README.ipynb"
COURSE_LANGUAGE = "pl"  # the course is taught in Polish; `--language en` for English
# labkit's language -> JupyterLab's locale (a language pack, except English)
JUPYTERLAB_LOCALES = {"en": "en", "pl": "pl_PL"}
TRANSLATION_PLUGIN = "@jupyterlab/translation-extension:plugin"


def lab_language(chosen: str | None) -> str:
    """``--language``, else ``LABKIT_LANG`` when labkit speaks it, else the course's."""
    from labkit import i18n

    return chosen or i18n.normalize(os.environ.get(i18n.LANG_ENV)) or COURSE_LANGUAGE


def lab_settings(folder: Path, language: str) -> Path:
    """JupyterLab's app settings directory for this run, in ``folder``: the installation's
    own (its ``overrides.json``, e.g. the Docker image's) with the UI's locale added."""
    try:
        from jupyterlab.commands import get_app_dir

        installed = Path(get_app_dir()) / "settings"
    except ImportError:  # reported by _jupyter_argv
        installed = None
    if installed is not None and installed.is_dir():
        shutil.copytree(installed, folder, dirs_exist_ok=True)
    path = folder / "overrides.json"
    overrides = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    overrides.setdefault(TRANSLATION_PLUGIN, {})["locale"] = JUPYTERLAB_LOCALES[language]
    path.write_text(json.dumps(overrides, indent=2) + "\n", encoding="utf-8")
    return folder


def _jupyter_argv(args: argparse.Namespace, notebooks: Path, language: str = "en") -> list[str]:
    try:
        import jupyterlab  # noqa: F401  (only to say what is missing)
    except ImportError:
        raise LabError(
            "JupyterLab is not installed. Install the lab extras: "
            "pip install 'labkit-streaming[lab]' (in a checkout: `make lab` does "
            "it)."
        ) from None
    argv = [
        sys.executable,
        "-m",
        "jupyterlab",
        f"--ServerApp.ip={args.ip}",
        f"--ServerApp.port={args.lab_port}",
        "--ServerApp.port_retries=0",
        f"--ServerApp.root_dir={notebooks}",
        "--ServerApp.terminals_enabled=True",
    ]
    if args.no_browser:
        argv.append("--ServerApp.open_browser=False")
    argv.append(f"--LabApp.default_url={_start_page(notebooks, language)}")
    if not _IS_WINDOWS:
        # A plain interactive shell: Jupyter would start a login shell when its output
        # is not a terminal (Docker, a log file), and /etc/profile resets PATH, hiding
        # the console tools of a virtualenv. Terminals open in the notebooks folder.
        shell = os.environ.get("SHELL") or shutil.which("bash") or "/bin/sh"
        argv.append("--ServerApp.terminado_settings=" + json.dumps({"shell_command": [shell]}))
    if not _IS_WINDOWS and os.geteuid() == 0:
        argv.append("--ServerApp.allow_root=True")  # containers and CI run as root
    return argv


def _lab_env(bootstrap: str, token: str) -> dict[str, str]:
    env = dict(os.environ)
    env["LABKIT_BOOTSTRAP"] = bootstrap
    env["JUPYTER_TOKEN"] = token
    # Terminals and `!labkit ...` cells find the console tools of this installation
    # even when the virtualenv is not activated.
    scripts = str(Path(sys.executable).parent)
    env["PATH"] = scripts + os.pathsep + env.get("PATH", "")
    return env


def _start_page(notebooks: Path, language: str = "en") -> str:
    """The page the lab opens on: the landing notebook of the lab's language when there is
    one (``pl/README.ipynb``), else the English one, else the file browser."""
    for landing in (f"{language}/{LANDING_PAGE}", LANDING_PAGE):
        if (notebooks / landing).is_file():
            return f"/lab/tree/{landing}"
    return "/lab"


def _url_host(ip: str) -> str:
    return "localhost" if ip in ("0.0.0.0", "127.0.0.1", "localhost", "", "*") else ip
