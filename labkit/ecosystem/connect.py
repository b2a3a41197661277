"""Apache Kafka's own Connect runtime, started for a student (``labkit connect``).

Theory of operation: a Connect worker is a Java program (``ConnectStandalone`` or
``ConnectDistributed``) whose classpath is Apache Kafka's jars (``make apache-kafka``:
connect-runtime, connect-json come with kafka-tools) plus the file connectors and a log
binding (``make kafka-connect``). ``ConnectWorker`` writes the worker's properties into a
work directory, starts the worker there, waits until its REST API answers, and (in
distributed mode, where connectors are not given on the command line) submits each
connector's config over REST. Every connector is then waited for until it and its tasks
are RUNNING, so a caller that gets the worker back can rely on it.

Every worker started and not yet stopped is remembered (``stop_all()``, also run when the
Python process exits): the Java process has a session of its own, so a notebook cell run
twice or a kernel that exits would otherwise leave it running; and it dies with a parent
that is killed, which runs no Python code (labkit/launch/lifeline.py).

State: a standalone worker keeps its source offsets in ``<work dir>/connect.offsets``
(flushed every second and on a clean stop), so a worker restarted on the same work
directory goes on where it stopped; a sink's offsets are its consumer group's
(``connect-<connector name>``) on the broker. A distributed worker keeps configs,
offsets and statuses in three compacted topics on the broker.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path

from labkit.launch.kafka_jars import CACHE_ENV as KAFKA_ENV
from labkit.launch.kafka_jars import ROOT, VERSION, libs_dir
from labkit.launch.lifeline import spawn
from labkit.launch.ports import free_port

CONNECT_ENV = "LABKIT_KAFKA_CONNECT_LIBS"
START_TIMEOUT_S = 120.0
# Under nbval's 60 s cell limit with room to spare: a worker on 2 cores at load 20 once took
# over 60 s to stop after SIGTERM (a notebook 12 run), though 1-2 s is usual.
STOP_TIMEOUT_S = 30.0
STRING_CONVERTER = "org.apache.kafka.connect.storage.StringConverter"

# Root WARN keeps a student's terminal readable; Connect's own start/stop lines stay.
LOG4J2 = """\
status = error
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d{HH:mm:ss}] %p %m (%c{1})%n
rootLogger.level = WARN
rootLogger.appenderRef.out.ref = out
logger.cli.name = org.apache.kafka.connect.cli
logger.cli.level = INFO
logger.herder.name = org.apache.kafka.connect.runtime.AbstractHerder
logger.herder.level = INFO
"""


class ConnectMissing(RuntimeError):
    """Java or the jars are missing; the message says what to run."""


# How to get what is missing, on the machine and in the Docker lab (the Java profile of
# docker-compose.yml sets these same variables in the lab container).
HOW_TO_GET = (
    "on your machine: `make kafka-connect` in the labkit checkout (Java 17 must be "
    "installed; the jars come from Maven Central, ~55 MB, once); in the Docker lab: start "
    "it with its Java profile (`docker-compose --profile spark up`); elsewhere: point "
    f"{KAFKA_ENV} and {CONNECT_ENV} at the folders "
    "holding Apache Kafka's jars and connect-file's"
)


def java_executable() -> str | None:
    """``$JAVA_HOME/bin/java`` when it exists, else ``java`` on PATH, else None."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    return shutil.which("java")


def connect_libs_dir() -> Path:
    return Path(os.environ.get(CONNECT_ENV) or ROOT / ".cache" / "kafka-connect" / VERSION / "libs")


def classpath() -> str:
    """Apache Kafka's jars and the file connectors, or ``ConnectMissing`` saying how."""
    if java_executable() is None:
        raise ConnectMissing(f"no Java found (JAVA_HOME, `java` on PATH): {HOW_TO_GET}")
    kafka = libs_dir()
    if not any(kafka.glob("kafka_2.13-*.jar")) or not any(kafka.glob("connect-runtime-*.jar")):
        raise ConnectMissing(f"Apache Kafka {VERSION}'s jars are not in {kafka}: {HOW_TO_GET}")
    extra = connect_libs_dir()
    if not any(extra.glob("connect-file-*.jar")):
        raise ConnectMissing(
            f"Kafka Connect's file connectors (connect-file {VERSION}) are not in {extra}: "
            f"{HOW_TO_GET}"
        )
    return f"{kafka / '*'}{os.pathsep}{extra / '*'}"


