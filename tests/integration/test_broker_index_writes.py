"""A segment roll's index files are written by the flusher thread, never by the broker's
loop thread; and a kill -9 before they are written loses nothing (recovery rebuilds them).

The first test runs the real BrokerServer in this process (its loop on a thread of its
own, real sockets, as tests/integration/test_broker_group_commit.py does for fsync) and
wraps ``Path.write_bytes`` to record which thread writes index contents while produces
with acks=1 and acks=-1 roll small segments.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from labkit.broker.config import BrokerConfig
from labkit.broker.server import BrokerServer
from labkit.protocol.records import encode_batch
from labkit.testing import RawClient
from labkit.testing.broker import free_port

LOOP = "labkit-loop-under-test"
TS = 1_700_000_000_000
WAIT_S = 30  # generous: the machine is shared
INDEX_SUFFIXES = (".index", ".timeindex", ".writing")


def batch(i: int) -> bytes:
    return encode_batch([TS + i], None, [b"v%03d" % i + b"x" * 200])


def produce_rolling(client: RawClient, topic: str, count: int, acks: int) -> None:
    """``count`` batches of ~250 bytes to a topic with segment.bytes=512: rolls often."""
    for i in range(count):
        header, _ = client.request("produce", {"acks": acks, "targets": [[topic, 0]]}, [batch(i)])
        assert header["results"][0][1] == 0, header


def create_rolling_topic(client: RawClient, topic: str) -> None:
    header, _ = client.request(
        "create_topics",
        {
            "topics": [
                {
                    "name": topic,
                    "num_partitions": 1,
                    "replication_factor": 1,
                    "configs": {"segment.bytes": "512"},
                }
            ]
        },
    )
    assert header["topics"][0]["error"] == 0, header


def sealed_time_indexes(directory: Path) -> list[Path]:
    """The .timeindex files of every segment but the newest (the active one)."""
    return sorted(directory.glob("*.timeindex"))[:-1]


def test_the_loop_thread_never_writes_index_files(tmp_path, monkeypatch):
    writers: list[tuple[str, str]] = []
    recording = threading.Event()
    real_write_bytes = Path.write_bytes

    def spy(path: Path, data) -> int:
        if recording.is_set() and path.name.endswith(INDEX_SUFFIXES) and len(data):
            writers.append((threading.current_thread().name, path.name))
        return real_write_bytes(path, data)

    monkeypatch.setattr(Path, "write_bytes", spy)
    config = BrokerConfig(port=free_port(), data_dir=tmp_path / "data")
    server = BrokerServer(config)
    server.start()
    loop = threading.Thread(target=server.serve_forever, name=LOOP, daemon=True)
    recording.set()
    loop.start()
    try:
        with RawClient(f"localhost:{server.config.port}", timeout=20) as client:
            for topic, acks in (("rolls-acks-1", 1), ("rolls-acks-all", -1)):
                create_rolling_topic(client, topic)
                produce_rolling(client, topic, 6, acks)
        for topic in ("rolls-acks-1", "rolls-acks-all"):  # no acks=all needed for acks=1
            directory = tmp_path / "data" / f"{topic}-0"
            deadline = time.monotonic() + WAIT_S
            while time.monotonic() < deadline and not all(
                p.stat().st_size for p in sealed_time_indexes(directory)
            ):
                time.sleep(0.05)
            sealed = sealed_time_indexes(directory)
            assert len(sealed) >= 3, sorted(p.name for p in directory.iterdir())
            assert all(p.stat().st_size for p in sealed), "sealed segments' time indexes"
            assert not list(directory.glob("*.writing")), "staged index files left behind"
    finally:
        recording.clear()  # shutdown writes the active segments' indexes on the loop thread
        server.request_stop()
        loop.join(30)
    threads = {name for name, _file in writers}
    assert "labkit-flusher" in threads, writers
    assert LOOP not in threads, [w for w in writers if w[0] == LOOP]
