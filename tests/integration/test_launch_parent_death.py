"""A killed parent takes its engines with it (labkit/launch/lifeline.py).

A real Python child starts one engine the way a script or pytest does, prints its pid and
sleeps; the test kills the child with SIGKILL (no Python code runs then: no finalizer, no
atexit) and the engine must go within a generous bound instead of living on under init,
loading the machine during later runs. Apache Kafka's JVM (labkit.testing) is the engine
that had no guard at all; ZooKeeper's JVM and the labkit broker (labkit.launch) had only a
finalizer, which a kill -9 never runs; the Connect worker (labkit.ecosystem) and
``labkit lab``'s children (its brokers, ZooKeeper and JupyterLab, each started by the
supervisor's ``_spawn`` in a session of its own) had only their parent's clean stop. The
engine is started from a thread that ends before the kill, as nb.cluster() starts its
brokers from a pool: Linux's parent-death signal follows the thread that forked, so the
guard must not depend on the starting thread.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

GONE_WITHIN_S = 60.0  # a bound, not a wait: the kernel sends SIGKILL at once

STARTS = {
    "apache-kafka": (
        "from labkit.testing.apache_kafka import ApacheKafka\n"
        "engine = ApacheKafka(heap='256m').start()\n"
        "pid = engine.proc.pid\n"
    ),
    "zookeeper": (
        "from labkit.testing.zookeeper import ZooKeeperServer\n"
        "engine = ZooKeeperServer().start()\n"
        "pid = engine.proc.pid\n"
    ),
    "labkit-broker": (
        "from labkit.testing import BrokerProcess\n"
        "engine = BrokerProcess(start_timeout_s=60).start()\n"
        "pid = engine.proc.pid\n"
    ),
    # the worker's JVM is the engine: no broker answers on port 9, so start() goes on
    # waiting in its own thread while the test kills the parent
    "connect-worker": (
        "import tempfile, time\n"
        "from labkit.ecosystem.connect import ConnectWorker\n"
        "engine = ConnectWorker('127.0.0.1:9', tempfile.mkdtemp())\n"
        "threading.Thread(target=engine.start, daemon=True).start()\n"
        "while engine.proc is None:\n"
        "    time.sleep(0.01)\n"
        "pid = engine.proc.pid\n"
    ),
    # what `labkit lab` starts its broker(s), ZooKeeper and JupyterLab with
    "labkit-lab-child": (
        "import os, sys\n"
        "from labkit.cli.lab_supervisor import _spawn\n"
        "sleep = [sys.executable, '-c', 'import time; time.sleep(600)']\n"
        "engine = _spawn(sleep, dict(os.environ))\n"
        "pid = engine.pid\n"
    ),
}
# started in a session of their own (a Ctrl-C in the terminal reaches only their parent,
# which stops them cleanly): the guard must keep that
OWN_SESSION = {"connect-worker", "labkit-lab-child"}

CHILD = """\
import threading, time
started = {}
def start():
%s
    started['engine'], started['pid'] = engine, pid
worker = threading.Thread(target=start)
worker.start()
worker.join()
print(started['pid'], flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for init to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def _require_jars(engine: str) -> None:
    """The JVM engines need their jars (``make apache-kafka``, ``make zookeeper``)."""
    from labkit.ecosystem import connect
    from labkit.testing import apache_kafka, zookeeper

    check = {
        "apache-kafka": apache_kafka.require,
        "zookeeper": zookeeper.require,
        "connect-worker": connect.classpath,
    }.get(engine)
    if check is None:
        return
    try:
        check()
    except RuntimeError as exc:  # ApacheKafkaMissing, ZooKeeperMissing, ConnectMissing
        pytest.fail(str(exc))


@pytest.mark.parametrize("engine", sorted(STARTS))
def test_an_engine_dies_with_its_killed_parent(engine, tmp_path):
    _require_jars(engine)
    body = "".join("    " + line + "\n" for line in STARTS[engine].splitlines())
    # the engine's temporary folders, left behind by the kill, go into tmp_path
    env = dict(os.environ, TMPDIR=str(tmp_path))
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD % body],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    pid = None
    try:
        line = parent.stdout.readline()
        assert line.strip().isdigit(), f"the child did not start {engine}: {parent.stderr.read()}"
        pid = int(line)
        assert _parent_of(pid) == parent.pid, f"{engine} is not the child's own process"
        if engine in OWN_SESSION:
            assert os.getsid(pid) == pid, f"{engine} is not in a session of its own"
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + GONE_WITHIN_S
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(pid), (
            f"{engine} (pid {pid}) still runs {GONE_WITHIN_S:.0f} s after its parent's kill -9"
        )
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)  # the test failed: leave no orphan behind
        parent.stdout.close()
        parent.stderr.close()
