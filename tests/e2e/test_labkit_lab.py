"""`labkit lab` from the installed package: what a student sees when a port is taken,
reusing a broker that is already running, a clean stop on SIGTERM, and no child left
behind by a `labkit lab` that is killed.

Real processes over real sockets (the broker, JupyterLab); ports are free ones. Every
process a test starts leads its own process group; whatever happens, the test ends by
stopping that group and every descendant (SIGTERM, then SIGKILL), so no JupyterLab,
kernel or broker outlives it.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from e2e_helpers import (
    REPO,
    broker_answers,
    connect_error,
    free_port,
    gone,
    http_status,
    lab_argv,
    processes_mentioning,
    stop_tree,
    wait_until,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(300),
    pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs Linux /proc"),
]


STOP_S = 30


def _labkit(*args: str) -> list[str]:
    return [sys.executable, "-m", "labkit", *args]


def _start(argv: list[str], **kwargs) -> subprocess.Popen:
    """Start ``argv`` as the leader of a new process group (see ``stop_tree``)."""
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, start_new_session=True, **kwargs)


def _run_lab(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess:
    """``labkit lab ARGS`` to the end; its whole tree is stopped even when it hangs."""
    proc = _start(_labkit("lab", *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        stop_tree(proc, STOP_S)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture
def listener():
    """A plain TCP listener (not a broker, not JupyterLab) holding a port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock.getsockname()[1]
    sock.close()


def test_lab_port_taken_names_the_fix(tmp_path: Path, listener: int):
    result = _run_lab(
        [
            "--no-browser",
            "--port",
            str(free_port()),
            "--lab-port",
            str(listener),
            "--data-dir",
            str(tmp_path / "data"),
            "--notebooks",
            str(tmp_path),
        ]
    )
    assert result.returncode == 1
    assert f"Port {listener} is taken" in result.stderr
    assert f"--lab-port {listener + 1}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not processes_mentioning(str(tmp_path))


def test_broker_port_taken_by_something_else_names_the_fix(tmp_path: Path, listener: int):
    result = _run_lab(
        [
            "--no-browser",
            "--port",
            str(listener),
            "--lab-port",
            str(free_port()),
            "--data-dir",
            str(tmp_path / "data"),
            "--notebooks",
            str(tmp_path),
        ]
    )
    assert result.returncode == 1
    assert f"Port {listener} is taken by a program that is not a labkit broker" in result.stderr
    assert f"--port {listener + 1}" in result.stderr
    assert not processes_mentioning(str(tmp_path))


