"""Hostile clients against the real broker: parked fetches, fetch rows, memory per
connection, file descriptors (issue 11 items 5, 6, 8, 11).

Each test runs an attack next to a well-behaved client and checks that the latter
still gets its answers (a long poll still waits about its ``max_wait_ms``) and that
the broker's memory stays bounded. Bounds are generous: the machine is shared.
"""

from __future__ import annotations

import os
import re
import resource
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import zmq

from labkit.broker.config import BrokerConfig
from labkit.broker.parking import MAX_PARKED_PER_CLIENT
from labkit.broker.server import BrokerServer
from labkit.protocol.frames import build_request
from labkit.protocol.records import encode_batch
from labkit.testing.broker import RawClient, free_port

MiB = 1 << 20


def make_topic(client: RawClient, name: str, partitions: int = 1) -> None:
    header, _ = client.request(
        "create_topics", {"topics": [{"name": name, "num_partitions": partitions}]}
    )
    assert header["topics"][0]["error"] == 0, header


def fetch_header(
    topic: str,
    offset: int = 0,
    max_wait_ms: int = 500,
    min_bytes: int = 1,
    partition_max: int = MiB,
) -> dict:
    return {
        "max_wait_ms": max_wait_ms,
        "min_bytes": min_bytes,
        "max_bytes": 50 * MiB,
        "partitions": [[topic, 0, offset, partition_max]],
    }


def long_poll_seconds(bootstrap: str, topic: str, max_wait_ms: int = 500) -> float:
    """How long a well-behaved consumer's long poll on an empty partition takes."""
    with RawClient(bootstrap, timeout=10) as good:
        started = time.monotonic()
        header, _ = good.request("fetch", fetch_header(topic, max_wait_ms=max_wait_ms))
        assert header["error"] == 0, header
        return time.monotonic() - started


