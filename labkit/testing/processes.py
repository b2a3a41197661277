"""Freezing a process for a test, and knowing it is frozen.

``kill(pid, SIGSTOP)`` returns before the process has stopped: the kernel wakes one of its
threads to start the group stop, and on a loaded machine that thread may wait to be
scheduled while another thread, woken by a request, still answers it. A test that means
"the broker is frozen" waits here until every thread is stopped.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


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
