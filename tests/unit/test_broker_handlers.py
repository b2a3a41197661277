"""Request handlers without sockets: a real TopicRegistry in a temporary directory."""

from __future__ import annotations

import logging

import pytest

from labkit.broker.config import BrokerConfig
from labkit.broker.handlers import MAX_FETCH_PARTITIONS, Handlers
from labkit.broker.topics import TopicRegistry
from labkit.protocol.records import decode_batch, encode_batch, split_batches
from labkit.testing import FakeClock


def batch(*values, ts=1000):
    return encode_batch([ts + i for i in range(len(values))], None, list(values))


def values_of(payload):
    out = []
    for start, _end in split_batches(payload):
        out.extend(decode_batch(payload, start).values)
    return out


@pytest.fixture
def make(tmp_path):
    made = []

    def _make(**overrides):
        config = BrokerConfig.build(
            port=9092,
            data_dir=tmp_path / f"d{len(made)}",
            overrides={k: str(v) for k, v in overrides.items()},
        )
        clock = FakeClock()
        registry = TopicRegistry(
            config.data_dir, config.log_defaults, clock, config.num_partitions
        ).open()
        made.append(registry)
        return Handlers(registry, config, clock, frozenset({"join_group"}))

    yield _make
    for registry in made:
        registry.close()


@pytest.fixture
def handlers(make):
    return make()


def produce(handlers, topic, partition, payload, acks=1):
    return handlers.handle("produce", {"acks": acks, "targets": [[topic, partition]]}, [payload])


def fetch(handlers, parts, min_bytes=1, max_wait_ms=500, max_bytes=1 << 20, final=False):
    return handlers.fetch(
        {
            "max_wait_ms": max_wait_ms,
            "min_bytes": min_bytes,
            "max_bytes": max_bytes,
            "partitions": parts,
        },
        final,
    )


def test_api_versions_lists_extra_apis(handlers):
    reply = handlers.handle("api_versions", {}, [])
    assert reply.header["error"] == 0
    assert "join_group" in reply.header["apis"]
    assert "fetch" in reply.header["apis"]


def test_unknown_api_is_unsupported(handlers):
    reply = handlers.handle("frobnicate", {}, [])
    assert reply.header["error"] == 35
    assert "frobnicate" in reply.header["message"]


def test_produce_appends_and_reports_offsets(handlers):
    reply = produce(handlers, "t", 0, batch(b"a", b"b"))  # auto-created
    assert reply.header == {"error": 0, "results": [[0, 0, 0, None]]}
    assert reply.appended == [("t", 0)]
    assert not reply.silent
    assert reply.sync is None
    assert produce(handlers, "t", 0, batch(b"c")).header["results"][0][0] == 2


def test_produce_acks_zero_is_silent_and_acks_all_waits_for_sync(handlers):
    assert produce(handlers, "t", 0, batch(b"a"), acks=0).silent
    reply = produce(handlers, "t", 0, batch(b"b"), acks=-1)
    assert not reply.silent
    ((index, plog),) = reply.sync
    assert index == 0
    assert plog is handlers.registry.partition("t", 0)
    assert produce(handlers, "t", 0, batch(b"c"), acks=3).header["error"] == 21


def test_produce_per_target_errors(make):
    handlers = make(**{"message.max.bytes": 200, "auto.create.topics.enable": "false"})
    handlers.registry.create("t", 1)
    corrupt = bytearray(batch(b"x"))
    corrupt[20] ^= 1
    reply = handlers.handle(
        "produce",
        {
            "acks": 1,
            "targets": [["t", 0], ["t", 0], ["t", 1], ["nope", 0], ["t", 0], ["../x", 0], ["t", 0]],
        },
        [
            batch(b"ok"),
            bytes(corrupt),
            batch(b"x"),
            batch(b"x"),
            batch(b"y" * 300),
            batch(b"x"),
            batch(b"a") + batch(b"b"),
        ],
    )
    assert [r[1] for r in reply.header["results"]] == [0, 2, 3, 3, 10, 17, 2]
    assert reply.header["results"][0][0] == 0
    assert reply.appended == [("t", 0)]


