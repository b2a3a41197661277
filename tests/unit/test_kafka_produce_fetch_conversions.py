"""Kafka Produce/Fetch <-> labkit produce/fetch (labkit/kafka/produce_fetch.py): the pure
conversions, on kio entities, without sockets. Kafka batches are built by kafka-python's
record builder and read back with it."""

from __future__ import annotations

import datetime
import struct
import sys

import pytest
from kafka.record.default_records import DefaultRecordBatch as KpBatch
from kafka.record.default_records import DefaultRecordBatchBuilder as KpBuilder
from kio.index import load_request_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader

from labkit.kafka import apis, codec
from labkit.kafka import produce_fetch as pf
from labkit.protocol import records

NOW = 1_700_000_000_000


def kafka_batch(values, *, producer=(-1, -1, -1), codec_id=0) -> bytes:
    builder = KpBuilder(
        magic=2,
        compression_type=codec_id,
        is_transactional=False,
        producer_id=producer[0],
        producer_epoch=producer[1],
        base_sequence=producer[2],
        batch_size=1 << 24,
    )
    for offset, value in enumerate(values):
        builder.append(offset, timestamp=NOW + offset, key=b"k%d" % offset, value=value, headers=[])
    return bytes(builder.build())


def _cls(key: int, version: int, name: str):
    schema = load_request_schema(key, version)
    return schema if name == schema.__name__ else getattr(sys.modules[schema.__module__], name)


def produce_request(partitions, *, version=9, acks=-1):
    """A kio ProduceRequest: ``partitions`` [(topic, partition, records bytes | None)]."""
    topic_cls = _cls(0, version, "TopicProduceData")
    part_cls = _cls(0, version, "PartitionProduceData")
    topics: dict[str, list] = {}
    for topic, partition, raw in partitions:
        topics.setdefault(topic, []).append(part_cls(index=partition, records=raw))
    return _cls(0, version, "ProduceRequest")(
        transactional_id=None,
        acks=acks,
        timeout=datetime.timedelta(seconds=30),
        topic_data=tuple(topic_cls(name=t, partition_data=tuple(p)) for t, p in topics.items()),
    )


def fetch_request(rows, *, version=12, isolation=0, session_id=0, max_wait_ms=500):
    """A kio FetchRequest: ``rows`` [(topic, partition, offset, partition_max_bytes)]."""
    topic_cls = _cls(1, version, "FetchTopic")
    part_cls = _cls(1, version, "FetchPartition")
    topics: dict[str, list] = {}
    for topic, partition, offset, part_max, *epoch in rows:
        fields = {"partition": partition, "fetch_offset": offset, "partition_max_bytes": part_max}
        if epoch:  # current_leader_epoch (v9+, KIP-320)
            fields["current_leader_epoch"] = epoch[0]
        topics.setdefault(topic, []).append(apis._make(part_cls, **fields))
    values = {
        "replica_id": -1,
        "max_wait": datetime.timedelta(milliseconds=max_wait_ms),
        "min_bytes": 1,
        "max_bytes": 52428800,
        "isolation_level": isolation,
        "session_id": session_id,
        "session_epoch": -1,
        "topics": tuple(topic_cls(topic=t, partitions=tuple(p)) for t, p in topics.items()),
        "forgotten_topics_data": (),
        "rack_id": "",
    }
    return apis._make(_cls(1, version, "FetchRequest"), **values)


def encoded_body(response) -> bytes:
    """The response's bytes after its header (as a client reads them)."""
    frame = codec.encode_response(7, response)
    header_size = 4 + 4 + (1 if response.__header_schema__.__name__.endswith("V1") else 0)
    return frame[header_size:]


CONTEXT = apis.Context("localhost", 9092)


# -- Produce -> labkit --------------------------------------------------------------------


