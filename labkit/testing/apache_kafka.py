"""Apache Kafka itself, for tests and benchmarks: a one-node KRaft broker, a small KRaft
cluster (``ApacheKafkaCluster``: one controller, three brokers) and Kafka's tools.

The jars come from Maven Central through ``make apache-kafka`` (tools/apache-kafka/pom.xml)
into ``.cache/apache-kafka/<version>/libs`` -- git-ignored, never shipped. Nothing here is
used by labkit at run time: Apache Kafka is the reference the tests compare labkit with
(the same scenario gives the same answers) and the top anchor of the benchmarks.

``ApacheKafka`` is a context manager like ``BrokerProcess``::

    with ApacheKafka() as kafka:
        KafkaProducer(bootstrap_servers=kafka.bootstrap)...
        kafka.tool("kafka-topics.sh", "--list")   # Kafka's own TopicCommand

    with ApacheKafkaCluster() as cluster:         # one controller + brokers 1, 2, 3
        Producer({"bootstrap.servers": cluster.bootstrap, "acks": "all"})...

It formats a temporary data directory (one node as broker and controller, cluster id
fixed), starts ``kafka.Kafka`` on two free ports (PLAINTEXT and CONTROLLER) with Kafka's
defaults except what one node needs (replication factors of internal topics = 1, no
initial rebalance delay), and waits until the PLAINTEXT port accepts connections and a
metadata request through Kafka's own admin tool answers.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from labkit.launch.kafka_jars import (
    CACHE_ENV,
    ROOT,
    VERSION,
    ApacheKafkaMissing,
    libs_dir,
    require,
)
from labkit.launch.lifeline import spawn
from labkit.launch.ports import free_port

__all__ = [
    "CACHE_ENV",
    "ROOT",
    "VERSION",
    "ApacheKafka",
    "ApacheKafkaCluster",
    "ApacheKafkaMissing",
    "libs_dir",
    "require",
    "run_tool",
]

START_TIMEOUT_S = 90.0
CLUSTER_ID = "bGFia2l0LXRlc3RzLTAwMQ"  # any 22-char base64 UUID; fixed so runs compare

# Kafka's shell scripts -> the main class they run (Kafka 4.x).
TOOLS = {
    "kafka-topics.sh": "org.apache.kafka.tools.TopicCommand",
    "kafka-console-producer.sh": "org.apache.kafka.tools.ConsoleProducer",
    "kafka-producer-perf-test.sh": "org.apache.kafka.tools.ProducerPerformance",
    "kafka-console-consumer.sh": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "kafka-consumer-groups.sh": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "kafka-configs.sh": "kafka.admin.ConfigCommand",
    "kafka-get-offsets.sh": "org.apache.kafka.tools.GetOffsetShell",
    "kafka-delete-records.sh": "org.apache.kafka.tools.DeleteRecordsCommand",
    "kafka-storage.sh": "kafka.tools.StorageTool",
}


def java_command(main_class: str, *args: str, heap: str = "256m") -> list[str]:
    return [
        "java",
        f"-Xmx{heap}",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",  # the tools are short-lived: skip the C2 compiler
        "-cp",
        str(require() / "*"),
        main_class,
        *args,
    ]


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def format_storage(props: Path, cluster_id: str = CLUSTER_ID) -> None:
    """``kafka-storage.sh format``: every KRaft node's log directory needs it once."""
    subprocess.run(
        java_command("kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)),
        check=True,
        capture_output=True,
        timeout=120,
    )


def spawn_node(owner: object, props: Path, heap: str, log) -> subprocess.Popen:
    """Start ``kafka.Kafka`` on ``props`` (output into the open file ``log``) in a
    session of its own, so ``stop_node`` can end the JVM and anything it started. The JVM
    dies with ``owner`` and with this process, even a killed one (labkit/launch/lifeline.py)."""
    return spawn(
        owner,
        ["java", f"-Xmx{heap}", "-cp", str(require() / "*"), "kafka.Kafka", str(props)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def wait_for_port(proc: subprocess.Popen, port: int, log_path: Path) -> None:
    """Until ``port`` accepts connections; RuntimeError with the log's tail if the node
    exits or ``START_TIMEOUT_S`` passes first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _port_open(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            output = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"Apache Kafka did not start:\n{output}")
        time.sleep(0.2)


def stop_node(proc: subprocess.Popen | None) -> None:
    """SIGTERM (Kafka's controlled shutdown), SIGKILL after 30 s."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


class ApacheKafka:
    """A one-node KRaft Apache Kafka on free local ports with temporary data."""

    def __init__(self, config: dict[str, str] | None = None, heap: str = "1g"):
        self.config = dict(config or {})
        self.heap = heap
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _properties(self, data: Path, controller_port: int) -> str:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.voters": f"1@127.0.0.1:{controller_port}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},"
            f"CONTROLLER://127.0.0.1:{controller_port}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(data / "log"),
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            **self.config,
        }
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def start(self) -> ApacheKafka:
        require()
        self._tmp = tempfile.TemporaryDirectory(prefix="apache-kafka-")
        data = Path(self._tmp.name)
        self.port, controller = free_port(), free_port()
        props = data / "server.properties"
        props.write_text(self._properties(data, controller), encoding="utf-8")
        formatting = time.monotonic()
        format_storage(props)
        self.format_seconds = time.monotonic() - formatting  # benchmarks report it apart
        self._log = open(data / "kafka.out", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = spawn_node(self, props, self.heap, self._log)
        try:
            wait_for_port(self.proc, self.port, data / "kafka.out")
        except RuntimeError:
            self.stop()
            raise
        return self

    def tool(self, script: str, *args: str, timeout: float = 120.0, input: str | None = None):
        """Run one of Kafka's tools (by its script name) against this broker."""
        return run_tool(
            script, "--bootstrap-server", self.bootstrap, *args, timeout=timeout, input=input
        )

    def stop(self) -> None:
        stop_node(self.proc)
        self.proc = None
        if getattr(self, "_log", None) is not None:
            self._log.close()
            self._log = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ApacheKafka:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def run_tool(script: str, *args: str, timeout: float = 120.0, input: str | None = None):
    """Run Apache Kafka's tool ``script`` (e.g. ``kafka-topics.sh``) with ``args``;
    returns the ``CompletedProcess`` (text, stdout and stderr captured)."""
    try:
        main_class = TOOLS[script]
    except KeyError:
        raise ValueError(f"unknown Kafka tool {script!r}; known: {', '.join(TOOLS)}") from None
    return subprocess.run(
        java_command(main_class, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


class ApacheKafkaCluster:
    """Apache Kafka as a cluster on loopback: one controller-only KRaft node and
    ``brokers`` broker-only nodes (ids 1..n), each a JVM of its own with temporary data.

    One controller rather than three combined nodes: it is the layout of labkit's cluster
    mode (one ZooKeeper holding the metadata, brokers doing only the data), so a benchmark
    compares like with like, and the brokers do not also replicate a Raft log on a machine
    of two CPUs. Heaps are small (brokers 512 MB, controller 256 MB): four JVMs fit beside
    the rest. Open ports do not mean a broker is unfenced yet: callers that create a topic
    with replication factor n retry INVALID_REPLICATION_FACTOR for a few seconds.
    """

    CONTROLLER_ID = 100

    def __init__(
        self,
        brokers: int = 3,
        config: dict[str, str] | None = None,
        heap: str = "512m",
        controller_heap: str = "256m",
    ):
        self.size = brokers
        self.config = dict(config or {})
        self.heap = heap
        self.controller_heap = controller_heap
        self.ports: dict[int, int] = {}
        self.procs: dict[int, subprocess.Popen] = {}  # node id -> JVM (the controller too)
        self._logs: list = []
        self._tmp: tempfile.TemporaryDirectory | None = None

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports.values())

    def _properties(self, node_id: int, data: Path, controller_port: int) -> str:
        controller = node_id == self.CONTROLLER_ID
        props = {
            "process.roles": "controller" if controller else "broker",
            "node.id": str(node_id),
            "controller.quorum.voters": f"{self.CONTROLLER_ID}@127.0.0.1:{controller_port}",
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(data / f"log-{node_id}"),
            "group.initial.rebalance.delay.ms": "0",
        }
        if controller:
            props["listeners"] = f"CONTROLLER://127.0.0.1:{controller_port}"
        else:
            port = self.ports[node_id]
            props["listeners"] = f"PLAINTEXT://127.0.0.1:{port}"
            props["advertised.listeners"] = f"PLAINTEXT://127.0.0.1:{port}"
            props["inter.broker.listener.name"] = "PLAINTEXT"
        props.update(self.config)
        return "".join(f"{k}={v}\n" for k, v in props.items())

    def start(self) -> ApacheKafkaCluster:
        require()
        self._tmp = tempfile.TemporaryDirectory(prefix="apache-kafka-cluster-")
        data = Path(self._tmp.name)
        controller_port = free_port()
        self.ports = {node_id: free_port() for node_id in range(1, self.size + 1)}
        files = {}
        for node_id in [self.CONTROLLER_ID, *self.ports]:
            files[node_id] = data / f"node-{node_id}.properties"
            files[node_id].write_text(
                self._properties(node_id, data, controller_port), encoding="utf-8"
            )
        try:
            # four JVMs side by side rather than in turn: start-up is mostly JVM warm-up
            with ThreadPoolExecutor(len(files)) as pool:
                list(pool.map(format_storage, files.values()))
            order = {self.CONTROLLER_ID: controller_port, **self.ports}
            for node_id in order:
                self._logs.append(open(data / f"node-{node_id}.out", "wb"))  # noqa: SIM115
                heap = self.controller_heap if node_id == self.CONTROLLER_ID else self.heap
                self.procs[node_id] = spawn_node(self, files[node_id], heap, self._logs[-1])
            for node_id, port in order.items():
                wait_for_port(self.procs[node_id], port, data / f"node-{node_id}.out")
        except BaseException:
            self.stop()
            raise
        return self

    def tool(self, script: str, *args: str, timeout: float = 120.0, input: str | None = None):
        """Run one of Kafka's tools (by its script name) against this cluster."""
        return run_tool(
            script, "--bootstrap-server", self.bootstrap, *args, timeout=timeout, input=input
        )

    def stop(self) -> None:
        # brokers first (controlled shutdown needs the controller), the controller last
        for node_id in sorted(self.procs, key=lambda n: n == self.CONTROLLER_ID):
            stop_node(self.procs[node_id])
        self.procs = {}
        for log in self._logs:
            log.close()
        self._logs = []
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ApacheKafkaCluster:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
