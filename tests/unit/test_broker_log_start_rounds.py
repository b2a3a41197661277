"""delete_records on the broker's loop (broker/loop.py, fake transport, no sockets): the
log start moves at once, but the partition's ``log-start-offset.checkpoint`` is written
by the flusher's round (issue 19.2: the loop thread never fsyncs), and the reply waits
for that round. ``durable.stop()`` runs the round on this thread (no flusher thread)."""

from __future__ import annotations

import pytest

from labkit.broker.config import BrokerConfig
from labkit.broker.loop import BrokerLoop
from labkit.broker.quotas import ClientQuotas
from labkit.broker.topics import TopicRegistry
from labkit.errors import KafkaStorageError, OffsetOutOfRangeError
from labkit.log.start_offset import CHECKPOINT
from labkit.protocol.frames import build_request, decode_header
from labkit.protocol.records import encode_batch
from labkit.testing import FakeClock


class Replies:
    def __init__(self):
        self.sent: list = []

    def __call__(self, identity, rid, head, payloads):
        self.sent.append((rid, decode_header(head)))

    def take(self) -> list:
        out, self.sent = self.sent, []
        return out


@pytest.fixture
def world(tmp_path):
    clock = FakeClock()
    config = BrokerConfig(port=9092, data_dir=tmp_path)
    registry = TopicRegistry(tmp_path, config.log_defaults, clock, 1).open()
    registry.create("t", 1)  # inline: the loop makes the registry deferred
    replies = Replies()
    loop = BrokerLoop(config, clock, registry, ClientQuotas(tmp_path), replies)
    batch = encode_batch([clock.time_ms()] * 5, None, [b"v"] * 5)
    loop.receive(
        [b"c", *build_request(b"p", "produce", {"acks": 1, "targets": [["t", 0]]}, [batch])]
    )
    assert replies.take()[0][1]["results"][0][1] == 0
    yield loop, replies, tmp_path / "t-0" / CHECKPOINT
    loop.shutdown()
    registry.close()


def delete(loop, rid: bytes, offset: int) -> None:
    loop.receive(
        [b"admin", *build_request(rid, "delete_records", {"partitions": [["t", 0, offset]]})]
    )


def fetch_error(loop, replies, offset: int) -> int:
    header = {"max_wait_ms": 0, "partitions": [["t", 0, offset, 1 << 20]]}
    loop.receive([b"c", *build_request(b"f", "fetch", header)])
    ((_rid, reply),) = replies.take()
    return reply["partitions"][0][2]


def test_the_reply_waits_for_the_round_that_writes_the_checkpoint(world):
    loop, replies, checkpoint = world
    delete(loop, b"1", 3)
    assert replies.take() == []
    assert not checkpoint.exists()
    assert fetch_error(loop, replies, 2) == OffsetOutOfRangeError.errno  # moved at once
    delete(loop, b"2", 2)  # below the new start: changes nothing, but waits for it too
    assert replies.take() == []
    loop.durable.stop()  # the round
    assert [(rid, h["partitions"]) for rid, h in replies.take()] == [
        (b"1", [["t", 0, 0, 3, None]]),
        (b"2", [["t", 0, 0, 3, None]]),
    ]
    assert checkpoint.read_text() == "3\n"
    delete(loop, b"3", 3)  # durable already: answered at once
    assert [rid for rid, _ in replies.take()] == [b"3"]


def test_a_failed_checkpoint_write_answers_a_storage_error_and_a_retry_saves_it(world, monkeypatch):
    loop, replies, checkpoint = world

    def full_disk(directory, offset):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("labkit.log.start_offset.write", full_disk)
    delete(loop, b"1", 4)
    loop.durable.stop()
    ((_rid, header),) = replies.take()
    (row,) = header["partitions"]
    assert row[:4] == ["t", 0, KafkaStorageError.errno, -1]
    assert "disk space" in row[4]
    assert "retry" in row[4]
    assert not checkpoint.exists()
    monkeypatch.undo()
    delete(loop, b"2", 4)  # the retry: the start moved already, still it waits
    assert replies.take() == []
    loop.durable.stop()
    assert [(rid, h["partitions"]) for rid, h in replies.take()] == [(b"2", [["t", 0, 0, 4, None]])]
    assert checkpoint.read_text() == "4\n"
