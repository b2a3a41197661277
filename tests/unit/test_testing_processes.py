"""labkit.testing.processes: a frozen process is one whose every thread has stopped."""

from __future__ import annotations

import subprocess
import sys
import time

from labkit.testing.processes import freeze, is_frozen, thaw

THREADED = "import threading, time\nfor _ in range(3): threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\nprint('up', flush=True)\ntime.sleep(60)\n"


def test_freeze_returns_once_every_thread_is_stopped_and_thaw_lets_it_go_on():
    proc = subprocess.Popen([sys.executable, "-c", THREADED], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "up\n"
        assert not is_frozen(proc.pid)
        freeze(proc.pid)
        assert is_frozen(proc.pid)
        thaw(proc.pid)
        assert _settles(proc.pid)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    assert not is_frozen(proc.pid)  # an exited process is not frozen


def _settles(pid: int) -> bool:
    """Not frozen within 5 s (SIGCONT, too, takes effect when the threads run)."""
    deadline = time.monotonic() + 5
    while is_frozen(pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return not is_frozen(pid)