def test_fetch_reads_whole_batches(handlers):
    produce(handlers, "t", 0, batch(b"a", b"b"))
    produce(handlers, "t", 0, batch(b"c"))
    reply = fetch(handlers, [["t", 0, 0, 1 << 20]])
    assert reply.keys is None
    assert reply.header["partitions"] == [["t", 0, 0, 3, 0]]
    assert values_of(reply.payloads[0]) == [b"a", b"b", b"c"]


def test_fetch_without_data_asks_to_park_until_final(handlers):
    produce(handlers, "t", 0, batch(b"a"))
    reply = fetch(handlers, [["t", 0, 1, 1 << 20]], max_wait_ms=700)
    assert reply.park_ms == 700
    assert reply.keys == [("t", 0)]
    assert bytes(reply.payloads[0]) == b""
    assert fetch(handlers, [["t", 0, 1, 1 << 20]], final=True).keys is None
    assert fetch(handlers, [["t", 0, 1, 1 << 20]], max_wait_ms=0).keys is None


def test_fetch_min_bytes(handlers):
    produce(handlers, "t", 0, batch(b"a"))
    assert fetch(handlers, [["t", 0, 0, 1 << 20]], min_bytes=10_000).keys == [("t", 0)]
    assert fetch(handlers, [["t", 0, 0, 1 << 20]], min_bytes=10).keys is None


def test_fetch_errors_answer_at_once(handlers):
    produce(handlers, "t", 0, batch(b"a"))
    produce(handlers, "u", 0, batch(b"b"))
    reply = fetch(handlers, [["t", 0, 5, 100], ["t", 1, 0, 100], ["u", 0, 1, 100]])
    assert reply.keys is None
    assert [row[2] for row in reply.header["partitions"]] == [1, 3, 0]
    assert fetch(handlers, [["t", "0", 0, 100]]).header["error"] == 42


def test_fetch_naming_a_partition_twice_is_invalid(handlers):
    produce(handlers, "t", 0, batch(b"a"))
    reply = fetch(handlers, [["t", 0, 0, 100], ["t", 0, 1, 100]])
    assert reply.header["error"] == 42
    assert reply.keys is None
    assert "t-0 appears more than once" in reply.header["message"]


def test_fetch_rows_are_bounded(handlers):
    rows = [["t", p, 0, 100] for p in range(MAX_FETCH_PARTITIONS + 1)]
    reply = fetch(handlers, rows)
    assert reply.header["error"] == 42
    assert f"at most {MAX_FETCH_PARTITIONS} partitions" in reply.header["message"]


def test_fetch_wait_is_bounded(handlers):
    produce(handlers, "t", 0, batch(b"a"))
    cap = handlers.config.fetch_max_wait_max_ms
    assert fetch(handlers, [["t", 0, 1, 100]], max_wait_ms=cap * 10).park_ms == cap
    too_long = fetch(handlers, [["t", 0, 1, 100]], max_wait_ms=10**15)
    assert too_long.header["error"] == 42
    assert "max_wait_ms" in too_long.header["message"]


def test_fetch_max_bytes_is_capped_by_the_broker(make):
    handlers = make(**{"fetch.max.bytes": 1024})
    for _ in range(5):
        produce(handlers, "t", 0, batch(b"x" * 500))
    reply = fetch(handlers, [["t", 0, 0, 1 << 20]], max_bytes=1 << 20)
    assert 0 < len(reply.payloads[0]) <= 2048


def test_fetch_max_bytes_is_shared_but_one_batch_always_comes(handlers):
    handlers.registry.create("t", 2)
    produce(handlers, "t", 0, batch(b"x" * 500))
    produce(handlers, "t", 1, batch(b"y" * 500))
    reply = fetch(handlers, [["t", 0, 0, 1 << 20], ["t", 1, 0, 1 << 20]], max_bytes=10)
    assert values_of(reply.payloads[0]) == [b"x" * 500]
    assert bytes(reply.payloads[1]) == b""
    assert reply.header["partitions"][1][3] == 1  # its high watermark is still reported


