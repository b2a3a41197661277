"""The real broker process against hostile input and its own life cycle: malformed
frames, huge frames, raw TCP garbage, a taken port, a shared data directory,
bad flags, and clean shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import json
import random
import signal
import socket
import subprocess
import sys

import pytest

from labkit.protocol.frames import MAGIC
from labkit.protocol.records import encode_batch
from labkit.testing import BrokerProcess, RawClient
from labkit.testing.broker import BrokerStartError


def batch(*values):
    return encode_batch([1_700_000_000_000] * len(values), None, list(values))


def still_serves(broker, topic="alive"):
    assert broker.proc.poll() is None, broker.output()
    with RawClient(broker.bootstrap) as client:
        header, _ = client.request("api_versions", {})
        assert header["error"] == 0
        header, _ = client.request(
            "produce", {"acks": 1, "targets": [[topic, 0]]}, [batch(b"still here")]
        )
        assert header["results"][0][1] == 0
        header, payloads = client.request(
            "fetch",
            {
                "max_wait_ms": 0,
                "min_bytes": 1,
                "max_bytes": 1 << 20,
                "partitions": [[topic, 0, header["results"][0][0], 1 << 20]],
            },
        )
        assert header["partitions"][0][2] == 0
        assert len(payloads[0]) > 0


def run_broker(*args, timeout=20):
    return subprocess.run(
        [sys.executable, "-m", "labkit.broker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_malformed_requests_get_an_error_reply_when_the_id_is_readable(broker):
    good = batch(b"ok")
    bad_crc = bytearray(good)
    bad_crc[-1] ^= 0x55
    cases = [
        ([MAGIC, b"id1"], 42),  # too few frames
        ([MAGIC, b"id2", b"no_such_api", b"{}"], 35),  # unknown API
        ([MAGIC, b"id3", b"metadata", b"{not json"], 42),  # bad JSON
        ([MAGIC, b"id4", b"metadata", b"[1, 2]"], 42),  # not an object
        ([MAGIC, b"id5", b"\xff\xfe", b"{}"], 42),  # API not ASCII
        ([MAGIC, b"id6", b"metadata", b'{"topics": 5}'], 42),
        ([MAGIC, b"id7", b"fetch", b'{"partitions": [[1, 2]]}'], 42),
        ([MAGIC, b"id8", b"produce", b'{"acks": 1, "targets": "t"}', good], 42),
        ([MAGIC, b"id9", b"create_topics", b'{"topics": [5]}'], 42),
        ([MAGIC, b"id10", b"list_offsets", b'{"partitions": [["t", 0]]}'], 42),
        ([MAGIC, b"id11", b"alter_configs", b'{"topics": []}'], 42),
        ([MAGIC, b"id12", b"join_group", b'{"group_id": 7}'], None),  # group API: any error
        ([MAGIC, b"id13", b"fetch", b'{"max_wait_ms": "soon", "partitions": []}'], 42),
        (
            [
                MAGIC,
                b"id14",
                b"produce",
                json.dumps({"acks": 1, "targets": [["fz", 0]]}).encode(),
                bytes(bad_crc),
            ],
            0,
        ),
    ]
    with RawClient(broker.bootstrap) as client:
        for frames, code in cases:
            client.send_raw(frames)
            header, _ = client.wait_for(frames[1])
            if code is None:
                assert header["error"] != 0, frames
            else:
                assert header["error"] == code, (frames, header)
            if frames[1] == b"id14":
                assert header["results"][0][1] == 2  # CORRUPT_MESSAGE for the bad CRC
    still_serves(broker)


def test_a_message_with_too_many_frames_is_refused(broker):
    with RawClient(broker.bootstrap) as client:
        client.send_raw([MAGIC, b"many", b"api_versions", b"{}", *([b"p"] * 10_050)])
        header, _ = client.wait_for(b"many")
        assert header["error"] == 42
        assert "frames" in header["message"]
    still_serves(broker)


def test_unreadable_messages_are_dropped_and_counted(broker):
    with RawClient(broker.bootstrap) as client:
        for frames in (
            [b"garbage"],
            [b"XXX", b"id", b"api_versions", b"{}"],
            [MAGIC, b"x" * 17, b"api_versions", b"{}"],
            [b""],
            [MAGIC],
        ):
            client.send_raw(frames)
        assert client.receive(0.3) is None
    still_serves(broker)
    assert broker.stop() == 0
    assert "5 malformed messages dropped" in broker.output()


def test_random_frames_never_kill_the_broker(broker):
    rng = random.Random(1234)
    apis = [
        b"api_versions",
        b"metadata",
        b"produce",
        b"fetch",
        b"list_offsets",
        b"create_topics",
        b"delete_topics",
        b"create_partitions",
        b"describe_configs",
        b"alter_configs",
        b"join_group",
        b"heartbeat",
        b"offset_commit",
        b"offset_fetch",
    ]
    odd_values = [
        None,
        0,
        -1,
        1,
        2**70,
        1.5,
        True,
        "x",
        "",
        [],
        {},
        [["fz", 0]],
        [["fz", 0, 0, 100]],
        [["fz", -5, -9, -1]],
        {"fz": 3},
        {"fz": None},
        ["fz"],
        [None],
        "../etc",
    ]
    keys = [
        "topics",
        "partitions",
        "targets",
        "acks",
        "max_wait_ms",
        "min_bytes",
        "max_bytes",
        "group_id",
        "validate_only",
        "allow_auto_create",
        "name",
    ]
    good = batch(b"v")
    with RawClient(broker.bootstrap) as client:
        for i in range(300):
            kind = rng.random()
            if kind < 0.3:
                frames = [
                    bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 40)))
                    for _ in range(rng.randrange(1, 7))
                ]
            else:
                header = {
                    rng.choice(keys): rng.choice(odd_values) for _ in range(rng.randrange(0, 5))
                }
                payloads = [
                    rng.choice(
                        [
                            good,
                            good[: rng.randrange(len(good))],
                            b"",
                            bytes(rng.getrandbits(8) for _ in range(60)),
                        ]
                    )
                    for _ in range(rng.randrange(0, 3))
                ]
                frames = [
                    MAGIC,
                    b"f%d" % i,
                    rng.choice(apis),
                    json.dumps(header).encode(),
                    *payloads,
                ]
            client.send_raw(frames)
        while client.receive(1.0) is not None:  # drain whatever was answered
            pass
    still_serves(broker)


def test_a_huge_frame_drops_that_connection_only(tmp_path):
    with BrokerProcess(
        data_dir=tmp_path / "d", config={"socket.request.max.bytes": "1048576"}
    ) as broker:
        with RawClient(broker.bootstrap) as client:
            client.send_raw(
                [MAGIC, b"big", b"produce", b'{"acks":1,"targets":[["h",0]]}', b"\0" * (3 << 20)]
            )
            assert client.receive(1.0) is None
        # a batch over message.max.bytes but under the frame limit gets a clean error
        with RawClient(broker.bootstrap) as client:
            header, _ = client.request(
                "produce",
                {"acks": 1, "targets": [["h", 0]]},
                [batch(b"z" * 1_048_000, b"z" * 1000)],
            )
            assert header["results"][0][1] == 10
        still_serves(broker)


def test_raw_tcp_garbage_is_survived(broker):
    rng = random.Random(7)
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", broker.zmq_port), timeout=2) as raw:
            raw.sendall(bytes(rng.getrandbits(8) for _ in range(4096)))
    with socket.create_connection(("127.0.0.1", broker.zmq_port), timeout=2) as raw:
        raw.sendall(b"\xff" + b"\x00" * 8 + b"\x7f")  # a ZMTP greeting, then nothing
    still_serves(broker)


def test_taken_port_is_one_clear_line_and_exit_code_2(shared_broker, tmp_path):
    result = run_broker(
        "--host",
        "127.0.0.1",
        "--port",
        str(shared_broker.port),
        "--zmq-port",
        "0",
        "--data-dir",
        str(tmp_path / "other"),
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"port {shared_broker.port}" in lines[0]
    assert "--port" in lines[0]
    assert "another broker" in lines[0]


def test_broker_process_reports_a_start_failure_with_the_output(shared_broker, tmp_path):
    other = BrokerProcess(data_dir=tmp_path / "o", port=shared_broker.port)
    try:
        with pytest.raises(BrokerStartError, match="already in use"):
            other.start()
        assert other.proc.returncode == 2
    finally:
        other.close()


def test_two_brokers_cannot_share_a_data_directory(broker):
    result = run_broker("--port", "0", "--data-dir", str(broker.data_dir))
    assert result.returncode == 2
    assert "in use by another broker" in result.stderr
    assert "--data-dir" in result.stderr
    still_serves(broker)


def test_unknown_config_key_and_bad_flag_value(tmp_path):
    result = run_broker(
        "--port", "0", "--data-dir", str(tmp_path / "d"), "--config", "log.retention.weeks=2"
    )
    assert result.returncode == 2
    assert "unknown broker config 'log.retention.weeks'" in result.stderr
    result = run_broker(
        "--port", "0", "--data-dir", str(tmp_path / "d"), "--config", "num.partitions"
    )
    assert result.returncode == 2
    assert "key=value" in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_gives_a_clean_exit(broker, sig):
    assert (
        f"labkit broker listening on 127.0.0.1:{broker.port} (Kafka protocol), "
        f"ZeroMQ on 127.0.0.1:{broker.zmq_port}, data in"
    ) in broker.output()
    with RawClient(broker.bootstrap) as client:
        client.request("produce", {"acks": 1, "targets": [["bye", 0]]}, [batch(b"x")])
        parked = client.send(
            "fetch",
            {
                "max_wait_ms": 30000,
                "min_bytes": 1,
                "max_bytes": 1 << 20,
                "partitions": [["bye", 0, 1, 100]],
            },
        )
        assert client.receive(0.2) is None
        broker.proc.send_signal(sig)
        header, _ = client.wait_for(parked, 10)  # parked fetches are answered on the way out
        assert header["error"] == 0
    assert broker.proc.wait(10) == 0
    assert "stopped cleanly" in broker.output()
    broker.start()  # the data directory lock was released
    still_serves(broker, "bye")
