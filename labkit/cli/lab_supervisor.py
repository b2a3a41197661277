"""``labkit lab``'s supervisor: the two child processes, the stop signals, the wait.

Theory of operation
-------------------
``labkit lab`` (``lab_cmd.run``) starts up to two children, the broker and JupyterLab,
each with ``_spawn`` in its own session (process group; a new process group on
Windows), so a Ctrl-C in the terminal reaches only this process, which then stops
the children in order (``lab_cmd.run``'s ``finally``): JupyterLab first (it shuts down its kernels and terminals),
then the broker (it closes its logs cleanly). ``_stop_child`` sends SIGTERM, then
SIGKILL after ``STOP_GRACE_S``. SIGINT, SIGTERM and SIGHUP (SIGBREAK on Windows) all
mean "stop everything": ``_install_stop_handlers`` makes each of them set one
``threading.Event`` and nothing else; so does JupyterLab exiting (File > Shut Down).

``_supervise`` is the wait: every ``POLL_S`` it prints the URL once JupyterLab answers
(``/api``), says so once if JupyterLab has not answered after ``LAB_WAIT_S``, warns
once if the broker it started dies, and returns when JupyterLab exits or the event is
set. Only the main thread touches the children; signal handlers just set the event.

``LabError`` (a message that says what to fix) and ``_say`` (a line on stderr) are the
command's two ways to speak; ``lab_jupyter`` and ``lab_cmd`` use them too.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path

from labkit._clock import REAL_CLOCK, Clock

LAB_WAIT_S = 120.0
STOP_GRACE_S = 10.0
POLL_S = 0.25
_IS_WINDOWS = os.name == "nt"


class LabError(Exception):
    """Something the student must fix before the lab can start; the message says what."""


class _Stopped(Exception):
    """A stop signal arrived while starting up."""


# -- supervision ----------------------------------------------------------------


def _supervise(
    args: argparse.Namespace,
    lab: subprocess.Popen,
    broker: subprocess.Popen | None,
    bootstrap: str,
    url: str,
    stop: threading.Event,
    clock: Clock = REAL_CLOCK,
) -> int:
    announced = False
    broker_warned = False
    deadline = clock.monotonic() + LAB_WAIT_S
    while not stop.is_set():
        code = lab.poll()
        if code is not None:
            if not announced:
                raise LabError(
                    f"JupyterLab exited with code {code} before it was ready "
                    "(its messages are above)."
                )
            _say("JupyterLab has stopped")
            return 0 if code in (0, -signal.SIGTERM, -signal.SIGINT) else code
        if not announced and _lab_answers(args.ip, args.lab_port):
            announced = True
            _announce(args, bootstrap, url)
        elif not announced and clock.monotonic() > deadline:
            _say(
                f"JupyterLab has not answered on port {args.lab_port} after "
                f"{LAB_WAIT_S:.0f} s; still waiting (its messages are above)"
            )
            deadline = float("inf")
        if broker is not None and not broker_warned and broker.poll() is not None:
            broker_warned = True
            _say(
                f"WARNING: the broker stopped (exit code {broker.returncode}); notebooks "
                f"cannot reach {bootstrap}. Stop the lab (Ctrl-C) and start it again."
            )
        stop.wait(POLL_S)
    _say(
        "stopping JupyterLab and the broker ..."
        if broker is not None
        else "stopping JupyterLab ..."
    )
    return 0


def _lab_answers(ip: str, port: int) -> bool:
    host = "127.0.0.1" if ip in ("0.0.0.0", "", "*") else ip
    if ":" in host:
        host = f"[{host}]"
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/api", timeout=1.0):
            return True
    except (OSError, urllib.error.URLError, ValueError):
        return False


def _announce(args: argparse.Namespace, bootstrap: str, url: str) -> None:
    lines = [
        "",
        "=" * 72,
        "  labkit lab is ready. Open this URL in your browser:",
        "",
        f"      {url}",
        "",
        f"  Notebooks reach the broker at {bootstrap} (LABKIT_BOOTSTRAP).",
        "  Stop with Ctrl-C: the broker stops too."
        if not args.broker
        else "  Stop with `docker-compose down` (your notebooks stay in ./notebooks).",
        "=" * 72,
        "",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def _spawn(argv: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.Popen:
    if _IS_WINDOWS:
        flags = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        return subprocess.Popen(argv, env=env, cwd=cwd, creationflags=flags)
    return subprocess.Popen(argv, env=env, cwd=cwd, start_new_session=True)


def _stop_child(proc: subprocess.Popen | None, what: str) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        _say(f"{what} did not stop within {STOP_GRACE_S:.0f} s; killing it")
        proc.kill()
        proc.wait()


def _install_stop_handlers(stop: threading.Event) -> dict[int, object]:
    def handler(signum: int, frame: object) -> None:
        stop.set()

    previous: dict[int, object] = {}
    names = ("SIGINT", "SIGTERM", "SIGHUP", "SIGBREAK")
    for sig in (getattr(signal, name) for name in names if hasattr(signal, name)):
        previous[sig] = signal.signal(sig, handler)
    return previous


def _restore_handlers(previous: dict[int, object]) -> None:
    for sig, old in previous.items():
        signal.signal(sig, old)  # type: ignore[arg-type]


def _say(text: str) -> None:
    print(f"labkit lab: {text}", file=sys.stderr, flush=True)