def test_reuses_a_running_broker_and_leaves_it_running(tmp_path: Path):
    port, lab_port = free_port(), free_port()
    data = tmp_path / "own-broker-data"
    broker_log = tmp_path / "broker.log"
    with open(broker_log, "wb") as log:
        broker = _start(
            _labkit("broker", "--port", str(port), "--data-dir", str(data)),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: broker_answers(f"127.0.0.1:{port}", 500) or broker.poll() is not None,
            30,
            what="the broker",
        )
        assert broker.poll() is None, broker_log.read_text()
        log_path = tmp_path / "lab.log"
        with open(log_path, "wb") as log:
            lab = _start(
                lab_argv(port, lab_port, tmp_path / "unused", tmp_path),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        try:
            wait_until(
                lambda: (
                    http_status(f"http://127.0.0.1:{lab_port}/api") == 200 or lab.poll() is not None
                ),
                120,
                what="JupyterLab",
            )
            assert lab.poll() is None, log_path.read_text()
            assert "already running" in log_path.read_text()
            lab.send_signal(signal.SIGTERM)
            assert lab.wait(60) == 0, log_path.read_text()
        finally:
            stop_tree(lab)
        assert connect_error("127.0.0.1", lab_port) is not None
        assert broker.poll() is None, "labkit lab must not stop a broker it did not start"
        assert broker_answers(f"127.0.0.1:{port}"), (
            "labkit lab must not stop a broker it did not start"
        )
        assert not (tmp_path / "unused").exists()
        wait_until(
            lambda: all(str(lab_port) not in cmd for _, cmd in processes_mentioning(str(tmp_path))),
            10,
            what="JupyterLab to exit",
        )
    finally:
        stop_tree(broker)


def _redirect(port: int, path: str) -> str | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        return conn.getresponse().getheader("Location")
    finally:
        conn.close()


def _wait_until_up(lab: subprocess.Popen, port: int, lab_port: int, log_path: Path) -> None:
    """Until the lab's broker answers on ``port`` and JupyterLab on ``lab_port``; fails
    with the lab's log if ``labkit lab`` exits first."""
    wait_until(
        lambda: (
            lab.poll() is not None
            or (
                http_status(f"http://127.0.0.1:{lab_port}/api") == 200
                and broker_answers(f"127.0.0.1:{port}", 500)
            )
        ),
        120,
        what="broker and JupyterLab",
    )
    assert lab.poll() is None, log_path.read_text()


def test_sigint_stops_the_broker_it_started(tmp_path: Path):
    port, lab_port = free_port(), free_port()
    shutil.copy(REPO / "notebooks" / "README.ipynb", tmp_path / "README.ipynb")
    log_path = tmp_path / "lab.log"
    env = dict(os.environ, JUPYTER_TOKEN="e2e-token")
    with open(log_path, "wb") as log:
        lab = _start(
            lab_argv(port, lab_port, tmp_path / "data", tmp_path),
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        _wait_until_up(lab, port, lab_port, log_path)
        url = f"http://localhost:{lab_port}/lab/tree/README.ipynb?token=e2e-token"
        wait_until(lambda: url in log_path.read_text(), 15, what="the URL in the log")
        # The landing page: the lab opens on README.ipynb.
        assert "/lab/tree/README.ipynb" in _redirect(lab_port, "/?token=e2e-token")
        assert http_status(url.replace("localhost", "127.0.0.1")) == 200
        os.killpg(lab.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole group
        assert lab.wait(60) == 0, log_path.read_text()
    finally:
        stop_tree(lab)
    wait_until(
        lambda: gone(str(tmp_path), port),
        15,
        what="the broker and JupyterLab to exit",
    )
    assert connect_error("127.0.0.1", port) is not None
    assert (tmp_path / "data").is_dir()


def test_a_killed_lab_takes_its_broker_and_jupyterlab_with_it(tmp_path: Path):
    """kill -9 runs none of `labkit lab`'s stop code: its children's parent-death guard
    (labkit/launch/lifeline.py) must end the broker and JupyterLab, or they would live on
    under init holding the lab's ports."""
    port, lab_port = free_port(), free_port()
    log_path = tmp_path / "lab.log"
    with open(log_path, "wb") as log:
        lab = _start(
            lab_argv(port, lab_port, tmp_path / "data", tmp_path),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    children: list[psutil.Process] = []
    try:
        _wait_until_up(lab, port, lab_port, log_path)
        children = psutil.Process(lab.pid).children(recursive=True)
        assert len(processes_mentioning(str(tmp_path))) >= 2  # the broker and JupyterLab
        lab.kill()
        lab.wait()
        wait_until(
            lambda: gone(str(tmp_path), port, lab_port),
            30,
            what="the broker and JupyterLab to die with the killed labkit lab",
        )
        assert connect_error("127.0.0.1", port) is not None
        assert connect_error("127.0.0.1", lab_port) is not None
    finally:
        stop_tree(lab)
        for child in children:  # the test failed: they are init's children now
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()


STUBBORN = """
import signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
subprocess.Popen([sys.executable, "-c", code, sys.argv[1]])
subprocess.Popen([sys.executable, "-c", code, sys.argv[1]], start_new_session=True)
print("ready", flush=True)
time.sleep(300)
"""


def test_stop_tree_kills_what_ignores_sigterm_even_in_another_session(tmp_path: Path):
    marker = str(tmp_path / "stubborn")
    proc = _start([sys.executable, "-c", STUBBORN, marker], stdout=subprocess.PIPE)
    try:
        assert proc.stdout.readline() == b"ready\n"
        wait_until(
            lambda: len(psutil.Process(proc.pid).children(recursive=True)) == 2,
            10,
            what="both children",
        )
    finally:
        stop_tree(proc, timeout=2)
        proc.stdout.close()  # a pipe left open is a ResourceWarning: an error in this suite
    assert proc.returncode == -signal.SIGKILL
    assert not processes_mentioning(marker)