def test_produce_becomes_one_labkit_target_per_kafka_batch_with_its_kafka_header():
    raw = kafka_batch([b"a", b"b"], producer=(11, 2, 40))
    bridged = pf.produce_to_labkit(produce_request([("t", 1, raw)]), 9, CONTEXT)
    assert bridged.api == "produce"
    assert bridged.header == {
        "acks": -1,
        "timeout_ms": 30000,
        "targets": [["t", 1]],
        "producers": [[11, 2, 40]],  # the idempotent producer's id, epoch, base sequence
    }
    decoded = records.decode_batch(bridged.payloads[0])
    assert decoded.values == [b"a", b"b"]
    assert decoded.keys == [b"k0", b"k1"]
    assert bridged.reply_expected


def test_batches_without_a_producer_id_send_no_producers_rows():
    bridged = pf.produce_to_labkit(produce_request([("t", 0, kafka_batch([b"a"]))]), 9, CONTEXT)
    assert "producers" not in bridged.header  # exactly what a labkit producer sends


def test_the_idempotence_hook_sees_every_kafka_batch_header(monkeypatch):
    seen = []

    def spy(acks, timeout_ms, batches):
        seen.extend((b.topic, b.partition, b.kafka_header.producer_id) for b in batches)
        return {"acks": acks, "timeout_ms": timeout_ms, "targets": []}, []

    monkeypatch.setattr(pf, "produce_request", spy)
    raw = kafka_batch([b"a"], producer=(5, 0, 0)) + kafka_batch([b"b"], producer=(5, 0, 1))
    pf.produce_to_labkit(produce_request([("t", 0, raw)]), 9, CONTEXT)
    assert seen == [("t", 0, 5), ("t", 0, 5)]


def test_a_bad_partition_is_refused_alone_and_the_others_go_on():
    good = kafka_batch([b"ok"])
    bad = bytearray(kafka_batch([b"bad"]))
    bad[-1] ^= 0xFF  # the CRC no longer matches
    request = produce_request([("t", 0, bytes(bad)), ("t", 1, good), ("u", 0, None)])
    bridged = pf.produce_to_labkit(request, 9, CONTEXT)
    assert bridged.header["targets"] == [["t", 1]]
    reply = {"error": 0, "results": [[42, 0, 3, None]]}
    response = pf.produce_to_kafka(reply, [], bridged.state, request, 9, CONTEXT)
    rows = [
        (t.name, p.index, p.error_code, p.base_offset, p.log_start_offset, p.error_message)
        for t in response.responses
        for p in t.partition_responses
    ]
    assert rows[0][:5] == ("t", 0, ErrorCode.corrupt_message, -1, -1)
    assert "CRC-32C" in rows[0][5]
    assert rows[1] == ("t", 1, ErrorCode.none, 42, 3, None)
    assert rows[2][:3] == ("u", 0, ErrorCode.invalid_record)


def test_every_partition_refused_sends_nothing_to_the_broker():
    request = produce_request([("t", 0, b"\0" * 70)])
    bridged = pf.produce_to_labkit(request, 3, CONTEXT)
    assert bridged.api is None
    response = pf.produce_to_kafka(None, [], bridged.state, request, 3, CONTEXT)
    assert response.responses[0].partition_responses[0].error_code != ErrorCode.none


def test_a_gzip_bomb_is_cut_at_the_requests_budget():
    raw = kafka_batch([b"\0" * 200_000, b"\0" * 200_000], codec_id=1)  # gzip, ~1 KB on the wire
    assert len(raw) < 5000
    context = apis.Context("localhost", 9092, max_records_bytes=300_000)
    request = produce_request([("t", 0, raw), ("t", 1, kafka_batch([b"x"]))])
    bridged = pf.produce_to_labkit(request, 9, context)
    assert bridged.header["targets"] == [["t", 1]]
    code, message = bridged.state[0].error, bridged.state[0].message
    assert code == 10  # MESSAGE_TOO_LARGE
    assert "socket.request.max.bytes" in message


