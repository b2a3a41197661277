"""A real broker process serves a follower: this test is the follower. It asks
offsets_for_leader_epoch where its last epoch ends, truncates its own log there (KIP-101),
fetches with a replica_id and appends the leader's batches at the leader's offsets, and
ends byte-identical to the leader. Raw DEALER (labkit.testing.RawClient), no client
library."""

from __future__ import annotations

import pytest

from labkit.log import LogConfig, PartitionLog
from labkit.log.leader_epochs import CHECKPOINT
from labkit.protocol.records import encode_batch, split_batches, validate_batch
from labkit.testing import BrokerProcess, FakeClock, RawClient

TOPIC = "replicated"


def batch(*values):
    return encode_batch([1_700_000_000_000] * len(values), None, [v.encode() for v in values])


def produce(client, *values):
    header, _ = client.request("produce", {"acks": 1, "targets": [[TOPIC, 0]]}, [batch(*values)])
    assert header["error"] == 0, header
    assert header["results"][0][2] == 0, header


def fetch(client, offset, **extra):
    header, payloads = client.request(
        "fetch", {"max_wait_ms": 0, "partitions": [[TOPIC, 0, offset, 1 << 20]], **extra}
    )
    assert header["error"] == 0, header
    return header["partitions"][0], payloads[0]


@pytest.fixture
def leader(tmp_path):
    """A broker whose partition has leader epochs 0 (from offset 0) and 2 (from 2): the
    checkpoint is written while it is stopped, as a controller would have assigned them."""
    with BrokerProcess(data_dir=tmp_path / "leader") as proc:
        with RawClient(proc.bootstrap) as client:
            header, _ = client.request(
                "create_topics", {"topics": [{"name": TOPIC, "num_partitions": 1}]}
            )
            assert header["topics"][0]["error"] == 0, header
            produce(client, "a", "b")
            produce(client, "c")
        proc.stop()
        (tmp_path / "leader" / f"{TOPIC}-0" / CHECKPOINT).write_text("0\n2\n0 0\n2 2\n")
        proc.start()
        with RawClient(proc.bootstrap) as client:
            produce(client, "d")
            produce(client, "e", "f")
        yield proc


def test_a_diverged_follower_truncates_at_the_epoch_boundary_and_catches_up(tmp_path, leader):
    follower = PartitionLog.open(tmp_path / "follower" / f"{TOPIC}-0", LogConfig(), FakeClock())
    with RawClient(leader.bootstrap) as client:
        # the follower got offsets 0-1 in epoch 0, then led epoch 1 alone and wrote 2-3,
        # which the leader of epoch 2 never had
        _row, first = fetch(client, 0, replica_id=1)
        end_of_first = split_batches(first)[0][1]
        follower.append_as_follower(first[:end_of_first], epochs=[(0, 0)])
        assert follower.log_end_offset == 2
        follower.leader_epochs.assign(1, 2)
        follower.append(*_produced("x", "y"))
        assert follower.log_end_offset == 4

        header, _ = client.request(
            "offsets_for_leader_epoch",
            {"replica_id": 1, "partitions": [[TOPIC, 0, -1, follower.leader_epochs.latest_epoch]]},
        )
        assert header["partitions"] == [[TOPIC, 0, 0, 0, 2]]  # epoch 1 unknown: 0 ends at 2
        epoch, leader_end = header["partitions"][0][3:]
        follower_epoch, follower_end = follower.leader_epochs.end_offset_for(
            epoch, follower.log_end_offset
        )
        assert follower_epoch == epoch
        assert follower.truncate_to(min(leader_end, follower_end)) == 2

        while True:
            row, data = fetch(client, follower.log_end_offset, replica_id=1)
            assert row[:3] == [TOPIC, 0, 0]
            if not data:
                break
            follower.append_as_follower(data, epochs=row[5])
        assert row[3] == follower.log_end_offset == 6  # single broker: high watermark = end
        leader_bytes = all_bytes(lambda offset: fetch(client, offset)[1], 6)
    assert all_bytes(lambda offset: follower.read(offset, 1 << 20), 6) == leader_bytes
    assert follower.leader_epochs.entries() == [(0, 0), (2, 2)]


def all_bytes(read, end):
    """Every batch from offset 0 to ``end``, in as many reads as it takes (a read stops at
    a segment's end)."""
    out, offset = b"", 0
    while offset < end:
        data = read(offset)
        out += data
        offset = validate_batch(data, split_batches(data)[-1][0], produced=False).next_offset
    return out


def _produced(*values):
    data = batch(*values)
    return data, validate_batch(data)


def test_consumers_fetch_as_before_and_a_bad_replica_id_is_refused(leader):
    with RawClient(leader.bootstrap) as client:
        row, _data = fetch(client, 0)
        assert row == [TOPIC, 0, 0, 6, 0]  # five fields, the high watermark is the log end
        header, _ = client.request(
            "fetch", {"max_wait_ms": 0, "partitions": [[TOPIC, 0, 0, 1024]], "replica_id": -7}
        )
        assert header["error"] == 42
        assert "replica_id" in header["message"]
