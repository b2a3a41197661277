"""Corrupt data (issue 11, items 2, 3, 4 and 12's timestamps): what a hostile or buggy
producer sends, and what a flipped bit or a lost file leaves on disk.

- A batch whose CRC is valid but whose columns lie is refused on produce
  (CORRUPT_MESSAGE); a timestamp far in the future is refused (INVALID_TIMESTAMP).
- A corrupt batch already on disk (written here straight into a segment file, as an
  older broker or a flipped bit would leave it) wedges no reader: the consumer gets
  the records before it, then CorruptRecordError naming topic/partition/offset, and
  seeks past it; compaction keeps it and goes on; list_offsets answers around it.
- One damaged record of the committed-offsets log costs only that record.
- Recovery logs every gap in offsets it finds.
"""

from __future__ import annotations

import logging
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from labkit import KafkaAdminClient, KafkaConsumer, KafkaProducer, NewTopic, TopicPartition
from labkit.broker.offsets import OffsetStore
from labkit.errors import CorruptRecordError, InvalidTimestampError
from labkit.log.config import LogConfig
from labkit.log.partition import PartitionLog
from labkit.protocol import records
from labkit.testing import BrokerProcess, RawClient
from labkit.testing.clock import FakeClock

CORRUPT_MESSAGE = 2
INVALID_TIMESTAMP = 32


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# -- forging batches: valid CRC, lying contents ---------------------------------------------


def refit(data: bytearray) -> bytes:
    """Fix the batch_length and the CRC after editing a batch: it passes any CRC check."""
    struct.pack_into("<i", data, 8, len(data) - records.LENGTH_PREFIX)
    struct.pack_into("<I", data, 12, zlib.crc32(bytes(data[records.CRC_START :])))
    return bytes(data)


def lengths_do_not_add_up(ts: int) -> bytes:
    """Three values of 3 bytes; the second one's length says 2 (the blob holds 9)."""
    data = bytearray(records.encode_batch([ts] * 3, None, [b"aaa", b"bbb", b"ccc"]))
    struct.pack_into("<i", data, records.HEADER_SIZE + 3 * 8 + 4, 2)
    return refit(data)