def test_acks_0_goes_to_the_broker_as_acks_1_and_expects_no_kafka_response():
    bridged = pf.produce_to_labkit(
        produce_request([("t", 0, kafka_batch([b"a"]))], acks=0), 9, CONTEXT
    )
    assert bridged.header["acks"] == 1
    assert not bridged.reply_expected
    assert bridged.close is None
    request = produce_request([("t", 0, kafka_batch([b"a"]))], acks=0)
    ok = {"error": 0, "results": [[0, 0, 0, None]]}
    assert pf.produce_to_kafka(ok, [], bridged.state, request, 9, CONTEXT) is None
    failed = {"error": 0, "results": [[-1, 87, -1, "bad"]]}
    why = pf.produce_to_kafka(failed, [], bridged.state, request, 9, CONTEXT)
    assert why == "a produce with acks=0 failed (bad)"


def test_acks_0_with_a_refused_batch_says_to_close_the_connection():
    bad = bytearray(kafka_batch([b"bad"]))
    bad[-1] ^= 0xFF
    request = produce_request([("t", 0, bytes(bad)), ("t", 1, kafka_batch([b"ok"]))], acks=0)
    bridged = pf.produce_to_labkit(request, 9, CONTEXT)
    assert bridged.header["targets"] == [["t", 1]]  # the good partition still goes, as Kafka
    assert "CRC-32C" in bridged.close


def test_a_partition_of_several_batches_answers_with_the_first_base_offset_or_first_error():
    raw = kafka_batch([b"a"]) + kafka_batch([b"b", b"c"])
    request = produce_request([("t", 0, raw)])
    bridged = pf.produce_to_labkit(request, 9, CONTEXT)
    assert bridged.header["targets"] == [["t", 0], ["t", 0]]
    ok = pf.produce_to_kafka(
        {"error": 0, "results": [[10, 0, 0, None], [11, 0, 0, None]]},
        [],
        bridged.state,
        request,
        9,
        CONTEXT,
    )
    assert ok.responses[0].partition_responses[0].base_offset == 10
    failed = pf.produce_to_kafka(
        {"error": 0, "results": [[10, 0, 0, None], [-1, 32, -1, "too old"]]},
        [],
        bridged.state,
        request,
        9,
        CONTEXT,
    )
    part = failed.responses[0].partition_responses[0]
    assert (part.error_code, part.error_message) == (ErrorCode.invalid_timestamp, "too old")
    whole = pf.produce_to_kafka(
        {"error": 21, "message": "acks"}, [], bridged.state, request, 9, CONTEXT
    )
    assert whole.responses[0].partition_responses[0].error_code == ErrorCode.invalid_required_acks


@pytest.mark.parametrize("version", range(3, 10))
def test_every_produce_response_version_encodes(version):
    request = produce_request([("t", 0, kafka_batch([b"a"]))], version=version)
    bridged = pf.produce_to_labkit(request, version, CONTEXT)
    reply = {"error": 0, "results": [[5, 0, 2, None]], "throttle_time_ms": 30}
    response = pf.produce_to_kafka(reply, [], bridged.state, request, version, CONTEXT)
    assert response.throttle_time == datetime.timedelta(milliseconds=30)
    body = encoded_body(response)
    # topic count 1, then the topic name (legacy or compact), ... base offset 5 in there
    assert struct.pack(">q", 5) in body
    assert struct.pack(">q", -1) in body  # log_append_time: CreateTime


# -- Fetch ----------------------------------------------------------------------------------


def labkit_batch(values, base_offset=0) -> bytes:
    return records.encode_batch([NOW] * len(values), None, values, None, base_offset=base_offset)


def test_fetch_becomes_one_labkit_fetch():
    request = fetch_request(
        [("t", 0, 5, 1000), ("t", 1, 0, 2000), ("u", 0, 9, 10)], max_wait_ms=250
    )
    bridged = pf.fetch_to_labkit(request, 12, CONTEXT)
    assert bridged.api == "fetch"
    assert bridged.header == {
        "max_wait_ms": 250,
        "min_bytes": 1,
        "max_bytes": 52428800,
        "partitions": [["t", 0, 5, 1000, -1], ["t", 1, 0, 2000, -1], ["u", 0, 9, 10, -1]],
    }


