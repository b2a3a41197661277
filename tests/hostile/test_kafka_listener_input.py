"""Bad input on the Kafka listener's port (issue 13.6): random bytes, truncated frames,
lying lengths, huge arrays, APIs and versions it does not speak. Each closes only its
own connection (as Kafka does), and a well-behaved kafka-python client is still
answered afterwards by the same broker process."""

from __future__ import annotations

import os
import random
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from labkit.testing import BrokerProcess, RawClient

pytestmark = pytest.mark.usefixtures("kafka_python_garbage")

MAX_REQUEST = 4096  # socket.request.max.bytes in these tests
CLOSE_BOUND_S = 10  # "is closed, does not hang": a generous bound on a loaded machine


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory):
    with BrokerProcess(
        data_dir=tmp_path_factory.mktemp("kafka-hostile"),
        config={"socket.request.max.bytes": str(MAX_REQUEST)},
    ) as proc:
        yield proc


def connect(broker) -> socket.socket:
    return socket.create_connection(("127.0.0.1", broker.port), timeout=CLOSE_BOUND_S)


def frame(body: bytes) -> bytes:
    return struct.pack(">i", len(body)) + body


def api_versions_v0(correlation_id: int) -> bytes:
    return frame(struct.pack(">hhih", 18, 0, correlation_id, 1) + b"x")


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """n bytes from sock (TCP may hand them over in pieces); b"" short if it closes."""
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def closed_by_broker(sock: socket.socket) -> bool:
    """True when the broker closes the connection without answering."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def still_answers(broker) -> None:
    """A well-behaved Kafka client and labkit's own client are both answered."""
    admin = KafkaAdminClient(bootstrap_servers=f"127.0.0.1:{broker.port}")
    try:
        assert isinstance(admin.list_topics(), list)
    finally:
        admin.close()
    with RawClient(broker.bootstrap) as raw:
        header, _ = raw.request("api_versions", {}, timeout=CLOSE_BOUND_S)
        assert header["error"] == 0
    assert broker.proc.poll() is None
    assert "Traceback" not in broker.output()  # bad input is expected, never a crash


@pytest.mark.parametrize("size", [MAX_REQUEST + 1, 104857600, 2**31 - 1, -1, -(2**31)], ids=str)
def test_a_frame_size_over_the_limit_or_negative_closes_the_connection(kafka_broker, size):
    with connect(kafka_broker) as sock:
        sock.sendall(struct.pack(">i", size))
        assert closed_by_broker(sock)
    assert f"a request frame of {size} bytes (socket.request.max.bytes={MAX_REQUEST})" in (
        kafka_broker.output()
    )
    still_answers(kafka_broker)


@pytest.mark.parametrize(
    "body",
    [
        struct.pack(">hhih", 0, 3, 1, 1) + b"x",  # Produce without its fields
        struct.pack(">hhih", 3, 13, 1, 1) + b"x",  # Metadata v13: not advertised
        struct.pack(">hhi", 3, 1, 1),  # header cut short
        struct.pack(">hhih", 3, 1, 1, 1) + b"x" + struct.pack(">i", 2**31 - 1),  # huge array
        struct.pack(">hhih", 3, 1, 1, 1) + b"x" + struct.pack(">i", -5),  # negative array
        struct.pack(">hhih", 3, 1, 1, 30000) + b"x",  # client id longer than the frame
    ],
    ids=["produce", "version", "short", "huge-array", "negative-array", "lying-string"],
)
def test_a_request_that_does_not_parse_closes_the_connection(kafka_broker, body):
    with connect(kafka_broker) as sock:
        sock.sendall(api_versions_v0(1) + frame(body) + api_versions_v0(3))
        sock.settimeout(CLOSE_BOUND_S)
        first = recv_exactly(sock, 4)  # the request before the bad one is answered
        assert len(first) == 4
        (size,) = struct.unpack(">i", first)
        answer = b""
        while len(answer) < size:
            answer += sock.recv(size - len(answer))
        assert struct.unpack_from(">i", answer)[0] == 1
        assert closed_by_broker(sock)  # ... and nothing after it
    still_answers(kafka_broker)


