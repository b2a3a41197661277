"""The broker's replica APIs without sockets: fetch with replica_id, consumers bounded by
the high watermark, offsets_for_leader_epoch."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from labkit.broker.config import BrokerConfig
from labkit.broker.handlers import Handlers
from labkit.broker.topics import TopicRegistry
from labkit.errors import (
    FencedLeaderEpochError,
    InvalidRequestError,
    UnknownLeaderEpochError,
    UnknownTopicOrPartitionError,
)
from labkit.protocol.records import decode_batch, encode_batch, split_batches
from labkit.testing import FakeClock


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def handlers(tmp_path, clock):
    config = BrokerConfig.build(port=9092, data_dir=tmp_path, overrides={})
    registry = TopicRegistry(config.data_dir, config.log_defaults, clock, 1).open()
    handlers = Handlers(registry, config, clock)
    reply = handlers.handle("create_topics", {"topics": [{"name": "t", "num_partitions": 1}]}, [])
    assert reply.header["topics"][0]["error"] == 0, reply.header
    yield handlers
    registry.close()


def plog_of(handlers):
    return handlers.registry.partition("t", 0)


def produce(handlers, *values):
    for value in values:
        data = encode_batch([1_700_000_000_000], None, [value.encode()])
        reply = handlers.handle("produce", {"acks": 1, "targets": [["t", 0]]}, [data])
        assert reply.header["error"] == 0, reply.header


def fetch(handlers, offset, **extra):
    header = {"max_wait_ms": 0, "partitions": [["t", 0, offset, 1 << 20]], **extra}
    reply = handlers.handle("fetch", header, [])
    assert reply.header["error"] == 0, reply.header
    return reply.header["partitions"][0], reply.payloads[0]


def values_of(payload):
    out = []
    for start, _end in split_batches(payload):
        batch = decode_batch(payload, start)
        out += [(o, v.decode()) for o, v in zip(batch.offsets, batch.values, strict=True)]
    return out


def test_single_broker_consumers_read_to_the_log_end(handlers):
    produce(handlers, "a", "b", "c")
    row, payload = fetch(handlers, 0)
    assert row == ["t", 0, 0, 3, 0]  # the high watermark is the log end offset
    assert values_of(payload) == [(0, "a"), (1, "b"), (2, "c")]


def test_consumers_read_only_below_the_high_watermark(handlers):
    produce(handlers, "a", "b", "c", "d")
    plog_of(handlers).set_high_watermark(2)
    row, payload = fetch(handlers, 0)
    assert row == ["t", 0, 0, 2, 0]
    assert values_of(payload) == [(0, "a"), (1, "b")]
    assert fetch(handlers, 2) == (["t", 0, 0, 2, 0], b"")  # at the high watermark
    assert fetch(handlers, 3) == (["t", 0, 0, 2, 0], b"")  # between it and the log end
    assert fetch(handlers, 5)[0][2] == 1  # past the log end: OFFSET_OUT_OF_RANGE
    listed = handlers.handle("list_offsets", {"partitions": [["t", 0, -1]]}, [])
    assert listed.header["partitions"] == [["t", 0, 0, 2, -1]]


def test_a_replica_reads_to_the_log_end_with_the_epochs_and_is_reported(handlers, clock):
    produce(handlers, "a", "b")
    plog = plog_of(handlers)
    plog.leader_epochs.assign(0, 0)
    produce(handlers, "c")
    plog.leader_epochs.assign(3, 3)
    produce(handlers, "d")
    plog.set_high_watermark(1)
    seen = []
    handlers.on_replica_fetch = lambda *args: seen.append(args)
    row, payload = fetch(handlers, 1, replica_id=2)
    assert row == ["t", 0, 0, 1, 0, [[0, 0], [3, 3]], []]
    assert values_of(payload) == [(1, "b"), (2, "c"), (3, "d")]
    assert seen == [("t", 0, 2, 1, 4, clock.time_ms())]
    row, payload = fetch(handlers, 4, replica_id=2)  # caught up
    assert (row, payload) == (["t", 0, 0, 1, 0, [[3, 3]], []], b"")
    row, _ = fetch(handlers, 9, replica_id=2)
    assert row == ["t", 0, 1, 1, 0, [], []]  # an error row keeps the replica row's width


def produce_idempotent(handlers, value, pid, seq):
    data = encode_batch([1_700_000_000_000], None, [value.encode()])
    header = {"acks": 1, "targets": [["t", 0]], "producers": [[pid, 0, seq]]}
    reply = handlers.handle("produce", header, [data])
    assert reply.header["error"] == 0, reply.header
    return reply.header["results"][0][1]


def test_a_replica_gets_the_idempotent_producers_entries_of_its_batches(handlers, clock):
    produce(handlers, "plain")
    produce_idempotent(handlers, "a", 42, 0)
    produce_idempotent(handlers, "b", 42, 1)
    row, _payload = fetch(handlers, 2, replica_id=1)
    now = clock.time_ms()
    assert row[6] == [[42, 0, 1, 1, 2, now]]  # only the batches from the fetch offset on
    row, _payload = fetch(handlers, 0, replica_id=1)
    assert row[6] == [[42, 0, 0, 0, 1, now], [42, 0, 1, 1, 2, now]]


def test_producer_state_left_on_disk_is_loaded_for_a_replica(tmp_path, clock):
    config = BrokerConfig.build(port=9092, data_dir=tmp_path, overrides={})
    registry = TopicRegistry(config.data_dir, config.log_defaults, clock, 1).open()
    handlers = Handlers(registry, config, clock)
    handlers.handle("create_topics", {"topics": [{"name": "t", "num_partitions": 1}]}, [])
    produce_idempotent(handlers, "a", 42, 0)
    registry.close()
    registry = TopicRegistry(config.data_dir, config.log_defaults, clock, 1).open()
    handlers = Handlers(registry, config, clock)  # a restarted leader: state not loaded
    try:
        row, _payload = fetch(handlers, 0, replica_id=1)
        assert [r[:5] for r in row[6]] == [[42, 0, 0, 0, 0]]
    finally:
        registry.close()


@pytest.mark.parametrize("bad", [-2, "1", 1.5, None])
def test_a_bad_replica_id_is_refused(handlers, bad):
    header = {"max_wait_ms": 0, "partitions": [["t", 0, 0, 1024]], "replica_id": bad}
    reply = handlers.handle("fetch", header, [])
    assert reply.header["error"] == InvalidRequestError.errno
    assert "replica_id" in reply.header["message"]


def epochs(handlers, *rows):
    reply = handlers.handle("offsets_for_leader_epoch", {"partitions": list(rows)}, [])
    assert reply.header["error"] == 0, reply.header
    return reply.header["partitions"]


def test_offsets_for_leader_epoch_answers_as_kafka(handlers):
    produce(handlers, "a", "b")
    plog = plog_of(handlers)
    plog.leader_epochs.assign(1, 0)
    plog.leader_epochs.assign(4, 2)
    produce(handlers, "c")
    assert epochs(handlers, ["t", 0, -1, 1], ["t", 0, -1, 4], ["t", 0, -1, 7]) == [
        ["t", 0, 0, 1, 2],
        ["t", 0, 0, 4, 3],
        ["t", 0, 0, -1, -1],
    ]
    assert epochs(handlers, ["t", 0, 4, 2]) == [["t", 0, 0, 1, 2]]
    assert epochs(handlers, ["t", 0, 3, 2], ["t", 0, 5, 2], ["nope", 0, -1, 0]) == [
        ["t", 0, FencedLeaderEpochError.errno, -1, -1],
        ["t", 0, UnknownLeaderEpochError.errno, -1, -1],
        ["nope", 0, UnknownTopicOrPartitionError.errno, -1, -1],
    ]


def test_offsets_for_leader_epoch_without_epochs_is_undefined(handlers):
    produce(handlers, "a")
    assert epochs(handlers, ["t", 0, -1, 0]) == [["t", 0, 0, -1, -1]]


def test_offsets_for_leader_epoch_refuses_malformed_rows(handlers):
    reply = handlers.handle("offsets_for_leader_epoch", {"partitions": [["t", 0, 1]]}, [])
    assert reply.header["error"] == InvalidRequestError.errno


def test_delete_records_to_minus_one_stops_at_the_high_watermark(handlers):
    produce(handlers, "a", "b", "c", "d")
    plog_of(handlers).set_high_watermark(2)
    reply = handlers.handle("delete_records", {"partitions": [["t", 0, -1]]}, [])
    assert [list(row) for row in reply.header["partitions"]] == [["t", 0, 0, 2, None]]  # not 4
    assert fetch(handlers, 2)[0][2:] == [0, 2, 2]


def test_delete_records_past_the_high_watermark_is_out_of_range(handlers):
    produce(handlers, "a", "b", "c", "d")
    plog_of(handlers).set_high_watermark(2)
    reply = handlers.handle("delete_records", {"partitions": [["t", 0, 3]]}, [])
    ((_t, _p, error, low, message),) = reply.header["partitions"]
    assert (error, low) == (1, -1)
    assert "high watermark is 2" in message
    assert plog_of(handlers).log_start_offset == 0


def fetch_with_epoch(handlers, epoch, replica_id=-1):
    header = {
        "max_wait_ms": 0,
        "replica_id": replica_id,
        "partitions": [["t", 0, 0, 1 << 20, epoch]],
    }
    reply = handlers.handle("fetch", header, [])
    assert reply.header["error"] == 0, reply.header
    return reply.header["partitions"][0], reply.payloads[0]


def at_leader_epoch(handlers, epoch: int) -> None:
    """Make ``handlers`` a cluster-mode leader whose ZooKeeper state says ``epoch``."""
    view = SimpleNamespace(state=lambda _partition: SimpleNamespace(leader_epoch=epoch))
    handlers.cluster = SimpleNamespace(
        snapshot=SimpleNamespace(topics={"t": view}), check_leader=lambda *_a: None
    )


@pytest.mark.parametrize("replica_id", [-1, 2])
def test_a_fetch_with_a_current_leader_epoch_is_checked_as_kip_320(handlers, replica_id):
    produce(handlers, "a")
    at_leader_epoch(handlers, 3)
    for epoch, code in [(2, FencedLeaderEpochError.errno), (4, UnknownLeaderEpochError.errno)]:
        row, payload = fetch_with_epoch(handlers, epoch, replica_id)
        assert row[2] == code, row
        assert payload == b""
    for epoch in (3, -1):  # its own epoch, or no check
        row, payload = fetch_with_epoch(handlers, epoch, replica_id)
        assert row[2] == 0, row
        assert values_of(payload) == [(0, "a")]


def test_one_broker_does_not_check_the_fetch_epoch(handlers):
    # its Metadata advertises epoch 0; epochs left from cluster mode must not fence clients
    produce(handlers, "a")
    plog_of(handlers).leader_epochs.assign(3, 0)
    for epoch in (0, 7):
        row, payload = fetch_with_epoch(handlers, epoch)
        assert row[2] == 0
        assert values_of(payload) == [(0, "a")]


@pytest.mark.parametrize(
    "row", [["t", 0, 0, 1024, -2], ["t", 0, 0, 1024, "1"], ["t", 0, 0, 1024, 1, 2], ["t", 0, 0]]
)
def test_a_malformed_fetch_row_says_what_a_row_is(handlers, row):
    reply = handlers.handle("fetch", {"max_wait_ms": 0, "partitions": [row]}, [])
    assert reply.header["error"] == InvalidRequestError.errno
    assert "current_leader_epoch" in reply.header["message"]
