"""``!labkit ...`` and ``!kafka-topics.sh ...`` in a notebook: the console tools on the kernel's PATH.

Theory of operation
-------------------
pip installs the console tools (``labkit``, ``kafka-topics.sh``, ...) into the scripts
folder of the Python that runs the kernel (a virtualenv's ``bin/``, ``Scripts\\`` on
Windows, or the user scheme's ``~/.local/bin``). IPython runs a ``!command`` cell in a shell
that inherits the kernel's environment, so the tools are found only if that folder is on
the kernel's PATH. It is when the virtualenv was activated or ``labkit lab`` started
JupyterLab, but not when ``.venv/bin/jupyter lab`` was run directly, or from an IDE.

``ensure_on_path()`` (run by ``from labkit import nb``) finds the folder that holds this
installation's ``labkit`` script and puts it first on the kernel's PATH if it is not on
it: what activating the virtualenv would have done, for this process and the shells it
starts. ``missing_tools()`` is what ``nb.doctor()`` checks: which of the tools a shell
started with a given PATH cannot find. Both are pure over their arguments, for tests.
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from collections.abc import Mapping, MutableMapping

__all__ = ["TOOLS", "ensure_on_path", "missing_tools", "scripts_dir"]

TOOLS = (
    "labkit",
    "kafka-topics.sh",
    "kafka-console-producer.sh",
    "kafka-console-consumer.sh",
    "kafka-consumer-groups.sh",
    "kafka-configs.sh",
)


def _candidates() -> list[str]:
    places = [os.path.dirname(sys.executable), sysconfig.get_path("scripts")]
    try:
        places.append(sysconfig.get_path("scripts", f"{os.name}_user"))
    except KeyError:  # no user scheme on this platform
        pass
    return [p for p in places if p]


def scripts_dir(candidates: list[str] | None = None) -> str | None:
    """The folder holding this Python's ``labkit`` script, or None when it is not installed."""
    for folder in candidates if candidates is not None else _candidates():
        if shutil.which("labkit", path=folder):
            return folder
    return None


def _on_path(folder: str, path: str) -> bool:
    want = os.path.normcase(os.path.abspath(folder))
    return any(
        os.path.normcase(os.path.abspath(part)) == want for part in path.split(os.pathsep) if part
    )


def ensure_on_path(
    environ: MutableMapping[str, str] | None = None, candidates: list[str] | None = None
) -> bool:
    """Put the scripts folder first on ``environ``'s PATH (default: this process's) if missing.

    ``candidates``: where to look for it (default: this Python's scripts folders). Returns
    True when PATH was changed. Does nothing when the tools are not installed (a source
    checkout on PYTHONPATH): ``nb.doctor()`` reports that.
    """
    env = os.environ if environ is None else environ
    folder = scripts_dir(candidates)
    path = env.get("PATH", "")
    if folder is None or _on_path(folder, path):
        return False
    env["PATH"] = folder + (os.pathsep + path if path else "")
    return True


def missing_tools(environ: Mapping[str, str] | None = None) -> list[str]:
    """The console tools a ``!command`` cell cannot find with ``environ``'s PATH."""
    env = os.environ if environ is None else environ
    path = env.get("PATH", "")
    return [tool for tool in TOOLS if not shutil.which(tool, path=path)]