def installation() -> str:
    """One line naming the Java and the jars a worker will use (``ConnectMissing`` saying
    how to get what is missing): what a notebook shows before it starts a worker."""
    classpath()
    return (
        f"Kafka Connect {VERSION}: Java {java_executable()}, Apache Kafka's jars in "
        f"{libs_dir()}, the file connectors in {connect_libs_dir()}"
    )


def file_source(name: str, path: Path | str, topic: str) -> dict[str, str]:
    """A FileStreamSource: each new line of ``path`` becomes one record of ``topic``."""
    return {
        "name": name,
        "connector.class": "FileStreamSource",
        "tasks.max": "1",
        "file": str(Path(path).resolve()),
        "topic": topic,
    }


def file_sink(name: str, topic: str, path: Path | str) -> dict[str, str]:
    """A FileStreamSink: each record of ``topic`` becomes one line of ``path``."""
    return {
        "name": name,
        "connector.class": "FileStreamSink",
        "tasks.max": "1",
        "topics": topic,
        "file": str(Path(path).resolve()),
    }


def read_properties(path: Path | str) -> dict[str, str]:
    """A Java ``.properties`` file (``key=value`` lines, ``#`` comments) as a dict."""
    props: dict[str, str] = {}
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line[0] in "#!":
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: {raw!r} is not key=value")
        props[key.strip()] = value.strip()
    if "name" not in props or "connector.class" not in props:
        raise ValueError(f"{path}: a connector config needs `name=` and `connector.class=`")
    return props


_RUNNING: set[ConnectWorker] = set()  # started, not yet stopped (strong: a lost name still counts)


def stop_all() -> int:
    """Stop every worker this process started and has not stopped; returns how many."""
    workers = list(_RUNNING)
    for worker in workers:
        worker.stop()
    return len(workers)


atexit.register(stop_all)


def _write_properties(path: Path, props: Mapping[str, str]) -> None:
    path.write_text("".join(f"{k}={v}\n" for k, v in props.items()), encoding="utf-8")


