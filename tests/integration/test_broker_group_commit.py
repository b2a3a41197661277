"""Issue 19 item 2: the broker's loop thread never fsyncs; offset commits are
group-committed by the flusher thread and still survive kill -9.

The first test runs the real BrokerServer in this process (its loop on a thread of
its own, real sockets) and wraps ``os.fsync``/``os.fdatasync`` to record which thread
calls them while a workload touches every durable path: topic changes, auto-create,
acks=-1 produces, delete_records, offset commits, offset deletion, group deletion, offset expiry
(the clock's wall time jumps past offsets.retention.minutes), a client-quota change.
"""

from __future__ import annotations

import os
import random
import threading
import time

from labkit._clock import RealClock
from labkit.broker.config import BrokerConfig
from labkit.broker.server import BrokerServer
from labkit.protocol.records import encode_batch
from labkit.testing import BrokerProcess, RawClient
from labkit.testing.broker import free_port

LOOP = "labkit-loop-under-test"
TS = 1_700_000_000_000


def batch(*values: bytes) -> bytes:
    return encode_batch([TS] * len(values), None, list(values))


def commit(client, group, topic, partition, offset) -> bytes:
    return client.send(
        "offset_commit",
        {
            "group_id": group,
            "member_id": "",
            "generation": -1,
            "offsets": [[topic, partition, offset, ""]],
        },
    )


def committed(client, group, topic, partition=0) -> int:
    header, _ = client.request(
        "offset_fetch", {"group_id": group, "partitions": [[topic, partition]]}
    )
    return header["partitions"][0][2]


class SkewedClock(RealClock):
    """The real clock, whose wall time can jump ahead (to expire offsets)."""

    __slots__ = ("skew_ms",)

    def __init__(self):
        self.skew_ms = 0

    def time_ms(self) -> int:
        return super().time_ms() + self.skew_ms


def expire_offsets(client: RawClient, clock: SkewedClock) -> None:
    """Commit for group 'old', then jump past its retention; wait until it is gone."""
    assert client.wait_for(commit(client, "old", "t", 0, 1))[0]["error"] == 0
    clock.skew_ms = 2 * 60_000  # offsets.retention.minutes=1 below
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        groups = client.request("list_groups", {})[0]["groups"]
        if "old" not in {g["group_id"] for g in groups}:
            return
        time.sleep(0.05)
    raise AssertionError("group 'old' should have expired")


def workload(bootstrap: str, clock: SkewedClock) -> None:
    with RawClient(bootstrap, timeout=20) as client:
        ok = client.request(
            "create_topics",
            {"topics": [{"name": "t", "num_partitions": 2, "replication_factor": 1}]},
        )[0]
        assert ok["topics"][0]["error"] == 0, ok
        assert (
            client.request("alter_configs", {"topics": {"t": {"retention.ms": "60000"}}})[0][
                "topics"
            ][0]["error"]
            == 0
        )
        assert (
            client.request("create_partitions", {"topics": {"t": 3}})[0]["topics"][0]["error"] == 0
        )
        for acks in (-1, 1, -1):
            header, _ = client.request(
                "produce", {"acks": acks, "targets": [["t", 0]]}, [batch(b"v")]
            )
            assert header["results"][0][1] == 0, header
        header, _ = client.request("delete_records", {"partitions": [["t", 0, 2]]})
        assert header["partitions"] == [["t", 0, 0, 2, None]], header
        meta, _ = client.request("metadata", {"topics": ["auto"], "allow_auto_create": True})
        assert meta["topics"][0]["error"] == 0, meta
        header, _ = client.request(
            "produce", {"acks": -1, "targets": [["auto2", 0]]}, [batch(b"w")]
        )
        assert header["results"][0][1] == 0, header
        rids = [commit(client, "g", "t", i % 3, i) for i in range(300)]  # pipelined
        for rid in rids:
            assert client.wait_for(rid)[0]["error"] == 0
        assert committed(client, "g", "t", 299 % 3) == 299
        header, _ = client.request("offset_delete", {"group_id": "g", "partitions": [["t", 1]]})
        assert header["partitions"] == [["t", 1, 0, None]], header
        assert committed(client, "g", "t", 1) == -1
        header, _ = client.request("delete_groups", {"group_ids": ["g"]})
        assert header["groups"][0]["error"] == 0, header
        expire_offsets(client, clock)
        header, _ = client.request("delete_topics", {"topics": ["t"]})
        assert header["topics"][0]["error"] == 0, header
        quota = {
            "entity": {"client-id": "x"},
            "ops": [{"key": "producer_byte_rate", "value": 4096}],
        }
        header, _ = client.request("alter_client_quotas", {"entries": [quota]})
        assert header["entries"][0]["error"] == 0, header
        header, _ = client.request("describe_client_quotas", {})
        assert header["entries"] == [
            {"entity": {"client-id": "x"}, "values": {"producer_byte_rate": 4096.0}}
        ]


