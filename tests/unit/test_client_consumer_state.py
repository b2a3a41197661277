"""Consumer logic without sockets: subscription state and the fetcher's decoding."""

import json

import pytest

from labkit.client.fetcher import Fetcher
from labkit.client.structs import ConsumerRecord, TopicPartition
from labkit.client.subscription import ConsumerRebalanceListener, SubscriptionState
from labkit.errors import CorruptRecordError, IllegalStateError, OffsetOutOfRangeError
from labkit.protocol.records import encode_batch, with_base_offset

TP = TopicPartition("t", 0)


class Recorder(ConsumerRebalanceListener):
    def __init__(self):
        self.calls = []

    def on_partitions_revoked(self, revoked):
        self.calls.append(("revoked", set(revoked)))

    def on_partitions_assigned(self, assigned):
        self.calls.append(("assigned", set(assigned)))


def test_subscribe_and_assign_exclude_each_other():
    sub = SubscriptionState()
    sub.subscribe(["a"])
    with pytest.raises(IllegalStateError):
        sub.assign_from_user([TP])
    sub.unsubscribe()
    sub.assign_from_user([TP])
    with pytest.raises(IllegalStateError):
        sub.subscribe(["a"])
    with pytest.raises(ValueError, match="choose topic"):
        SubscriptionState().subscribe([])
    with pytest.raises(TypeError):
        SubscriptionState().subscribe(["a"], listener=object())


def test_listener_and_hooks_see_assignment_changes():
    sub = SubscriptionState()
    listener = Recorder()
    hooks = []
    sub.add_assignment_hook(lambda revoked, added: hooks.append((revoked, added)))
    sub.subscribe(["t"], listener=listener)
    a, b = TopicPartition("t", 0), TopicPartition("t", 1)
    sub.assign_from_subscribed([a, b])
    sub.assign_from_subscribed([b])
    assert listener.calls == [("assigned", {a, b}), ("revoked", {a}), ("assigned", {b})]
    assert hooks == [(set(), {a, b}), ({a}, set())]


def test_seek_and_reset_bump_the_epoch():
    sub = SubscriptionState()
    sub.assign_from_user([TP])
    st = sub.state(TP)
    assert sub.missing_positions() == [TP]
    st.seek(5)
    assert st.position == 5
    assert st.epoch == 1
    assert sub.missing_positions() == []
    st.request_reset("earliest")
    assert st.position is None
    assert st.reset_strategy == "earliest"
    assert st.epoch == 2
    with pytest.raises(IllegalStateError):
        sub.state(TopicPartition("other", 0))


def test_pattern_subscription_matches_topics():
    sub = SubscriptionState()
    sub.subscribe(pattern=r"sensor-.*")
    assert sub.matches("sensor-1")
    assert not sub.matches("other")
    assert sub.change_subscription(["sensor-1"])
    assert not sub.change_subscription(["sensor-1"])


def fetcher(sub, **overrides):
    config = {
        "fetch_max_wait_ms": 500,
        "fetch_min_bytes": 1,
        "fetch_max_bytes": 1 << 20,
        "max_partition_fetch_bytes": 1 << 20,
        "check_crcs": True,
        "key_deserializer": None,
        "value_deserializer": None,
        "auto_offset_reset": "latest",
        "max_poll_records": 500,
        "request_timeout_ms": 30000,
    }
    config.update(overrides)
    return Fetcher(None, sub, config)


def payload():
    first = with_base_offset(
        encode_batch([100, 101, 102], [b"k0", None, b"k2"], [b'{"n": 0}', b'{"n": 1}', None]), 10
    )
    second = with_base_offset(encode_batch([103], None, [b'{"n": 3}'], headers=[[("h", b"v")]]), 13)
    return first + second


def test_decode_skips_records_before_the_fetch_offset():
    records, next_offset, poison = fetcher(SubscriptionState())._decode(TP, payload(), 11)
    assert next_offset == 14
    assert poison is None
    assert [r.offset for r in records] == [11, 12, 13]
    assert all(isinstance(r, ConsumerRecord) for r in records)
    r11, r12, r13 = records
    assert (r11.key, r11.value, r11.serialized_key_size, r11.serialized_value_size) == (
        None,
        b'{"n": 1}',
        -1,
        8,
    )
    assert (r12.value, r12.serialized_value_size, r12.timestamp) == (None, -1, 102)
    assert r13.headers == [("h", b"v")]
    assert r13.serialized_header_size == 2
    assert r11.headers == []
    assert r11.serialized_header_size == -1
    assert (r11.topic, r11.partition, r11.leader_epoch, r11.timestamp_type, r11.checksum) == (
        "t",
        0,
        -1,
        0,
        None,
    )