class PeakRss:
    """Samples a process's RSS in the background; ``peak`` is the highest seen."""

    def __init__(self, pid: int):
        self._proc = psutil.Process(pid)
        self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def zmtp_dealer(port: int) -> socket.socket:
    """A raw TCP socket that has done the ZMTP 3.0 NULL handshake as a DEALER."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    raw.sendall(
        b"\xff" + b"\0" * 8 + b"\x7f" + b"\x03\x00" + b"NULL" + b"\0" * 16 + b"\0" + b"\0" * 31
    )
    body = b"\x05READY" + b"\x0bSocket-Type" + struct.pack(">I", 6) + b"DEALER"
    raw.sendall(bytes([0x04, len(body)]) + body)
    received = b""
    while len(received) < 64:  # the broker's greeting
        received += raw.recv(64 - len(received))
    return raw


# -- item 5: parked fetches --------------------------------------------------------------


def test_huge_max_wait_is_refused_and_long_polls_still_wait(broker, unique_topic):
    with RawClient(broker.bootstrap) as setup:
        make_topic(setup, unique_topic)
    with RawClient(broker.bootstrap) as attacker:
        rids = [
            attacker.send("fetch", fetch_header(unique_topic, max_wait_ms=10**15))
            for _ in range(10_000)
        ]
        header, _ = attacker.wait_for(rids[0], timeout=10)
        assert header["error"] == 42
        assert "max_wait_ms" in header["message"]
    # the attacker is gone: the class's long polls still wait
    assert 0.35 < long_poll_seconds(broker.bootstrap, unique_topic) < 5


def test_one_client_cannot_take_every_parking_slot(broker, unique_topic):
    with RawClient(broker.bootstrap) as setup:
        make_topic(setup, unique_topic)
    with RawClient(broker.bootstrap, timeout=10) as attacker:
        rids = [
            attacker.send("fetch", fetch_header(unique_topic, max_wait_ms=25_000))
            for _ in range(10_500)
        ]
        # over its share, its fetches are answered at once (it only busy-polls itself)
        header, _ = attacker.wait_for(rids[-1], timeout=10)
        assert header["error"] == 0
        for _ in range(3):
            assert 0.35 < long_poll_seconds(broker.bootstrap, unique_topic) < 5


def test_a_gone_clients_parked_fetches_leave_the_lot(tmp_path, unique_topic):
    """In-process broker, so the test can look at its parking lot."""
    server = BrokerServer(BrokerConfig.build("127.0.0.1", 0, tmp_path / "d"))
    server.start()
    loop = threading.Thread(target=server.serve_forever, daemon=True)
    loop.start()
    try:
        bootstrap = f"127.0.0.1:{server.config.port}"
        with RawClient(bootstrap) as setup:
            make_topic(setup, unique_topic)
        for _ in range(3):
            with RawClient(bootstrap) as client:
                for _ in range(MAX_PARKED_PER_CLIENT):
                    client.send("fetch", fetch_header(unique_topic, max_wait_ms=25_000))
                deadline = time.monotonic() + 5
                while len(server.parking) < MAX_PARKED_PER_CLIENT and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert len(server.parking) == MAX_PARKED_PER_CLIENT
            deadline = time.monotonic() + 5
            while len(server.parking) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(server.parking) == 0  # long before their 25 s were up
    finally:
        server.request_stop()
        loop.join(10)


# -- item 6: fetch rows ------------------------------------------------------------------


def test_a_fetch_naming_a_partition_many_times_is_invalid(broker, unique_topic):
    with RawClient(broker.bootstrap) as client:
        make_topic(client, unique_topic)
        header = fetch_header(unique_topic)
        header["partitions"] = [[unique_topic, 0, 0, MiB]] * 5000
        rids = [client.send("fetch", header) for _ in range(50)]
        for rid in rids:
            reply, _ = client.wait_for(rid, timeout=10)
            assert reply["error"] == 42
            assert f"{unique_topic}-0 appears more than once" in reply["message"]
        started = time.monotonic()
        client.request(
            "produce",
            {"acks": 1, "targets": [[unique_topic, 0]]},
            [encode_batch([1000], None, [b"v"])],
        )
        assert client.request("api_versions", {})[0]["error"] == 0
        assert time.monotonic() - started < 2
    assert psutil.Process(broker.pid).memory_info().rss < 200 * MiB


# -- item 8: memory per connection --------------------------------------------------------


def test_a_message_that_never_ends_is_cut_off(broker, unique_topic):
    with RawClient(broker.bootstrap, timeout=10) as good:
        make_topic(good, unique_topic)
        parked = good.send("fetch", fetch_header(unique_topic, max_wait_ms=4000))
        frame = b"\x03" + struct.pack(">Q", 16 * MiB) + b"\0" * (16 * MiB)  # MORE | LONG
        raw = zmtp_dealer(broker.zmq_port)
        with PeakRss(broker.pid) as rss:
            sent = 0
            try:
                for _ in range(60):
                    raw.sendall(frame)
                    sent += 1
            except OSError:
                pass  # the broker closed this connection: what we want
            finally:
                raw.close()
            time.sleep(0.3)
        assert sent < 60, "the broker kept reading a message that never ends"
        assert rss.peak < 250 * MiB, f"broker RSS reached {rss.peak / MiB:.0f} MiB"
        assert "closed the connection from" in broker.output()
        # nobody else noticed: the good client's parked fetch is still answered
        header, _ = good.wait_for(parked, timeout=10)
        assert header["error"] == 0
        assert good.request("api_versions", {})[0]["error"] == 0


def test_a_client_that_never_reads_its_replies_is_disconnected(broker, unique_topic):
    with RawClient(broker.bootstrap, timeout=10) as good:
        make_topic(good, unique_topic)
        payload = b"x" * 100_000
        for _ in range(10):
            good.request(
                "produce",
                {"acks": 1, "targets": [[unique_topic, 0]]},
                [encode_batch([1000 + i for i in range(9)], None, [payload] * 9)],
            )
        ctx = zmq.Context.instance()
        lazy = ctx.socket(zmq.DEALER)
        lazy.setsockopt(zmq.RCVHWM, 1)
        lazy.setsockopt(zmq.RCVBUF, 64 * 1024)
        lazy.setsockopt(zmq.LINGER, 0)
        lazy.connect(f"tcp://{broker.zmq_bootstrap}")
        try:
            with PeakRss(broker.pid) as rss:
                for n in range(600):  # ~9 MB of replies each, never read
                    lazy.send_multipart(
                        build_request(
                            b"f%d" % n,
                            "fetch",
                            fetch_header(unique_topic, partition_max=10 * MiB),
                            [],
                        )
                    )
                    if n % 50 == 0:
                        assert good.request("api_versions", {})[0]["error"] == 0
                deadline = time.monotonic() + 10
                while (
                    "closed the connection from" not in broker.output()
                    and time.monotonic() < deadline
                ):
                    time.sleep(0.05)
            assert "replies it has not read" in broker.output()
            assert rss.peak < 300 * MiB, f"broker RSS reached {rss.peak / MiB:.0f} MiB"
            assert good.request("api_versions", {})[0]["error"] == 0
        finally:
            lazy.close()


# -- item 11: file descriptors -------------------------------------------------------------


def _broker_with_fd_limit(tmp_path, soft: int, hard: int):
    port = free_port()
    log_path = tmp_path / "broker.log"

    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    log = open(log_path, "wb")  # noqa: SIM115 - the caller closes it with the broker
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "labkit.broker",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / "d"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        preexec_fn=limit,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    deadline = time.monotonic() + 15
    while "listening on" not in log_path.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    return proc, port, log, log_path


def _soft_nofile(pid: int) -> int:
    text = Path(f"/proc/{pid}/limits").read_text()
    return int(re.search(r"Max open files\s+(\d+)", text).group(1))


def test_the_soft_fd_limit_is_raised_to_the_hard_one(tmp_path):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    proc, _port, log, _path = _broker_with_fd_limit(tmp_path, 256, hard)
    try:
        assert _soft_nofile(proc.pid) == hard
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_partitions_are_refused_before_connections_starve(tmp_path):
    proc, port, log, log_path = _broker_with_fd_limit(tmp_path, 300, 300)
    bootstrap = f"127.0.0.1:{port}"
    try:
        refused = None
        with RawClient(bootstrap, timeout=10) as admin:
            for n in range(40):
                header, _ = admin.request(
                    "create_topics", {"topics": [{"name": f"many-{n}", "num_partitions": 20}]}
                )
                outcome = header["topics"][0]
                if outcome["error"] != 0:
                    refused = outcome
                    break
        assert refused is not None, "the broker kept creating partitions up to its fd limit"
        assert refused["error"] == 44, refused
        assert "file descriptors" in refused["message"]
        assert "disk" not in refused["message"]
        # connections still get answers
        clients = [RawClient(bootstrap, timeout=10) for _ in range(60)]
        try:
            for client in clients:
                assert client.request("api_versions", {})[0]["error"] == 0
        finally:
            for client in clients:
                client.close()
        # when connections alone use every descriptor, the log says so plainly
        raws = [socket.create_connection(("127.0.0.1", port)) for _ in range(250)]
        try:
            deadline = time.monotonic() + 15
            while (
                "out of file descriptors" not in log_path.read_text()
                and time.monotonic() < deadline
            ):
                time.sleep(0.1)
            assert "out of file descriptors" in log_path.read_text()
        finally:
            for raw in raws:
                raw.close()
        with RawClient(bootstrap, timeout=10) as late:
            assert late.request("api_versions", {})[0]["error"] == 0
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