class ConnectWorker:
    """One Connect worker (``mode`` "standalone" or "distributed") on ``bootstrap``."""

    def __init__(
        self,
        bootstrap: str,
        work_dir: Path | str,
        connectors: Iterable[Mapping[str, str]] = (),
        *,
        mode: str = "standalone",
        group_id: str = "labkit-connect",
        rest_port: int = 0,
        worker_config: Mapping[str, str] | None = None,
        heap: str = "384m",
        log_to_file: bool = True,
    ):
        if mode not in ("standalone", "distributed"):
            raise ValueError(f"mode is 'standalone' or 'distributed', not {mode!r}")
        self.bootstrap = bootstrap
        self.work_dir = Path(work_dir)
        self.connectors = [dict(c) for c in connectors]
        self.mode = mode
        self.group_id = group_id
        self.rest_port = rest_port
        self.worker_config = dict(worker_config or {})
        self.heap = heap
        self.log_to_file = log_to_file
        self.proc: subprocess.Popen | None = None
        self._log = None

    @property
    def offsets_file(self) -> Path:
        return self.work_dir / "connect.offsets"

    @property
    def log_file(self) -> Path:
        return self.work_dir / "connect.log"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def worker_properties(self) -> dict[str, str]:
        props = {
            "bootstrap.servers": self.bootstrap,
            "key.converter": STRING_CONVERTER,
            "value.converter": STRING_CONVERTER,
            "listeners": f"http://127.0.0.1:{self.rest_port}",
            "rest.advertised.host.name": "127.0.0.1",
            "offset.flush.interval.ms": "1000",
            "plugin.discovery": "service_load",  # no classpath scan: ~20 s less at start
        }
        if self.mode == "standalone":
            props["offset.storage.file.filename"] = str(self.offsets_file.resolve())
        else:
            props.update(
                {
                    "group.id": self.group_id,
                    "config.storage.topic": f"{self.group_id}-configs",
                    "offset.storage.topic": f"{self.group_id}-offsets",
                    "status.storage.topic": f"{self.group_id}-status",
                    "config.storage.replication.factor": "1",
                    "offset.storage.replication.factor": "1",
                    "status.storage.replication.factor": "1",
                    "offset.storage.partitions": "1",
                    "status.storage.partitions": "1",
                }
            )
        props.update(self.worker_config)
        return props

    def command(self) -> list[str]:
        """The ``java`` command line (the files it names are written by ``start``)."""
        main = "ConnectStandalone" if self.mode == "standalone" else "ConnectDistributed"
        args = [str(self.work_dir / "worker.properties")]
        if self.mode == "standalone":
            args += [str(self.work_dir / f"{c['name']}.properties") for c in self.connectors]
        return [
            java_executable() or "java",
            f"-Xmx{self.heap}",
            "-XX:+UseSerialGC",
            # C1 only: a lab's worker moves little data, and C2's compiler threads fighting
            # for 2 cores made the start 25-38 s instead of 6-8 s (load 12-15, 2 CPUs)
            "-XX:TieredStopAtLevel=1",
            f"-Dlog4j2.configurationFile={self.work_dir / 'log4j2.properties'}",
            "-cp",
            classpath(),
            f"org.apache.kafka.connect.cli.{main}",
            *args,
        ]

    def start(self, timeout: float = START_TIMEOUT_S) -> ConnectWorker:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if self.rest_port == 0:
            self.rest_port = free_port()
        _write_properties(self.work_dir / "worker.properties", self.worker_properties())
        (self.work_dir / "log4j2.properties").write_text(LOG4J2, encoding="utf-8")
        for connector in self.connectors:
            _write_properties(self.work_dir / f"{connector['name']}.properties", connector)
        output = None
        if self.log_to_file:
            self._log = open(self.log_file, "ab")  # noqa: SIM115 - closed in stop()
            output = self._log
        # No owner: stop() (and stop_all() at exit) stops the worker cleanly; spawn adds
        # the kill when this process is killed (kill -9, a kernel the OOM killer ended).
        self.proc = spawn(
            None,
            self.command(),
            stdout=output,
            stderr=subprocess.STDOUT if output else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        _RUNNING.add(self)
        deadline = time.monotonic() + timeout
        try:
            self._wait(lambda: self._get("/") is not None, deadline, "its REST API answers")
            if self.mode == "distributed":
                for connector in self.connectors:
                    config = {k: v for k, v in connector.items() if k != "name"}
                    self._put(f"/connectors/{connector['name']}/config", config, deadline)
            for connector in self.connectors:
                self.wait_running(connector["name"], deadline)
        except BaseException:
            self.stop()
            raise
        return self

    def wait_running(self, name: str, deadline: float) -> None:
        def running() -> bool:
            status = self._get(f"/connectors/{name}/status")
            if not status:
                return False
            states = [status["connector"]["state"]] + [t["state"] for t in status["tasks"]]
            if "FAILED" in states:
                traces = [t.get("trace", "") for t in status["tasks"]]
                trace = status["connector"].get("trace", "") or next(filter(None, traces), "")
                raise RuntimeError(f"connector {name} FAILED:\n{trace[:3000]}")
            return bool(status["tasks"]) and set(states) == {"RUNNING"}

        self._wait(running, deadline, f"connector {name} and its tasks are RUNNING")

    def _wait(self, done, deadline: float, what: str) -> None:
        while not done():
            if self.proc is None or self.proc.poll() is not None:
                raise RuntimeError(f"the Connect worker exited before {what}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the Connect worker timed out before {what}:\n{self.log_tail()}"
                )
            time.sleep(0.25)

    def log_tail(self, chars: int = 4000) -> str:
        if not self.log_file.exists():
            return "(no log)"
        return self.log_file.read_text(errors="replace")[-chars:]

    def _get(self, path: str):
        try:
            with urllib.request.urlopen(self.rest_url + path, timeout=5) as answer:
                return json.loads(answer.read() or b"null")
        except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
            return None

    def _put(self, path: str, body: Mapping[str, str], deadline: float) -> None:
        data = json.dumps(body).encode()
        while True:
            request = urllib.request.Request(
                self.rest_url + path,
                data=data,
                method="PUT",
                headers={"Content-Type": "application/json"},
            )
            try:
                with urllib.request.urlopen(request, timeout=30):
                    return
            except urllib.error.HTTPError as exc:
                # 409: the worker is still joining its group or rebalancing; try again.
                if exc.code != 409 or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PUT {path}: {exc.code} {exc.read()[:500]!r}\n{self.log_tail()}"
                    ) from None
            time.sleep(0.5)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """A clean stop (SIGTERM): tasks stop and their offsets are committed; after
        ``timeout`` a SIGKILL (offsets are flushed every second, so little is lost)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.proc = None
        _RUNNING.discard(self)
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> ConnectWorker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


__all__ = [
    "ConnectMissing",
    "ConnectWorker",
    "classpath",
    "installation",
    "java_executable",
    "connect_libs_dir",
    "file_sink",
    "file_source",
    "libs_dir",
    "read_properties",
    "stop_all",
]
