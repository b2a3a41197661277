"""KIP-320 over a real socket: a fetch row's fifth field, current_leader_epoch, is checked
against the broker's leader epoch of the partition before anything is read: older gets
FENCED_LEADER_EPOCH (74), newer UNKNOWN_LEADER_EPOCH (75), its own epoch or -1 the
records. A real broker process, a raw DEALER (labkit.testing.RawClient)."""

from __future__ import annotations

import time

import pytest

from labkit.errors import FencedLeaderEpochError, UnknownLeaderEpochError
from labkit.log.leader_epochs import CHECKPOINT
from labkit.protocol.records import encode_batch, split_batches
from labkit.testing import BrokerProcess, RawClient

TOPIC = "epoch-checked"


@pytest.fixture
def broker_at_epoch_3(tmp_path):
    """A broker whose partition is at leader epoch 3 (the checkpoint written while it is
    stopped, as a controller would have assigned it)."""
    with BrokerProcess(data_dir=tmp_path / "data") as proc:
        with RawClient(proc.bootstrap) as client:
            header, _ = client.request(
                "create_topics", {"topics": [{"name": TOPIC, "num_partitions": 1}]}
            )
            assert header["topics"][0]["error"] == 0, header
            data = encode_batch([int(time.time() * 1000)], None, [b"a"])
            header, _ = client.request("produce", {"acks": 1, "targets": [[TOPIC, 0]]}, [data])
            assert header["results"][0][1] == 0, header
        proc.stop()
        (tmp_path / "data" / f"{TOPIC}-0" / CHECKPOINT).write_text("0\n1\n3 0\n")
        proc.start()
        yield proc


@pytest.mark.parametrize("replica_id", [-1, 7])  # a consumer, a follower
def test_a_fetch_with_a_stale_or_future_epoch_is_refused(broker_at_epoch_3, replica_id):
    with RawClient(broker_at_epoch_3.bootstrap) as client:

        def fetch(epoch):
            header, payloads = client.request(
                "fetch",
                {
                    "max_wait_ms": 0,
                    "replica_id": replica_id,
                    "partitions": [[TOPIC, 0, 0, 1 << 20, epoch]],
                },
            )
            assert header["error"] == 0, header
            return header["partitions"][0], payloads[0]

        for epoch, code in [(2, FencedLeaderEpochError.errno), (4, UnknownLeaderEpochError.errno)]:
            row, payload = fetch(epoch)
            assert row[2] == code, row
            assert payload == b""
        for epoch in (3, -1):
            row, payload = fetch(epoch)
            assert row[2] == 0, row
            assert len(split_batches(payload)) == 1
