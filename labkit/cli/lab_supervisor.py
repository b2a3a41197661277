"""``labkit lab``'s supervisor: the child processes, the stop signals, the wait.

Theory of operation
-------------------
``labkit lab`` (``lab_cmd.run``) starts its children, the broker (or, with
``--brokers N``, ZooKeeper and N brokers: ``lab_cluster``) and JupyterLab, each with
``_spawn`` in its own session (process group; a new process group on Windows), so a
Ctrl-C in the terminal reaches only this process, which then stops the children in order
(``lab_cmd.run``'s ``finally``): JupyterLab first (it shuts down its kernels and
terminals), then the broker(s) (they close their logs cleanly), ZooKeeper last.
``_stop_child`` sends SIGTERM, then SIGKILL after ``STOP_GRACE_S``. SIGINT, SIGTERM and
SIGHUP (SIGBREAK on Windows) all mean "stop everything": ``_install_stop_handlers`` makes
each of them set one ``threading.Event`` and nothing else; so does JupyterLab exiting
(File > Shut Down). A ``labkit lab`` that is killed (kill -9), which runs none of this,
still takes its children with it on Linux: ``_spawn`` starts each through
``labkit.launch.lifeline.spawn`` (the kernel's parent-death signal).

``_supervise`` is the wait: every ``POLL_S`` it prints the URL once JupyterLab answers
(``/api``), says so once if JupyterLab has not answered after ``LAB_WAIT_S``, warns
once for each service it started (a broker, ZooKeeper) that dies, and returns when JupyterLab exits or the event is
set. Only the main thread touches the children (lifeline's spawner thread only forks
them); signal handlers just set the event.

``LabError`` (a message that says what to fix) and ``_say`` (a line on stderr) are the
command's two ways to speak; ``lab_jupyter`` and ``lab_cmd`` use them too.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from labkit._clock import REAL_CLOCK, Clock
from labkit.launch.lifeline import spawn

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
    services: list[tuple[str, subprocess.Popen]],
    bootstrap: str,
    url: str,
    stop: threading.Event,
    clock: Clock = REAL_CLOCK,
) -> int:
    announced = False
    warned: set[str] = set()
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
        for name, proc in services:
            if name not in warned and proc.poll() is not None:
                warned.add(name)
                _say(_stopped_warning(name, proc.returncode, bootstrap, len(services)))
        stop.wait(POLL_S)
    _say(
        f"stopping JupyterLab and {_what(services)} ..." if services else "stopping JupyterLab ..."
    )
    return 0


def _what(services: list[tuple[str, subprocess.Popen]]) -> str:
    names = [name for name, _proc in services]
    return "the broker" if names == ["the broker"] else ", ".join(names)


def _stopped_warning(name: str, code: int | None, bootstrap: str, count: int) -> str:
    if count == 1:
        return (
            f"WARNING: {name} stopped (exit code {code}); notebooks cannot reach "
            f"{bootstrap}. Stop the lab (Ctrl-C) and start it again."
        )
    # The cluster lab: losing one broker is what replication is for; ZooKeeper is not.
    if name == "ZooKeeper":
        return (
            f"WARNING: ZooKeeper stopped (exit code {code}): the brokers can no longer "
            "elect leaders or change an ISR, and a broker that fails stays failed. Stop "
            "the lab (Ctrl-C) and start it again."
        )
    return (
        f"WARNING: {name} stopped (exit code {code}). The other brokers go on (a topic "
        "with replication factor 3 keeps serving); to get it back, stop the lab (Ctrl-C) "
        "and start it again."
    )


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
        f"  Notebooks reach {_brokers_at(args)} {bootstrap} (LABKIT_BOOTSTRAP).",
        _how_to_stop(args),
        "=" * 72,
        "",
    ]
    print("\n".join(lines), file=sys.stderr, flush=True)


def _brokers_at(args: argparse.Namespace) -> str:
    brokers = getattr(args, "brokers", None)
    return f"the {brokers} brokers at" if brokers else "the broker at"


def _how_to_stop(args: argparse.Namespace) -> str:
    if args.broker:
        return "  Stop with `docker-compose down` (your notebooks stay in ./notebooks)."
    if getattr(args, "brokers", None):
        return "  Stop with Ctrl-C: the brokers and ZooKeeper stop too."
    return "  Stop with Ctrl-C: the broker stops too."


def _spawn(
    argv: list[str], env: dict[str, str], cwd: Path | None = None, **popen_kwargs: Any
) -> subprocess.Popen:
    # No owner: this supervisor stops its children itself (SIGTERM first); spawn adds
    # only the kill when `labkit lab` itself is killed (kill -9, a closed CI job).
    if _IS_WINDOWS:
        flags = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        return spawn(None, argv, env=env, cwd=cwd, creationflags=flags, **popen_kwargs)
    return spawn(None, argv, env=env, cwd=cwd, start_new_session=True, **popen_kwargs)


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


def _check_port_free(host: str, port: int, hint: str) -> None:
    bind_host = "0.0.0.0" if host in ("", "*") else host
    with socket.socket(socket.AF_INET6 if ":" in bind_host else socket.AF_INET) as sock:
        if not _IS_WINDOWS:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((bind_host, port))
        except OSError:
            raise LabError(hint) from None


def _say(text: str) -> None:
    print(f"labkit lab: {text}", file=sys.stderr, flush=True)