def test_a_lying_length_stalls_only_its_own_connection(kafka_broker):
    """A frame that promises more than it sends keeps its connection waiting (Kafka
    waits too); others are answered meanwhile, and closing it frees it."""
    with connect(kafka_broker) as liar:
        liar.sendall(struct.pack(">i", MAX_REQUEST) + struct.pack(">hhi", 18, 0, 1))
        still_answers(kafka_broker)
        with connect(kafka_broker) as honest:
            honest.sendall(api_versions_v0(9))
            assert struct.unpack(">ii", recv_exactly(honest, 8))[1] == 9
    still_answers(kafka_broker)


def test_random_bytes_and_truncated_frames_leave_the_listener_up(kafka_broker):
    rnd = random.Random(136)
    good = [
        api_versions_v0(1),
        frame(struct.pack(">hhih", 3, 1, 2, 1) + b"x" + struct.pack(">i", -1)),  # metadata v1
        frame(struct.pack(">hhih", 18, 3, 3, 1) + b"x" + b"\x02a\x02b\x00"),  # api_versions v3
    ]
    for _ in range(150):
        data = bytearray(rnd.choice(good))
        kind = rnd.randrange(4)
        if kind == 0:
            data = bytearray(rnd.randbytes(rnd.randrange(1, 200)))
        elif kind == 1:
            del data[rnd.randrange(1, len(data)) :]  # truncated, then the client leaves
        elif kind == 2:
            for _ in range(rnd.randint(1, 4)):
                data[rnd.randrange(4, len(data))] = rnd.randrange(256)
        else:
            struct.pack_into(">i", data, 0, rnd.randrange(-(2**31), 2**31))  # lying length
        if rnd.random() < 0.5:  # behind requests the listener or the broker answers
            data = b"".join(rnd.choices(good, k=rnd.randint(1, 3))) + data
        with connect(kafka_broker) as sock:
            sock.sendall(bytes(data))
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(CLOSE_BOUND_S)
            while sock.recv(65536):  # answered or closed, never left hanging
                pass
    still_answers(kafka_broker)


def test_a_bad_request_behind_one_the_broker_answers_closes_only_that_connection(kafka_broker):
    """The bad frame is found when the broker's answer to the one before comes back
    (the connection was not being read meanwhile)."""
    metadata_v1 = frame(struct.pack(">hhih", 3, 1, 5, 1) + b"x" + struct.pack(">i", -1))
    with connect(kafka_broker) as sock:
        sock.sendall(metadata_v1 + frame(b"\x00\x03garbage"))
        size = struct.unpack(">i", recv_exactly(sock, 4))[0]
        answer = b""
        while len(answer) < size:
            answer += sock.recv(size - len(answer))
        assert struct.unpack_from(">i", answer)[0] == 5
        assert closed_by_broker(sock)
    still_answers(kafka_broker)


_OUT_OF_DESCRIPTORS = """
import logging, os, resource, sys, time
import zmq
from labkit.kafka.listener import KafkaListener, ListenSpec

logging.basicConfig(level=logging.WARNING)
spec = ListenSpec("PLAINTEXT", "127.0.0.1", 0, "127.0.0.1", 0, None, 9192)
listener = KafkaListener(zmq.Context(), "inproc://nobody", [spec], 1 << 20, 1 << 20)
listener.start()
time.sleep(0.2)  # the thread and libzmq's own descriptors are open
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 4, hard))
print(listener.port, flush=True)
time.sleep(120)
"""


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def test_out_of_descriptors_the_listener_waits_instead_of_spinning(tmp_path):
    """accept() failing with EMFILE leaves the connection in the backlog and the socket
    readable: a listener that only logged and polled again would spin a CPU (and take
    the GIL from the broker's loop thread)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _OUT_OF_DESCRIPTORS],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    clients = []
    try:
        port = int(proc.stdout.readline())
        for _ in range(12):  # more than the few descriptors it has left
            clients.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        time.sleep(1)  # let it run out
        before = _cpu_seconds(proc.pid)
        time.sleep(3)
        spent = _cpu_seconds(proc.pid) - before
        assert spent < 0.5, (
            f"the listener used {spent:.2f} s of CPU in 3 s while out of descriptors"
        )
    finally:
        for client in clients:
            client.close()
        proc.kill()
        _, stderr = proc.communicate()
    assert "cannot accept a Kafka connection (Too many open files)" in stderr
    assert "Traceback" not in stderr  # a ZeroMQ socket that cannot be made is the same case