def truncated_headers(ts: int) -> bytes:
    """One record whose headers blob is cut in half, its length column saying so."""
    data = bytearray(records.encode_batch([ts], None, [b"v"], [[("h", b"value")]]))
    blob = len(records.encode_headers([("h", b"value")]))
    column = records.HEADER_SIZE + 8 + 4
    struct.pack_into("<i", data, column, blob // 2)
    return refit(data[: len(data) - (blob - blob // 2)])


def lying_max_timestamp(ts: int) -> bytes:
    """Records stamped now, a header claiming 2**62 (retention would wait forever)."""
    data = bytearray(records.encode_batch([ts, ts], None, [b"a", b"b"]))
    struct.pack_into("<q", data, 32, 1 << 62)
    return refit(data)


def good(ts: int, *values: bytes) -> bytes:
    return records.encode_batch([ts] * len(values), None, list(values))


def produce(client: RawClient, topic: str, batch: bytes) -> list:
    header, _ = client.request("produce", {"acks": 1, "targets": [[topic, 0]]}, [batch])
    assert header["error"] == 0, header
    return header["results"][0]


def create(client: RawClient, topic: str, **configs) -> None:
    header, _ = client.request(
        "create_topics",
        {
            "topics": [
                {
                    "name": topic,
                    "num_partitions": 1,
                    "replication_factor": 1,
                    "configs": {k.replace("_", "."): str(v) for k, v in configs.items()},
                }
            ]
        },
    )
    assert header["topics"][0]["error"] == 0, header


# -- item 2: refused on produce -------------------------------------------------------------


@pytest.mark.parametrize("forge", [lengths_do_not_add_up, truncated_headers, lying_max_timestamp])
def test_a_batch_with_a_valid_crc_but_lying_columns_is_refused(shared_broker, unique_topic, forge):
    batch = forge(now_ms())
    records.validate_batch(batch, produced=False)  # the CRC and framing are fine
    with RawClient(shared_broker.bootstrap) as client:
        create(client, unique_topic)
        base, code, _start, message = produce(client, unique_topic, batch)
        assert (base, code) == (-1, CORRUPT_MESSAGE), message
        assert f"batch for {unique_topic}-0 is malformed" in message, message
        assert produce(client, unique_topic, good(now_ms(), b"ok"))[:2] == [0, 0]


def test_decoding_any_damaged_batch_raises_only_corrupt_record_error():
    """Every truncation and every flipped byte of a batch with keys and headers: the
    decoder raises CorruptRecordError or decodes, never struct.error/IndexError."""
    batch = records.encode_batch(
        [1, 2], [b"k", None], [b"v", None], [[("h", b"x")], [("h2", None)]]
    )
    for cut in range(records.HEADER_SIZE, len(batch)):
        with pytest.raises(CorruptRecordError):
            records.decode_batch(batch[:cut])
    for i in range(records.HEADER_SIZE, len(batch)):
        for flip in (0x01, 0x80, 0xFF):
            data = bytearray(batch)
            data[i] ^= flip
            try:
                records.decode_batch(bytes(data))
            except CorruptRecordError:
                pass


# -- item 2: a corrupt batch already on disk --------------------------------------------------


def segment_file(data_dir: Path, topic: str) -> Path:
    return data_dir / f"{topic}-0" / f"{0:020d}.log"


@pytest.fixture(params=[lengths_do_not_add_up, truncated_headers])
def stored_corrupt_batch(tmp_path, request):
    """A broker whose topic 'damaged' holds: 3 good records (offsets 0-2), a CRC-valid
    corrupt batch (offsets 3 to ``after - 1``), 2 good records (``after``, ``after + 1``).
    Yields (broker, ``after``, timestamps of the three batches)."""
    broker = BrokerProcess(data_dir=tmp_path / "data").start()
    stamps = [now_ms() - 3000, now_ms() - 2000, now_ms() - 1000]
    bad = records.with_base_offset(request.param(stamps[1]), 3)
    after = records.read_header(bad).next_offset
    try:
        with RawClient(broker.bootstrap) as client:
            create(client, "damaged")
            produce(client, "damaged", good(stamps[0], b"r0", b"r1", b"r2"))
        broker.stop()
        with open(segment_file(broker.data_dir, "damaged"), "ab") as f:
            f.write(bad)  # as an older broker would have stored it
        broker.start()
        with RawClient(broker.bootstrap) as client:
            assert produce(client, "damaged", good(stamps[2], b"r6", b"r7"))[:2] == [after, 0]
        yield broker, after, stamps
    finally:
        broker.close()


def test_the_consumer_gets_the_records_before_a_corrupt_batch_then_an_error_then_seeks_past(
    stored_corrupt_batch,
):
    broker, after, _ = stored_corrupt_batch
    tp = TopicPartition("damaged", 0)
    consumer = KafkaConsumer(
        bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000
    )
    try:
        consumer.assign([tp])
        got = []
        deadline = time.monotonic() + 15
        error = None
        while error is None and time.monotonic() < deadline:
            try:
                for rows in consumer.poll(timeout_ms=500).values():
                    got.extend(r.value for r in rows)
            except CorruptRecordError as exc:
                error = exc
        assert got == [b"r0", b"r1", b"r2"]
        assert error is not None, "no CorruptRecordError within 15 s"
        text = str(error)
        assert "offset 3" in text, text
        assert "'damaged'" in text, text
        assert "partition 0" in text, text
        assert (error.topic_partition, error.offset, error.next_offset) == (tp, 3, after)
        assert consumer.position(tp) == 3
        with pytest.raises(CorruptRecordError):  # noqa: PT012 - polls until it arrives; it stays there until the app seeks
            for _ in range(20):
                consumer.poll(timeout_ms=500)
        consumer.seek(tp, error.next_offset)
        rest = []
        deadline = time.monotonic() + 15
        while len(rest) < 2 and time.monotonic() < deadline:
            for rows in consumer.poll(timeout_ms=500).values():
                rest.extend(r.value for r in rows)
        assert rest == [b"r6", b"r7"]
    finally:
        consumer.close()


def test_the_console_consumer_prints_the_records_before_a_corrupt_batch_and_says_where(
    stored_corrupt_batch,
):
    broker, after, _ = stored_corrupt_batch
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "labkit",
            "console-consumer",
            "--topic",
            "damaged",
            "--from-beginning",
            "--timeout-ms",
            "5000",
            "--bootstrap-server",
            broker.bootstrap,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.split() == ["r0", "r1", "r2"], result
    assert "offset 3" in result.stderr, result.stderr
    assert f"seek(TopicPartition('damaged', 0), {after})" in result.stderr, result.stderr
    assert "Processed a total of 3 messages" in result.stderr
    assert result.returncode != 0


def test_list_offsets_by_timestamp_answers_around_a_corrupt_batch(stored_corrupt_batch):
    broker, after, stamps = stored_corrupt_batch
    with RawClient(broker.bootstrap) as client:
        header, _ = client.request(
            "list_offsets",
            {
                "partitions": [
                    ["damaged", 0, stamps[0]],
                    ["damaged", 0, stamps[1]],
                    ["damaged", 0, stamps[2]],
                    ["damaged", 0, stamps[2] + 1],
                ]
            },
        )
    rows = [row[2:] for row in header["partitions"]]
    # the corrupt batch has no readable timestamps: a lookup inside it lands after it
    assert rows == [[0, 0, stamps[0]], [0, after, stamps[2]], [0, after, stamps[2]], [0, -1, -1]]


def compacted_log(directory: Path, clock) -> PartitionLog:
    # tiny segments, built directly: the segment.bytes minimum for users may rise
    config = LogConfig(cleanup_policy="compact", segment_bytes=200)
    return PartitionLog.open(directory, config, clock)


def keyed(ts: int, key: bytes, value: bytes) -> bytes:
    return records.encode_batch([ts], [key], [value])


@pytest.mark.parametrize("forge", [lengths_do_not_add_up, truncated_headers])
def test_compaction_keeps_a_corrupt_batch_with_a_log_line_and_goes_on(tmp_path, caplog, forge):
    clock = FakeClock()
    plog = compacted_log(tmp_path / "tbl-0", clock)
    try:
        for i in range(3):
            data = keyed(clock.time_ms(), b"k", b"old-%d" % i)
            plog.append(data, records.validate_batch(data))
        bad = forge(clock.time_ms())
        bad_base = plog.append(bad, records.read_header(bad))
        for i in range(8):
            data = keyed(clock.time_ms(), b"k", b"new-%d" % i)
            plog.append(data, records.validate_batch(data))
        with caplog.at_level(logging.WARNING, logger="labkit.log"):
            removed = plog.compact()
        assert removed >= 3
        assert "tbl-0" in caplog.text, caplog.text
        assert "corrupt batch" in caplog.text, caplog.text
        assert plog.read(bad_base, 1)[8:] == bad[8:]  # kept byte for byte
        assert plog.compact() == 0  # and the next pass does not fail either
    finally:
        plog.close()


# -- item 12: timestamps far from now -------------------------------------------------------


def test_a_record_stamped_far_in_the_future_is_refused_with_invalid_timestamp(
    shared_broker, unique_topic
):
    with RawClient(shared_broker.bootstrap) as client:
        create(client, unique_topic)
        _base, code, _start, message = produce(client, unique_topic, good(1 << 62, b"x"))
        assert code == INVALID_TIMESTAMP, message
        assert "message.timestamp.after.max.ms=3600000" in message
        assert "record 0" in message
        # within the hour ahead is fine (Kafka's default), as is any time in the past
        assert produce(client, unique_topic, good(now_ms() + 60_000, b"soon"))[1] == 0
        assert produce(client, unique_topic, good(1_000, b"1970"))[1] == 0
    with KafkaProducer(bootstrap_servers=shared_broker.bootstrap, retries=0) as producer:
        future = producer.send(
            unique_topic, b"late", partition=0, timestamp_ms=now_ms() + 2 * 3600_000
        )
        with pytest.raises(InvalidTimestampError, match="ahead of the broker's clock"):
            future.get(timeout=10)


def test_per_topic_timestamp_bounds(shared_broker, unique_topic):
    with RawClient(shared_broker.bootstrap) as client:
        create(
            client,
            unique_topic,
            message_timestamp_after_max_ms=1 << 62,
            message_timestamp_before_max_ms=60_000,
        )
        assert produce(client, unique_topic, good(1 << 61, b"far"))[1] == 0
        old = records.encode_batch([now_ms(), now_ms() - 3_600_000], None, [b"new", b"old"])
        _base, code, _start, message = produce(client, unique_topic, old)
        assert code == INVALID_TIMESTAMP, message
        assert "record 1" in message, message
        assert "message.timestamp.before.max.ms=60000" in message, message


# -- item 3: one damaged record of the committed-offsets log -----------------------------------


def three_groups(tmp_path: Path) -> Path:
    """Commits of g1/g2/g3 at 100/200/300 (one record each, in that order); the file."""
    store = OffsetStore(tmp_path, FakeClock())
    for n, group in enumerate(["g1", "g2", "g3"], start=1):
        store.commit(group, [("t", 0, 100 * n, "")])
    store.close()
    return tmp_path / "__consumer_offsets" / "offsets.log"


def committed(tmp_path: Path) -> dict[str, int]:
    store = OffsetStore(tmp_path, FakeClock())
    try:
        return {g: store.fetch(g)[("t", 0)].offset for g in store.groups()}
    finally:
        store.close()


def flip(path: Path, index: int) -> None:
    data = bytearray(path.read_bytes())
    data[index] ^= 0x04
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["payload", "length", "crc"])
def test_one_flipped_byte_in_the_first_offsets_record_costs_only_that_record(
    tmp_path, caplog, where
):
    path = three_groups(tmp_path)
    flip(path, {"length": 3, "crc": 5, "payload": 30}[where])
    with caplog.at_level(logging.WARNING, logger="labkit.broker.offsets"):
        assert committed(tmp_path) == {"g2": 200, "g3": 300}
    text = caplog.text
    assert "damaged" in text, text
    assert "bytes 0-" in text, text
    assert "torn" not in text
    if where != "payload":  # the group id is still readable
        assert "group 'g1'" in text, text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="labkit.broker.offsets"):
        assert committed(tmp_path) == {"g2": 200, "g3": 300}  # rewritten: reported once
    assert caplog.text == ""


def test_a_damaged_last_offsets_record_is_named_and_a_torn_tail_is_cut(tmp_path, caplog):
    path = three_groups(tmp_path)
    flip(path, path.stat().st_size - 3)  # inside g3's record, which is complete
    with caplog.at_level(logging.WARNING, logger="labkit.broker.offsets"):
        assert committed(tmp_path) == {"g1": 100, "g2": 200}
    assert "group 'g3'" in caplog.text, caplog.text
    assert "last record" in caplog.text, caplog.text
    path = three_groups(tmp_path / "torn")
    path.write_bytes(path.read_bytes()[:-5])  # killed mid-write
    store = OffsetStore(tmp_path / "torn", FakeClock())
    assert store.truncated_bytes > 0
    assert store.damaged_records == 0
    assert {g: store.fetch(g)[("t", 0)].offset for g in store.groups()} == {"g1": 100, "g2": 200}
    store.close()


def test_a_broker_restarted_over_a_damaged_offsets_log_keeps_the_other_groups(tmp_path):
    tp = TopicPartition("t", 0)
    broker = BrokerProcess(data_dir=tmp_path / "data").start()
    try:
        with KafkaAdminClient(bootstrap_servers=broker.bootstrap) as admin:
            admin.create_topics([NewTopic("t", 1, 1)])
            for n, group in enumerate(["g1", "g2", "g3"], start=1):
                admin.alter_consumer_group_offsets(group, {tp: 100 * n})
        broker.stop()
        flip(broker.data_dir / "__consumer_offsets" / "offsets.log", 30)
        broker.start()
        with KafkaAdminClient(bootstrap_servers=broker.bootstrap) as admin:
            got = {g: admin.list_consumer_group_offsets(g).get(tp) for g in ("g1", "g2", "g3")}
        assert {g: c.offset for g, c in got.items() if c is not None} == {"g2": 200, "g3": 300}
        output = broker.output()
        assert "damaged" in output, output
        assert "group 'g1'" in output, output
        assert "torn write" not in output, output
    finally:
        broker.close()


# -- item 4: recovery reports every gap in offsets -------------------------------------------


def three_segments(directory: Path, policy: str = "delete") -> list[int]:
    """A log of 3 segments of 10 one-record batches each (offsets 0-29); their bases."""
    config = LogConfig(segment_bytes=700, cleanup_policy=policy)
    clock = FakeClock()
    plog = PartitionLog.open(directory, config, clock)
    for i in range(30):
        data = records.encode_batch([clock.time_ms()], [b"k%d" % i], [b"value-%02d" % i])
        plog.append(data, records.validate_batch(data))
    bases = [s.base_offset for s in plog.segments()]
    plog.close()
    assert len(bases) >= 3, bases
    return bases


def reopen(directory: Path, policy: str = "delete") -> PartitionLog:
    config = LogConfig(segment_bytes=700, cleanup_policy=policy)
    return PartitionLog.open(directory, config, FakeClock())


@pytest.mark.parametrize("files", [(".log",), (".log", ".index", ".timeindex")])
def test_recovery_logs_the_offsets_of_a_deleted_sealed_segment(tmp_path, caplog, files):
    directory = tmp_path / "events-0"
    bases = three_segments(directory)
    for suffix in files:
        (directory / f"{bases[1]:020d}{suffix}").unlink()
    with caplog.at_level(logging.WARNING, logger="labkit.log"):
        reopen(directory).close()
    expected = f"offsets {'from ' if len(files) == 1 else ''}{bases[1]} "
    assert "topic 'events' partition 0" in caplog.text, caplog.text
    assert expected in caplog.text, caplog.text
    assert f"{bases[2] - 1}" in caplog.text, caplog.text


def test_recovery_logs_a_deleted_first_segment_whose_index_files_remain(tmp_path, caplog):
    directory = tmp_path / "events-0"
    bases = three_segments(directory, policy="compact")  # holes are normal here: still seen
    (directory / f"{bases[0]:020d}.log").unlink()
    with caplog.at_level(logging.WARNING, logger="labkit.log"):
        reopen(directory, policy="compact").close()
    assert f"offsets from 0 up to {bases[1] - 1} are lost" in caplog.text, caplog.text


def test_recovery_logs_the_offsets_of_an_emptied_active_segment(tmp_path, caplog):
    directory = tmp_path / "events-0"
    bases = three_segments(directory)
    (directory / f"{bases[-1]:020d}.log").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="labkit.log"):
        plog = reopen(directory)
        assert plog.log_end_offset == bases[-1]
        plog.close()
    assert f"offsets from {bases[-1]} up to at least 29 are lost" in caplog.text, caplog.text


def test_recovery_logs_the_offsets_of_a_cut_tail(tmp_path, caplog):
    directory = tmp_path / "events-0"
    bases = three_segments(directory)
    active = directory / f"{bases[-1]:020d}.log"
    active.write_bytes(active.read_bytes()[:-10])  # the last batch torn
    with caplog.at_level(logging.WARNING, logger="labkit.log"):
        reopen(directory).close()
    assert "the records from offset 29 on" in caplog.text, caplog.text


def test_a_clean_reopen_reports_nothing(tmp_path, caplog):
    directory = tmp_path / "events-0"
    three_segments(directory)
    with caplog.at_level(logging.WARNING, logger="labkit.log"):
        reopen(directory).close()
        reopen(directory).close()
    assert caplog.text == ""
