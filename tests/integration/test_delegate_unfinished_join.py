"""kafka-python 3.0.12 loses a join round that ends between two polls (labkit/client/
delegate.py, module docstring): a group consumer that joined before its topic existed
(the first rebalance assigns nothing), then sees the topic appear, rebalances while its
short polls time out, and never applies the new assignment: it reads nothing, for good.
Seen in CI as notebook 10's scorer reading nothing for 30 s on Apache Kafka. labkit's
DelegatingConsumer keeps such a round wanted until applied. Over the labkit broker's
Kafka port, whose group coordinator answers as Kafka's (the bug is in the client)."""

from __future__ import annotations

import time

import pytest

kafka = pytest.importorskip("kafka")

from labkit import KafkaConsumer  # noqa: E402
from labkit.client.delegate import DelegatingConsumer  # noqa: E402
from labkit.testing.broker import BrokerProcess  # noqa: E402

pytestmark = [pytest.mark.usefixtures("kafka_python_garbage"), pytest.mark.timeout(120)]
RECORDS = 30


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    config = {"auto.create.topics.enable": "false"}  # the topic appears only when created
    with BrokerProcess(data_dir=tmp_path_factory.mktemp("join"), config=config) as proc:
        yield proc


def _topic_appears_with_records(bootstrap: str, topic: str) -> None:
    admin = kafka.KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([kafka.admin.NewTopic(topic, 3, 1)])
    finally:
        admin.close()
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(RECORDS):
        producer.send(topic, b"%d" % i)
    producer.flush()
    producer.close()


@pytest.mark.parametrize("reading", ["poll", "iterator"])
def test_a_rebalance_that_ends_between_short_polls_is_applied(broker, reading):
    topic = f"appears-later-{reading}"
    consumer = DelegatingConsumer(
        KafkaConsumer,
        topic,
        bootstrap_servers=broker.bootstrap,
        group_id=f"late-{reading}",
        auto_offset_reset="earliest",
        metadata_max_age_ms=300,  # sees the new topic soon
        consumer_timeout_ms=5,
    )
    try:
        for _ in range(30):  # joins: no partitions to own yet
            consumer.poll(timeout_ms=10)
        _topic_appears_with_records(broker.bootstrap, topic)
        got, deadline = 0, time.monotonic() + 20
        while got < RECORDS and time.monotonic() < deadline:
            if reading == "poll":  # each poll ends before the rebalance's SyncGroup
                got += sum(len(batch) for batch in consumer.poll(timeout_ms=1).values())
            else:
                got += sum(1 for _ in consumer)  # consumer_timeout_ms=5: its polls are short too
        assert got == RECORDS, f"read {got}; owns {sorted(consumer.assignment())}"
        assert len(consumer.assignment()) == 3
    finally:
        consumer.close()