def test_deserializers_skip_none():
    f = fetcher(
        SubscriptionState(),
        value_deserializer=lambda b: json.loads(b.decode()),
        key_deserializer=bytes.decode,
    )
    records, _, _ = f._decode(TP, payload(), 10)
    assert [r.value for r in records] == [{"n": 0}, {"n": 1}, None, {"n": 3}]
    assert [r.key for r in records] == ["k0", None, "k2", None]


def test_decoding_stops_at_a_record_a_deserializer_raises_on():
    def value(b):
        if b == b'{"n": 3}':
            raise ValueError("bad value")
        return json.loads(b)

    records, next_offset, poison = fetcher(SubscriptionState(), value_deserializer=value)._decode(
        TP, payload(), 11
    )
    assert [r.offset for r in records] == [11, 12]
    assert next_offset == 13
    assert poison[0] == 13
    assert isinstance(poison[1], ValueError)
    assert poison[2] == "value"

    def key(b):
        if b == b"k2":
            raise UnicodeError("bad key")
        return b.decode()

    records, next_offset, poison = fetcher(
        SubscriptionState(), key_deserializer=key, value_deserializer=value
    )._decode(TP, payload(), 11)
    assert [(r.offset, r.key, r.value) for r in records] == [(11, None, {"n": 1})]
    assert next_offset == 12
    assert poison[0] == 12
    assert poison[2] == "key"


def test_corrupt_batch_is_detected_when_checking_crcs():
    data = bytearray(payload())
    data[60] ^= 0xFF  # a timestamp of the first batch: only the CRC can tell
    records, next_offset, poison = fetcher(SubscriptionState())._decode(TP, bytes(data), 10)
    assert records == []
    assert next_offset == 10
    offset, error, what = poison
    assert (offset, what) == (10, "batch")
    assert isinstance(error, CorruptRecordError)
    assert error.next_offset == 13
    assert "topic 't' partition 0" in str(error)
    records, _, poison = fetcher(SubscriptionState(), check_crcs=False)._decode(TP, bytes(data), 10)
    assert poison is None
    assert len(records) == 4


def test_a_partition_the_broker_cannot_read_raises_a_corrupt_record_error_saying_where():
    sub = SubscriptionState()
    sub.assign_from_user([TP])
    sub.state(TP).seek(10)
    f = fetcher(sub)
    with pytest.raises(CorruptRecordError, match=r"partition 0 at offset 10") as info:
        f._handle_partition(TP, sub.state(TP).epoch, 10, ["t", 0, 2, 14, 0], b"")
    assert (info.value.topic_partition, info.value.offset, info.value.next_offset) == (TP, 10, 11)


def test_fetched_records_respect_max_records_and_move_positions():
    sub = SubscriptionState()
    sub.assign_from_user([TP])
    sub.state(TP).seek(10)
    f = fetcher(sub)
    f._handle_partition(TP, sub.state(TP).epoch, 10, ["t", 0, 0, 14, 10], payload())
    got = f.fetched_records(3)
    assert [r.offset for r in got[TP]] == [10, 11, 12]
    assert sub.state(TP).position == 13
    got = f.fetched_records(3, update_offsets=False)
    assert [r.offset for r in got[TP]] == [13]
    assert sub.state(TP).position == 13
    assert sub.state(TP).highwater == 14


def test_stale_fetch_data_is_dropped_after_a_seek():
    sub = SubscriptionState()
    sub.assign_from_user([TP])
    sub.state(TP).seek(10)
    f = fetcher(sub)
    epoch = sub.state(TP).epoch
    sub.state(TP).seek(12)
    f._handle_partition(TP, epoch, 10, ["t", 0, 0, 14, 10], payload())
    assert f.fetched_records(10) == {}


def test_out_of_range_resets_by_policy_or_raises():
    sub = SubscriptionState()
    sub.assign_from_user([TP])
    sub.state(TP).seek(99)
    fetcher(sub, auto_offset_reset="earliest")._handle_partition(
        TP, sub.state(TP).epoch, 99, ["t", 0, 1, 14, 10], b""
    )
    assert sub.state(TP).position is None
    assert sub.state(TP).reset_strategy == "earliest"
    sub.state(TP).seek(99)
    with pytest.raises(OffsetOutOfRangeError):
        fetcher(sub, auto_offset_reset="none")._handle_partition(
            TP, sub.state(TP).epoch, 99, ["t", 0, 1, 14, 10], b""
        )
