"""Children that die with the process that started them: ``spawn``, the one way
labkit.launch (a labkit broker, ZooKeeper), labkit.testing (Apache Kafka's JVMs),
labkit.ecosystem (a Kafka Connect worker) and ``labkit lab`` (its broker(s), ZooKeeper and
JupyterLab) start a child.

Theory of operation
-------------------
A parent goes in one of two ways, and each has its own net:

- it exits (a script ends, pytest finishes, a kernel restarts) or drops the object that
  owns the child: ``weakref.finalize(owner, ...)`` kills the child (finalizers also run
  at the interpreter's exit). A caller that stops its children itself, more gently than
  a kill (``labkit lab``'s supervisor, the Connect worker's ``stop_all`` at exit), passes
  no owner;
- it is killed (kill -9, the OOM killer, a CI time-out): no Python code runs then, so the
  kernel does it. Between fork and exec the child asks for SIGKILL when its parent dies
  (Linux's ``prctl(PR_SET_PDEATHSIG)``; exec keeps it), then checks that the parent did
  not die before it asked.

Linux's "parent" is the *thread* that forked the child: the signal comes when that
thread ends, even while the process lives on (nb.cluster() starts its brokers from a
thread pool whose threads end once they are up). So every child is forked by one daemon
thread, ``labkit-spawner``, which lives as long as the process; callers wait for it.
Elsewhere than Linux only the first net holds.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
import weakref
from concurrent.futures import Future
from typing import Any

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# loaded here, not in the child: dlopen between fork and exec may deadlock
_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None

_requests: queue.SimpleQueue[tuple[list[str], dict[str, Any], Future]] = queue.SimpleQueue()
_spawner: threading.Thread | None = None
_spawner_lock = threading.Lock()


def spawn(owner: object | None, argv: list[str], **popen_kwargs: Any) -> subprocess.Popen:
    """``subprocess.Popen(argv, **popen_kwargs)`` for a child that dies with this process,
    and when ``owner`` is collected unless it is None (see the module docstring)."""
    if _LIBC is None:
        proc = subprocess.Popen(argv, **popen_kwargs)
    else:
        done: Future = Future()
        _requests.put((argv, popen_kwargs, done))
        _start_spawner()
        proc = done.result()
    if owner is not None:
        weakref.finalize(owner, _kill_if_running, proc)
    return proc


def _kill_if_running(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def _start_spawner() -> None:
    global _spawner
    with _spawner_lock:
        if _spawner is None or not _spawner.is_alive():
            _spawner = threading.Thread(target=_serve, name="labkit-spawner", daemon=True)
            _spawner.start()


def _serve() -> None:
    while True:
        argv, popen_kwargs, done = _requests.get()
        if not done.set_running_or_notify_cancel():
            continue
        try:
            proc = subprocess.Popen(argv, preexec_fn=_die_with_parent(os.getpid()), **popen_kwargs)
        except BaseException as exc:  # noqa: BLE001 - the caller raises it
            done.set_exception(exc)
        else:
            done.set_result(proc)


def _die_with_parent(parent_pid: int):
    def in_child() -> None:
        assert _LIBC is not None
        if _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent_pid:  # the parent died before the prctl: nobody to ask
            os._exit(1)

    return in_child