def test_list_offsets(handlers):
    produce(handlers, "t", 0, batch(b"a", b"b", ts=1000))
    reply = handlers.handle(
        "list_offsets",
        {"partitions": [["t", 0, -2], ["t", 0, -1], ["t", 0, 1001], ["t", 0, 5000], ["zz", 0, -1]]},
        [],
    )
    assert reply.header["partitions"] == [
        ["t", 0, 0, 0, -1],
        ["t", 0, 0, 2, -1],
        ["t", 0, 0, 1, 1001],
        ["t", 0, 0, -1, -1],
        ["zz", 0, 3, -1, -1],
    ]


def test_metadata_auto_create_only_when_asked(handlers):
    reply = handlers.handle("metadata", {"topics": ["new"]}, [])
    assert reply.header["topics"][0]["error"] == 3
    reply = handlers.handle(
        "metadata", {"topics": ["new", "bad/name"], "allow_auto_create": True}, []
    )
    assert [t["error"] for t in reply.header["topics"]] == [0, 17]
    assert reply.topics_changed
    all_topics = handlers.handle("metadata", {"topics": None}, []).header["topics"]
    assert [t["name"] for t in all_topics] == ["new"]


def test_admin_round_trip(handlers):
    reply = handlers.handle(
        "create_topics",
        {
            "topics": [
                {
                    "name": "a",
                    "num_partitions": 2,
                    "replication_factor": 1,
                    "configs": {"retention.ms": "5000"},
                },
                {"name": "b", "num_partitions": 1, "replication_factor": 2},
            ]
        },
        [],
    )
    assert [t["error"] for t in reply.header["topics"]] == [0, 38]
    reply = handlers.handle("create_partitions", {"topics": {"a": 4}}, [])
    assert reply.header["topics"][0]["error"] == 0
    reply = handlers.handle("alter_configs", {"topics": {"a": {"segment.bytes": "100000"}}}, [])
    assert reply.header["topics"][0]["error"] == 0
    reply = handlers.handle("describe_configs", {"topics": ["a", "b"]}, [])
    first, missing = reply.header["topics"]
    values = {c["name"]: c["value"] for c in first["configs"]}
    assert values["retention.ms"] == "5000"
    assert values["segment.bytes"] == "100000"
    assert missing["error"] == 3
    reply = handlers.handle("delete_topics", {"topics": ["a"]}, [])
    assert reply.header["topics"][0]["error"] == 0
    assert reply.topics_changed
    assert handlers.registry.names() == []


@pytest.mark.parametrize(
    ("api", "header"),
    [
        ("metadata", {"topics": "t"}),
        ("produce", {"acks": 1, "targets": [["t"]]}),
        ("list_offsets", {"partitions": None}),
        ("create_topics", {"topics": ["t"]}),
        ("create_partitions", {"topics": ["t"]}),
        ("alter_configs", {"topics": None}),
        ("delete_topics", {}),
    ],
)
def test_malformed_headers_are_invalid_requests(handlers, api, header):
    reply = handlers.handle(api, header, [])
    assert reply.header["error"] == 42
    assert reply.header["message"]


class _FullDisk:
    log_start_offset = 0
    log_end_offset = 0

    def append(self, batch, header):
        raise OSError(28, "No space left on device")


def test_storage_errors_become_kafka_storage_error(handlers):
    topic = handlers.registry.create("t", 1)
    real = topic.partitions[0]
    topic.partitions[0] = _FullDisk()
    try:
        result = produce(handlers, "t", 0, batch(b"a")).header["results"][0]
    finally:
        topic.partitions[0] = real
    assert result[1] == 56
    assert "No space left" in result[3]


def test_unexpected_errors_become_unknown_error_with_a_log_line(handlers, caplog):
    handlers.registry = None  # any call on it now fails in an unexpected way
    with caplog.at_level(logging.ERROR, logger="labkit.broker.replies"):
        reply = handlers.handle("metadata", {"topics": None}, [])
    assert reply.header["error"] == -1
    assert "AttributeError" in reply.header["message"]
    assert "unexpected error" in caplog.text


def test_fetch_never_raises_even_when_called_directly(handlers):
    handlers.registry = None
    reply = handlers.fetch({"partitions": [["t", 0, 0, 10]]}, final=True)
    assert reply.header["error"] == 0
    assert reply.header["partitions"][0][2] == -1
    reply = handlers.fetch(None, final=True)  # not even a dict
    assert reply.header["error"] == -1