@pytest.mark.parametrize("version", [4, 8, 9, 12])
def test_a_fetch_passes_the_clients_current_leader_epoch_on(version):
    # KIP-320: Fetch v9+ carries it (the broker answers 74/75 on a mismatch); older: -1
    bridged = pf.fetch_to_labkit(
        fetch_request([("t", 0, 5, 1000, 7)], version=version), version, CONTEXT
    )
    assert bridged.header["partitions"] == [["t", 0, 5, 1000, 7 if version >= 9 else -1]]


def test_an_incremental_fetch_of_an_unknown_session_is_refused_at_once():
    request = fetch_request([("t", 0, 0, 1000)], session_id=77)
    bridged = pf.fetch_to_labkit(request, 12, CONTEXT)
    assert bridged.api is None
    response = pf.fetch_to_kafka(None, [], bridged.state, request, 12, CONTEXT)
    assert response.error_code == ErrorCode.fetch_session_id_not_found
    assert response.session_id == 0


@pytest.mark.parametrize(("isolation", "aborted"), [(0, None), (1, ())])
def test_fetch_answers_kafka_batches_with_the_offsets_kafka_names(isolation, aborted):
    request = fetch_request([("t", 0, 3, 1000), ("t", 1, 99, 1000)], isolation=isolation)
    bridged = pf.fetch_to_labkit(request, 12, CONTEXT)
    reply = {"error": 0, "partitions": [["t", 0, 0, 5, 1], ["t", 1, 1, 7, 2]]}
    payloads = [labkit_batch([b"a", b"b"], 3) + labkit_batch([b"c"], 5)[:10], b""]
    response = pf.fetch_to_kafka(reply, payloads, bridged.state, request, 12, CONTEXT)
    assert response.session_id == 0
    first, second = response.responses[0].partitions
    assert (first.error_code, first.high_watermark, first.last_stable_offset) == (
        ErrorCode.none,
        5,
        5,
    )
    assert (first.log_start_offset, first.preferred_read_replica) == (1, -1)
    assert first.aborted_transactions == aborted
    batch = KpBatch(first.records)  # the cut trailing labkit batch is left out
    assert batch.validate_crc()
    assert [(r.offset, r.value) for r in batch] == [(3, b"a"), (4, b"b")]
    assert len(first.records) == batch.size_in_bytes
    assert (second.error_code, second.high_watermark, second.records) == (
        ErrorCode.offset_out_of_range,
        7,
        b"",
    )


@pytest.mark.parametrize("version", range(4, 13))
def test_every_fetch_response_version_encodes_and_reads_back(version):
    request = fetch_request([("t", 0, 0, 1000)], version=version)
    bridged = pf.fetch_to_labkit(request, version, CONTEXT)
    reply = {"error": 0, "partitions": [["t", 0, 0, 2, 0]]}
    response = pf.fetch_to_kafka(
        reply, [labkit_batch([b"x", b"y"])], bridged.state, request, version, CONTEXT
    )
    from kio.index import load_response_schema

    cls = load_response_schema(1, version)
    frame = codec.encode_response(7, response)
    header_cls = cls.__header_schema__
    reader = entity_reader(header_cls)
    _header, used = reader(frame[4:], 0)
    decoded, _size = entity_reader(cls)(frame[4:], used)
    records_bytes = decoded.responses[0].partitions[0].records
    assert [r.value for r in KpBatch(bytes(records_bytes))] == [b"x", b"y"]


def test_a_header_only_api_row_keeps_working():
    row = apis.Api(apis.metadata_to_labkit, apis.metadata_to_kafka)
    assert row.payloads is False
    assert not any(api.payloads for api in apis.BRIDGED.values())


def test_produce_and_fetch_are_advertised_and_bridged_as_record_apis():
    from labkit.kafka import bridges

    assert codec.SUPPORTED[pf.PRODUCE_KEY] == (3, 9)
    assert codec.SUPPORTED[pf.FETCH_KEY] == (4, 12)
    assert bridges.BRIDGED[pf.PRODUCE_KEY].payloads
    assert bridges.BRIDGED[pf.FETCH_KEY].payloads
    assert set(codec.SUPPORTED) == set(bridges.BRIDGED) | {codec.API_VERSIONS_KEY}
