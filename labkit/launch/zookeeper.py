"""Apache ZooKeeper itself, one standalone server: for cluster mode's tests and
``nb.cluster()`` (notebook 13); ``labkit lab --brokers`` finds the jars and asks it ``srvr`` here.

The jars come from Maven Central through ``make zookeeper`` (tools/zookeeper/pom.xml) into
``.cache/zookeeper/<version>/libs`` -- git-ignored, never shipped. labkit's cluster mode
(labkit/cluster/, docs/replication.md) keeps its brokers' registrations, the controller and
the partitions' leaders there, as Kafka 2.x/3.x did.

``ZooKeeperServer`` is a context manager like ``BrokerProcess``::

    with ZooKeeperServer() as zk:
        BrokerProcess(config={"broker.id": "1", "zookeeper.connect": zk.connect})...
        zk.kill()       # kill -9, as a crash would
        zk.start()      # same port, same data

It writes a ``zoo.cfg`` into a temporary directory (its own data directory, a free client
port on 127.0.0.1, no admin HTTP server, the ``ruok``/``srvr`` four-letter words allowed,
session timeouts from 1 s to 60 s so tests may use short ones and Kafka's 18 s default still
holds), runs ``org.apache.zookeeper.server.ZooKeeperServerMain`` on it and waits until the
server answers ``srvr`` (which it does only once it serves clients). The JVM dies with the
process that started it, even a killed one (labkit/launch/lifeline.py).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from labkit.launch.lifeline import spawn
from labkit.launch.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
VERSION = "3.8.4"  # keep in step with the Makefile's ZOOKEEPER_VERSION
CACHE_ENV = "LABKIT_ZOOKEEPER_LIBS"
START_TIMEOUT_S = 30.0
TICK_MS = 500  # ZooKeeper's time unit; session timeouts are whole ticks

_LOGBACK = """<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>{log}</file>
    <encoder><pattern>%d %-5level %logger{{36}}: %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="FILE"/></root>
</configuration>
"""


class ZooKeeperMissing(RuntimeError):
    """The jars are not downloaded (or Java is missing); the message says what to run."""


def libs_dir() -> Path:
    """Where the jars are: ``$LABKIT_ZOOKEEPER_LIBS`` or the project's cache folder."""
    return Path(os.environ.get(CACHE_ENV) or ROOT / ".cache" / "zookeeper" / VERSION / "libs")


def require() -> Path:
    """The jars' folder; raises ``ZooKeeperMissing`` saying how to get them."""
    libs = libs_dir()
    if shutil.which("java") is None:
        raise ZooKeeperMissing("no `java` on PATH: Apache ZooKeeper needs Java 8+ (17 here)")
    if not any(libs.glob("zookeeper-3*.jar")):
        raise ZooKeeperMissing(
            f"Apache ZooKeeper's jars are not in {libs}: run `make zookeeper` (downloads "
            f"ZooKeeper {VERSION} from Maven Central, ~7 MB, once) or point ${CACHE_ENV} at them"
        )
    return libs


def four_letter_word(port: int, word: str = "srvr", timeout: float = 1.0) -> str | None:
    """ZooKeeper's answer to a four-letter word on 127.0.0.1:``port``, or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(word.encode("ascii"))
            chunks = []
            while True:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                chunks.append(chunk)
    except OSError:
        return None
    return b"".join(chunks).decode("utf-8", "replace") or None


class ZooKeeperServer:
    """One standalone ZooKeeper on a free local port with temporary data."""

    def __init__(self, heap: str = "128m"):
        self.heap = heap
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    @property
    def connect(self) -> str:
        """The ``zookeeper.connect`` string of this server (``127.0.0.1:PORT``)."""
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def home(self) -> Path:
        if self._tmp is None:
            raise RuntimeError("the server was never started")
        return Path(self._tmp.name)

    def log(self) -> str:
        """What the server logged (WARN and above) and printed."""
        parts = []
        for name in ("zookeeper.log", "stdout.log"):
            try:
                parts.append((self.home / name).read_text(errors="replace"))
            except OSError:
                pass
        return "".join(parts)

    def _write_config(self) -> Path:
        home = self.home
        (home / "data").mkdir(exist_ok=True)
        cfg = home / "zoo.cfg"
        cfg.write_text(
            f"tickTime={TICK_MS}\n"
            f"dataDir={home / 'data'}\n"
            f"clientPort={self.port}\n"
            "clientPortAddress=127.0.0.1\n"
            f"minSessionTimeout={2 * TICK_MS}\n"
            "maxSessionTimeout=60000\n"
            "admin.enableServer=false\n"  # else an HTTP server on 8080
            "4lw.commands.whitelist=ruok,srvr,stat,cons\n"
            "maxClientCnxns=0\n",
            encoding="utf-8",
        )
        (home / "logback.xml").write_text(
            _LOGBACK.format(log=home / "zookeeper.log"), encoding="utf-8"
        )
        return cfg

    def command(self) -> list[str]:
        return [
            "java",
            f"-Xmx{self.heap}",
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            f"-Dlogback.configurationFile={self.home / 'logback.xml'}",
            "-Dzookeeper.jmx.log4j.disable=true",
            "-cp",
            str(require() / "*"),
            "org.apache.zookeeper.server.ZooKeeperServerMain",
            str(self.home / "zoo.cfg"),
        ]

    def start(self) -> ZooKeeperServer:
        """Start the server (again: same port, same data) and wait until it serves.

        Raises ZooKeeperMissing, or RuntimeError with the server's log."""
        require()
        if self.proc is not None and self.proc.poll() is None:
            return self
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="labkit-zookeeper-")
            self.port = free_port()
        self._write_config()
        with open(self.home / "stdout.log", "ab") as out:
            self.proc = spawn(
                self, self.command(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and self.proc.poll() is None:
            answer = four_letter_word(self.port, "srvr", 0.5)
            if answer and "Mode:" in answer:
                return self
            if "NoClassDefFoundError" in self.log():  # a missing jar: the JVM lingers on
                break
            time.sleep(0.05)
        code = self.proc.poll()
        if code is None:
            self.kill()
        raise RuntimeError(
            f"ZooKeeper did not start on 127.0.0.1:{self.port} (waited at most "
            f"{START_TIMEOUT_S:.0f} s; exit code {code}); its log:\n{self.log()}"
        )

    def kill(self) -> None:
        """kill -9, as a crash would (the data stays; ``start()`` brings it back)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def pause(self) -> None:
        """SIGSTOP: the server stops answering while its sessions' clocks run."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait; SIGKILL after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.resume()
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def close(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ZooKeeperServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
