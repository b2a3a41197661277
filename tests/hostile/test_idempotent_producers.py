"""Hostile idempotent producers: malformed producers rows, sequences and epochs at their
limits, and producer-id floods. Each gets a clear error (or Kafka's answer), nothing
is appended twice, and a well-behaved client keeps being served."""

from __future__ import annotations

import random
import time

import pytest

from labkit.protocol.records import encode_batch
from labkit.testing import RawClient

BAD_ROWS = [
    "x",
    [1, 0],
    [1, 0, 0, 0],
    [-1, 0, 0],
    [1, -1, 0],
    [1, 0, -1],
    [1, 2**15, 0],
    [1, 0, 2**31],
    [2**63, 0, 0],
    [1.5, 0, 0],
    [True, 0, 0],
    ["1", 0, 0],
    [None, 0, 0],
    {"producer_id": 1},
    [[1], 0, 0],
]


def batch(*values: bytes) -> bytes:
    return encode_batch([int(time.time() * 1000)] * len(values), None, list(values))


@pytest.mark.parametrize("row", BAD_ROWS, ids=[repr(r)[:30] for r in BAD_ROWS])
def test_a_malformed_producers_row_is_invalid_request_and_nothing_is_appended(
    broker, well_behaved, row
):
    with RawClient(broker.bootstrap) as client:
        header, _ = client.request(
            "produce",
            {"acks": 1, "targets": [["hostile-rows", 0]], "producers": [row]},
            [batch(b"x")],
        )
        assert header["error"] == 42, header
        message = header["message"]
        assert "init_producer_id" in message or "malformed request" in message, message
        for producers in ([], [None, None], "nope", 7):  # the list itself is wrong
            header, _ = client.request(
                "produce",
                {"acks": 1, "targets": [["hostile-rows", 0]], "producers": producers},
                [batch(b"x")],
            )
            assert header["error"] == 42, header
        ends, _ = client.request("list_offsets", {"partitions": [["hostile-rows", 0, -1]]})
        _topic, _partition, error, end, _ts = ends["partitions"][0]
        assert error != 0 or end == 0  # never created, or created (auto) and empty
    well_behaved.round_trip()


def test_limits_of_ids_epochs_and_sequences_and_random_rows(broker, well_behaved):
    rng = random.Random(13)
    with RawClient(broker.bootstrap) as client:
        top = [2**63 - 1, 2**15 - 1, 2**31 - 1]  # every field at its largest
        row = client.request(
            "produce", {"acks": 1, "targets": [["limits", 0]], "producers": [top]}, [batch(b"a")]
        )[0]["results"][0]
        assert row[:2] == [0, 0]
        wrapped = client.request(
            "produce",
            {"acks": 1, "targets": [["limits", 0]], "producers": [[2**63 - 1, 2**15 - 1, 0]]},
            [batch(b"b")],
        )[0]["results"][0]
        assert wrapped[:2] == [1, 0]  # the sequence after 2**31-1 is 0
        for _ in range(300):  # random producers, epochs and sequences: answered, never down
            producer = [rng.randrange(50), rng.randrange(3), rng.randrange(6)]
            header, _ = client.request(
                "produce",
                {"acks": 1, "targets": [["limits", 0]], "producers": [producer]},
                [batch(b"r")],
            )
            assert header["error"] == 0
            assert header["results"][0][1] in (0, 45, 47), header
    well_behaved.round_trip()


def test_a_flood_of_producer_ids_is_served_in_blocks(broker, well_behaved):
    with RawClient(broker.bootstrap) as client:
        ids = set()
        deadline = time.monotonic() + 60  # generous: "does not hang" on a shared machine
        while len(ids) < 3000 and time.monotonic() < deadline:
            header, _ = client.request("init_producer_id", {"transactional_id": None})
            if header["error"] == 0:
                ids.add(header["producer_id"])
            else:
                assert header["error"] == 14, header  # the next block is being reserved
        assert len(ids) == 3000  # three blocks, no id twice
    well_behaved.round_trip()