def test_the_loop_thread_never_fsyncs(tmp_path, monkeypatch):
    callers: list[str] = []
    recording = threading.Event()

    def spy(real):
        def wrapper(fd):
            if recording.is_set():
                callers.append(threading.current_thread().name)
            return real(fd)

        return wrapper

    monkeypatch.setattr(os, "fsync", spy(os.fsync))
    monkeypatch.setattr(os, "fdatasync", spy(os.fdatasync))
    clock = SkewedClock()
    config = BrokerConfig(
        port=free_port(),
        data_dir=tmp_path / "data",
        offsets_retention_minutes=1,
        offsets_retention_check_interval_ms=50,
    )
    server = BrokerServer(config, clock)
    server.start()  # opening the data directory may fsync: before serving, on purpose
    loop = threading.Thread(target=server.serve_forever, name=LOOP, daemon=True)
    recording.set()
    loop.start()
    try:
        workload(f"localhost:{server.config.port}", clock)
    finally:
        recording.clear()  # shutdown flushes on the loop thread: nobody waits by then
        server.request_stop()
        loop.join(30)
    assert "labkit-flusher" in callers, "the workload should have fsynced on the flusher"
    assert LOOP not in callers, f"{callers.count(LOOP)} fsync calls on the loop thread"


def test_acknowledged_commits_survive_kill_9(broker):
    rng = random.Random(19)
    with RawClient(broker.bootstrap) as client:
        client.request(
            "create_topics",
            {"topics": [{"name": "c", "num_partitions": 1, "replication_factor": 1}]},
        )
    for cycle in range(5):
        acked = 0
        sent = {}
        offset = cycle * 1_000_000
        killer = threading.Timer(rng.uniform(0.05, 0.25), broker.proc.kill)
        with RawClient(broker.bootstrap, timeout=2) as client:
            killer.start()
            try:
                while True:
                    alive = broker.proc.poll() is None
                    while alive and len(sent) < 16:
                        offset += 1
                        sent[commit(client, "g", "c", 0, offset)] = offset
                    got = client.receive(0.05 if alive else 0.3)
                    if got is None:
                        if not alive:
                            break
                        continue
                    rid, header, _ = got
                    value = sent.pop(rid)
                    if header["error"] == 0:
                        acked = max(acked, value)
            finally:
                killer.cancel()
                broker.proc.wait(10)
        broker.restart()
        with RawClient(broker.bootstrap) as client:
            after = committed(client, "g", "c")
        assert after >= acked, f"cycle {cycle}: commit {acked} was acknowledged, {after} kept"
        assert acked > cycle * 1_000_000, "some commits should have been acknowledged"


def test_a_commit_that_changes_nothing_still_waits_for_durability(tmp_path):
    # two identical commits in flight: the second is answered no sooner than the first
    with BrokerProcess(data_dir=tmp_path / "d") as proc, RawClient(proc.bootstrap) as client:
        client.request(
            "create_topics",
            {"topics": [{"name": "c", "num_partitions": 1, "replication_factor": 1}]},
        )
        first = commit(client, "g", "c", 0, 7)
        second = commit(client, "g", "c", 0, 7)
        order = [client.receive(5)[0] for _ in range(2)]
        assert order == [first, second]


def test_an_acknowledged_group_deletion_survives_kill_9(broker):
    with RawClient(broker.bootstrap) as client:
        client.request(
            "create_topics",
            {"topics": [{"name": "c", "num_partitions": 1, "replication_factor": 1}]},
        )
        for group in ("gone", "kept"):
            assert client.wait_for(commit(client, group, "c", 0, 5))[0]["error"] == 0
        header, _ = client.request("delete_groups", {"group_ids": ["gone"]})
        assert header["groups"][0]["error"] == 0, header
    broker.kill()  # SIGKILL right after the answer: the deletion was fsync'd before it
    broker.proc.wait(10)
    broker.restart()
    with RawClient(broker.bootstrap) as client:
        groups = {g["group_id"] for g in client.request("list_groups", {})[0]["groups"]}
        assert groups == {"kept"}
        assert committed(client, "gone", "c") == -1
