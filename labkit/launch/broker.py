"""A real labkit broker as a child process: tests, ``nb.cluster()`` and ``labkit grade
--fresh-broker`` start one.

``BrokerProcess`` runs ``python -m labkit.broker`` on two free ports (the main one,
Kafka's protocol: ``bootstrap``; ZeroMQ's: ``zmq_bootstrap``) with a
temporary data directory (unless given one) and waits until it answers
``api_versions``. It is a context manager::

    with BrokerProcess(config={"num.partitions": "3"}) as broker:
        KafkaProducer(bootstrap_servers=broker.bootstrap)...
        broker.restart()          # same port, same data

``BrokerProcess(cgroup=NetworkCut().path)`` starts it (and each restart) in a cgroup of its
own, so a failure test can cut it off the network (labkit/testing/netcut.py).

The broker dies with the process that started it, even a killed one (labkit/launch/lifeline.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from labkit.client.probe import broker_answers
from labkit.launch.lifeline import spawn
from labkit.launch.ports import free_port

START_TIMEOUT_S = 10.0


class BrokerStartError(RuntimeError):
    """The broker process did not come up; the message holds its stderr."""


class BrokerProcess:
    """A ``labkit broker`` subprocess on a free port (see the module docstring)."""

    def __init__(
        self,
        data_dir: str | Path | None = None,
        port: int | None = None,
        config: dict | None = None,
        host: str = "127.0.0.1",
        start_timeout_s: float = START_TIMEOUT_S,
        cgroup: Path | None = None,
    ):
        self.start_timeout_s = start_timeout_s
        self.cgroup = cgroup  # a cgroup v2 directory to run in (labkit/testing/netcut.py)
        self._own_dir = data_dir is None
        self.data_dir = (
            Path(tempfile.mkdtemp(prefix="labkit-broker-")) if data_dir is None else Path(data_dir)
        )
        self.host = host
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port(host)
        self.zmq_port = free_port(host)
        self.config = dict(config or {})
        self.proc: subprocess.Popen | None = None
        self._log_path = Path(tempfile.mkstemp(prefix="labkit-broker-", suffix=".log")[1])
        self._log: BinaryIO | None = None

    @property
    def bootstrap(self) -> str:
        """The main port (Kafka's protocol; labkit clients bootstrap there too)."""
        return f"{self.host}:{self.port}"

    @property
    def zmq_bootstrap(self) -> str:
        """The ZeroMQ port itself (a labkit client given it skips the Kafka port)."""
        return f"{self.host}:{self.zmq_port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "labkit.broker",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--zmq-port",
            str(self.zmq_port),
            "--data-dir",
            str(self.data_dir),
        ]
        for key, value in self.config.items():
            cmd += ["--config", f"{key}={value}"]
        if self.cgroup is not None:
            # enter the cgroup before the broker opens a socket (a socket keeps the cgroup
            # it was created in), then become the broker: same pid
            enter = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
            cmd = ["/bin/sh", "-c", enter, str(self.cgroup), *cmd]
        return cmd

    def output(self) -> str:
        """Everything the broker printed so far (stdout and stderr)."""
        try:
            return self._log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self) -> BrokerProcess:
        """Start the process and wait until it answers. Raises BrokerStartError."""
        for attempt in range(3):
            try:
                self._start_once()
                return self
            except BrokerStartError:
                port_race = "already in use" in self.output() and not self._fixed_port
                if not port_race or attempt == 2:
                    raise
                self.port = free_port(self.host)
                self.zmq_port = free_port(self.host)
        return self

    def _start_once(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        if self._log is not None:  # the last process exited on its own (a crash, a kill)
            self._log.close()
        log = self._log = open(self._log_path, "ab")  # noqa: SIM115 - the broker's output, kept until stop()
        log.truncate(0)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = spawn(
            self,
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
        )
        deadline = time.monotonic() + self.start_timeout_s
        # The startup line comes after the bind: only then can the answer be ours
        # (another process may hold the port and answer the probe).
        while "labkit broker listening on" not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.02)
        while time.monotonic() < deadline and self.proc.poll() is None:
            if broker_answers(self.bootstrap, 0.5, client_id="labkit-testing"):
                return
        code = self.proc.poll()
        if code is None:
            self.kill()
        raise BrokerStartError(
            f"broker did not start within {self.start_timeout_s:.0f} s "
            f"(exit code {code}); its output:\n{self.output()}"
        )

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM and wait; SIGKILL after ``timeout``. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self._reap()

    def kill(self) -> int | None:
        """SIGKILL, as a crash would. Returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        return self._reap()

    def _reap(self) -> int | None:
        assert self.proc is not None
        code = self.proc.returncode
        if self._log is not None:
            self._log.close()
            self._log = None
        return code

    def restart(self) -> BrokerProcess:
        """Stop (cleanly) and start again on the same port with the same data."""
        self.stop()
        self._fixed_port = True
        return self.start()

    def close(self) -> None:
        """Stop the process and remove the temporary data directory (if we made it)."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)
        self._log_path.unlink(missing_ok=True)

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
