"""The broker's idempotence without sockets: produce's producers rows through the real
handlers and a real TopicRegistry, producer.id.expiration.ms with the FakeClock, and
the producer id blocks."""

from __future__ import annotations

import time

import pytest

from labkit.broker import producer_ids
from labkit.broker.config import BrokerConfig
from labkit.broker.handlers import Handlers
from labkit.broker.producer_ids import BLOCK_SIZE, ProducerIds, reserve_block
from labkit.broker.topics import TopicRegistry
from labkit.errors import CoordinatorLoadInProgressError
from labkit.protocol.records import encode_batch
from labkit.testing import FakeClock


@pytest.fixture
def broker(tmp_path):
    config = BrokerConfig.build(
        port=9092,
        data_dir=tmp_path,
        overrides={
            "producer.id.expiration.ms": "60000",
            "producer.id.expiration.check.interval.ms": "1000",
        },
    )
    clock = FakeClock()
    registry = TopicRegistry(config.data_dir, config.log_defaults, clock, 1).open()
    yield Handlers(registry, config, clock), clock
    registry.close()


def produce(handlers, clock, sequence, values=(b"v",), producer_id=9):
    batch = encode_batch([clock.time_ms()] * len(values), None, list(values))
    header = {"acks": 1, "targets": [["t", 0]], "producers": [[producer_id, 0, sequence]]}
    return handlers.handle("produce", header, [batch]).header["results"][0][:2]


def test_a_retry_is_answered_with_its_offset_and_appended_once(broker):
    handlers, clock = broker
    assert produce(handlers, clock, 0, (b"a", b"b")) == [0, 0]
    assert produce(handlers, clock, 0, (b"a", b"b")) == [0, 0]
    assert produce(handlers, clock, 2) == [2, 0]
    assert handlers.registry.partition("t", 0).log_end_offset == 3


def test_idle_producers_expire_after_producer_id_expiration_ms(broker):
    handlers, clock = broker
    produce(handlers, clock, 0)
    clock.advance(59)
    assert produce(handlers, clock, 5) == [-1, 45]  # still known: a gap
    assert produce(handlers, clock, 1) == [1, 0]  # and it was active just now
    clock.advance(61)
    # forgotten: unknown producers are accepted at any sequence (Kafka 3.x/4.x)
    assert produce(handlers, clock, 5) == [2, 0]


def test_a_plain_produce_is_never_checked(broker):
    handlers, clock = broker
    batch = encode_batch([clock.time_ms()], None, [b"x"])
    for _ in range(2):
        header = handlers.handle("produce", {"acks": 1, "targets": [["t", 0]]}, [batch]).header
        assert header["results"][0][1] == 0
    assert handlers.registry.partition("t", 0).producers is None  # no state, no files


def test_blocks_of_ids_never_repeat_across_restarts(tmp_path):
    assert reserve_block(tmp_path) == 0
    assert reserve_block(tmp_path) == BLOCK_SIZE  # a restarted broker takes the next block
    assert (tmp_path / producer_ids.CHECKPOINT).read_text() == f"{2 * BLOCK_SIZE}\n"


def test_ids_come_from_reserved_blocks_and_a_missing_block_is_retriable(tmp_path, monkeypatch):
    ids = ProducerIds(tmp_path)
    with pytest.raises(CoordinatorLoadInProgressError, match="retry in a moment"):
        ids.next_id()  # no block yet: the first reservation starts now
    assert ids.wait_reserved()
    handed = [ids.next_id() for _ in range(BLOCK_SIZE)]
    assert handed == list(range(BLOCK_SIZE))
    assert ids.wait_reserved()  # the next block was reserved at half the first
    assert ids.next_id() == BLOCK_SIZE
    (tmp_path / producer_ids.CHECKPOINT).write_text("garbage\n")
    monkeypatch.setattr(producer_ids, "BLOCK_SIZE", 2)
    broken = ProducerIds(tmp_path)
    broken.start()
    deadline = time.monotonic() + 10  # generous: the reservation thread fails at once
    while broken.error is None and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(CoordinatorLoadInProgressError, match="not a producer id"):
        broken.next_id()


def test_producers_that_expired_while_the_broker_was_down_are_forgotten_on_load(tmp_path):
    config = BrokerConfig.build(
        port=9092, data_dir=tmp_path, overrides={"producer.id.expiration.ms": "60000"}
    )
    clock = FakeClock()
    registry = TopicRegistry(config.data_dir, config.log_defaults, clock, 1).open()
    produce(Handlers(registry, config, clock), clock, 0)
    registry.close()
    clock.advance(120)  # the broker was down for two minutes
    registry = TopicRegistry(config.data_dir, config.log_defaults, clock, 1).open()
    try:
        handlers = Handlers(registry, config, clock)
        assert produce(handlers, clock, 7) == [1, 0]  # unknown now: any sequence
    finally:
        registry.close()
