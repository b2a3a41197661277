"""Processes for tests: freezing one and knowing it is frozen; a child with a full disk.

``kill(pid, SIGSTOP)`` returns before the process has stopped: the kernel wakes one of its
threads to start the group stop, and on a loaded machine that thread may wait to be
scheduled while another thread, woken by a request, still answers it. A test that means
"the broker is frozen" waits here until every thread is stopped.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

_SOURCE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder holding labkit/


def is_frozen(pid: int) -> bool:
    """Every thread of ``pid`` stopped (state T)? False if it has exited."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return False
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except FileNotFoundError:
            continue  # a thread that ended meanwhile
        state = stat.rpartition(")")[2].split()[0]  # the name may hold spaces and ")"
        if state not in ("T", "t"):
            return False
    return bool(tasks)


def freeze(pid: int, timeout: float = 10.0) -> None:
    """SIGSTOP ``pid`` and return once all its threads are stopped."""
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while not is_frozen(pid):
        if time.monotonic() > deadline:
            raise TimeoutError(f"process {pid} did not stop within {timeout} s of SIGSTOP")
        time.sleep(0.001)


def thaw(pid: int) -> None:
    """SIGCONT ``pid`` (it goes on at once; nothing to wait for)."""
    os.kill(pid, signal.SIGCONT)


def run_with_file_size_limit(limit: int, code: str, *args: str) -> str:
    """Run Python ``code`` in a child whose files cannot grow past ``limit`` bytes (a full
    disk, made real: ``write(2)`` then writes part of the bytes and returns their count,
    and the next write fails with EFBIG); its stdout. This labkit is first on its path."""

    def limit_file_size() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [_SOURCE_ROOT, env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        preexec_fn=limit_file_size,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=True,
    )
    return done.stdout
