"""The Kafka ecosystem's real engines (Spark, Kafka Connect, quixstreams) against two
targets: Apache Kafka itself (the reference, which proves the harness) and labkit's
Kafka listener. Its own folder because every module here starts Java or needs the
``streams`` extra and takes a minute or more (``pytest tests/ecosystem``).

``kafka_target`` (module scope, parametrized): ``.name``, ``.bootstrap`` (for Kafka
clients) and ``.require(engine, apis)``: on labkit it FAILS the test (never skips) when
the listener does not advertise an API the engine needs, naming the missing APIs.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

import pytest

from labkit.testing import BrokerProcess
from labkit.testing.broker import free_port

# Kafka API keys and names the engines here use (Kafka's protocol guide).
API_NAMES = {
    0: "Produce",
    1: "Fetch",
    2: "ListOffsets",
    3: "Metadata",
    8: "OffsetCommit",
    9: "OffsetFetch",
    10: "FindCoordinator",
    11: "JoinGroup",
    12: "Heartbeat",
    13: "LeaveGroup",
    14: "SyncGroup",
    19: "CreateTopics",
    22: "InitProducerId",
    32: "DescribeConfigs",
    60: "DescribeCluster",
}


def advertised_apis(bootstrap: str) -> set[int]:
    """The API keys a Kafka broker advertises in its ApiVersions v0 answer."""
    host, _, port = bootstrap.rpartition(":")
    body = struct.pack(">hhih", 18, 0, 1, 6) + b"labkit"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", _read(sock, 4))[0]
        answer = _read(sock, size)
    _correlation, error, count = struct.unpack_from(">ihi", answer)
    if error:
        raise RuntimeError(f"ApiVersions v0 answered error {error}")
    return {struct.unpack_from(">h", answer, 10 + 6 * i)[0] for i in range(count)}


def _read(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data


@dataclass
class KafkaTarget:
    name: str
    bootstrap: str
    broker: object = field(default=None, repr=False)

    def require(self, engine: str, apis: list[int]) -> None:
        """Fail (not skip) naming the APIs ``engine`` needs that the target lacks."""
        missing = sorted(set(apis) - advertised_apis(self.bootstrap))
        if missing:
            names = ", ".join(f"{API_NAMES.get(k, k)} ({k})" for k in missing)
            pytest.fail(
                f"{self.name}'s Kafka listener does not answer {names} yet, which {engine} "
                "needs (issue 13)",
                pytrace=False,
            )


def _labkit_broker(data_dir) -> tuple[BrokerProcess, str]:
    """A labkit broker speaking Kafka: on its main port once the listener moved there
    (issue 13's ports: the fixture has ``zmq_bootstrap``), else on an opt-in ``kafka.port``."""
    if hasattr(BrokerProcess, "zmq_bootstrap"):
        broker = BrokerProcess(data_dir=data_dir)
        return broker, broker.bootstrap
    port = free_port()
    return BrokerProcess(data_dir=data_dir, config={"kafka.port": str(port)}), f"127.0.0.1:{port}"


@pytest.fixture(scope="module", params=["apache-kafka", "labkit"])
def kafka_target(request, tmp_path_factory):
    if request.param == "apache-kafka":
        kafka = request.getfixturevalue("apache_kafka")
        yield KafkaTarget("Apache Kafka", kafka.bootstrap, kafka)
        return
    broker, bootstrap = _labkit_broker(tmp_path_factory.mktemp("labkit-ecosystem"))
    with broker:
        yield KafkaTarget("labkit", bootstrap, broker)
