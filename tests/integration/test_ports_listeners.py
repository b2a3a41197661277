"""Issue 13, items 4 and 5: Kafka's protocol on the broker's main port, ZeroMQ on its own;
Kafka's listeners / advertised.listeners; labkit's client bootstrapping over the Kafka
port (a labkit-only request), given the ZeroMQ port directly, or an old layout."""

from __future__ import annotations

import struct
import subprocess
import sys
import time

import pytest
from kafka import KafkaAdminClient as KafkaPythonAdmin

from labkit import KafkaAdminClient, KafkaConsumer, KafkaProducer, NewTopic, NoBrokersAvailable
from labkit.protocol import bootstrap as wire
from labkit.testing import BrokerProcess
from labkit.testing.broker import free_port
from tests.raw_connections import scripted_server

pytestmark = pytest.mark.usefixtures("kafka_python_garbage")


def advertised(admin: KafkaPythonAdmin) -> tuple[str, int]:
    (broker,) = admin.describe_cluster()["brokers"]
    return broker["host"], broker["port"]


def test_kafka_python_and_labkit_both_use_the_main_port(shared_broker, unique_topic):
    kafka = KafkaPythonAdmin(bootstrap_servers=shared_broker.bootstrap)
    try:
        assert advertised(kafka) == ("127.0.0.1", shared_broker.port)
        with KafkaAdminClient(bootstrap_servers=shared_broker.bootstrap) as admin:
            assert admin._transport.zmq_address == shared_broker.zmq_bootstrap
            admin.create_topics([NewTopic(unique_topic, 2, 1)])
        assert unique_topic in kafka.list_topics()  # one broker, whichever protocol made it
    finally:
        kafka.close()
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap) as producer:
        producer.send(unique_topic, b"over ZeroMQ", partition=0).get(timeout=30)
    with KafkaConsumer(
        unique_topic,
        bootstrap_servers=shared_broker.bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=10_000,
    ) as consumer:
        assert next(iter(consumer)).value == b"over ZeroMQ"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_same_bootstrap_strings_as_before_work(shared_broker, host):
    with KafkaAdminClient(bootstrap_servers=f"{host}:{shared_broker.port}") as admin:
        assert isinstance(admin.list_topics(), list)
        # not advertised explicitly: ZeroMQ on the host the client dialled (port mappings)
        assert admin._transport.zmq_address == f"{host}:{shared_broker.zmq_port}"


def test_a_labkit_client_given_the_zeromq_port_uses_it_directly(shared_broker):
    """The client sees the ZMTP greeting (the server writes it first) and skips the
    Kafka request. On the wire this is also the old layout (a broker from before this
    change: ZeroMQ on 9092, nothing else there)."""
    with KafkaAdminClient(bootstrap_servers=shared_broker.zmq_bootstrap) as admin:
        assert admin._transport.zmq_address == shared_broker.zmq_bootstrap
        assert isinstance(admin.list_topics(), list)


def test_two_listeners_each_advertise_their_own_address(tmp_path):
    """Kafka's rule: Metadata names the advertised address of the listener the client
    came in on. INSIDE is advertised as 127.0.0.1, OUTSIDE as localhost."""
    inside, outside = free_port(), free_port()
    config = {
        "listeners": f"INSIDE://127.0.0.1:{inside},OUTSIDE://127.0.0.1:{outside}",
        "advertised.listeners": f"INSIDE://127.0.0.1:{inside},OUTSIDE://localhost:{outside}",
        "listener.security.protocol.map": "INSIDE:PLAINTEXT,OUTSIDE:PLAINTEXT",
    }
    # port=inside: where the fixture waits for the broker (listeners replace --port)
    with BrokerProcess(data_dir=tmp_path / "d", port=inside, config=config) as proc:
        assert f"INSIDE://127.0.0.1:{inside}" in proc.output()
        assert f"OUTSIDE://127.0.0.1:{outside} (advertised as localhost:{outside})" in (
            proc.output()
        )
        for port, expected in ((inside, ("127.0.0.1", inside)), (outside, ("localhost", outside))):
            admin = KafkaPythonAdmin(bootstrap_servers=f"127.0.0.1:{port}")
            try:
                assert advertised(admin) == expected
                assert isinstance(admin.list_topics(), list)
            finally:
                admin.close()
        # labkit's client: an advertised host is where its ZeroMQ endpoint is too
        with KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{outside}") as admin:
            assert admin._transport.zmq_address == f"localhost:{proc.zmq_port}"
        with KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{inside}") as admin:
            assert admin._transport.zmq_address == f"127.0.0.1:{proc.zmq_port}"
            # labkit's own metadata names the first listener's advertised address
            assert admin.describe_cluster()["brokers"][0]["port"] == inside


@pytest.mark.parametrize(
    "flags",
    [
        ["--listeners", "SSL://127.0.0.1:0"],
        [
            "--listeners",
            "INSIDE://127.0.0.1:0",
            "--config",
            "listener.security.protocol.map=INSIDE:SASL_SSL",
        ],
    ],
)
def test_ssl_and_sasl_listeners_are_refused_with_a_clear_error(tmp_path, flags):
    result = subprocess.run(
        [sys.executable, "-m", "labkit.broker", "--data-dir", str(tmp_path / "d"), *flags],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "labkit speaks only PLAINTEXT (no TLS, no SASL" in result.stderr


def test_a_bootstrap_answer_pointing_nowhere_says_what_was_tried():
    dead = free_port()
    answer = wire.encode_response(
        0x4C4B, 0, {"broker": "labkit", "zmq_host": None, "zmq_port": dead}
    )
    with scripted_server(answer) as address:
        started = time.monotonic()
        with pytest.raises(NoBrokersAvailable) as info:
            KafkaAdminClient(bootstrap_servers=address, request_timeout_ms=180_000)
        assert time.monotonic() - started < 60  # a refusal is quick, not request_timeout_ms
    message = str(info.value)
    assert f"{address} answered labkit's bootstrap request (ZeroMQ at 127.0.0.1:{dead})" in message
    assert f"127.0.0.1:{dead} refused the connection" in message


def test_a_kafka_port_that_hangs_up_on_labkits_request_is_reported():
    """What Apache Kafka does with an API key it does not know: close the connection."""
    with scripted_server(None) as address, pytest.raises(NoBrokersAvailable) as info:
        KafkaAdminClient(bootstrap_servers=address, request_timeout_ms=180_000)
    assert f"{address} accepted the connection but does not speak labkit's protocol" in str(
        info.value
    )


def test_a_newer_broker_refusing_the_request_version_is_reported():
    answer = wire.encode_response(0x4C4B, 7, {"broker": "labkit"})  # 7: not known -> error 35
    assert struct.unpack_from(">h", answer, 8)[0] == wire.UNSUPPORTED_VERSION
    refused = pytest.raises(NoBrokersAvailable, match="refused this client's bootstrap request")
    with scripted_server(answer) as address, refused:
        KafkaAdminClient(bootstrap_servers=address, request_timeout_ms=10_000)
