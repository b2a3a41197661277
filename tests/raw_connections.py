"""Raw TCP helpers the Kafka-protocol and port tests share (not a test module).

- Kafka's framing by hand: ``frame``, ``read_exactly``, ``read_frame``,
  ``closed_by_broker``.
- ``KafkaConnection``: one Kafka connection that writes requests and reads responses as
  kio entities, one correlation id after another (``call`` for a request and its
  answer; ``send``/``receive`` when a test wants them apart); ``kafka_request`` is one
  request on a connection of its own.
- ``scripted_server``: a TCP server that reads a request and writes the bytes it was
  given, to show labkit's client a server that is not a labkit broker.

Import as ``from tests.raw_connections import ...`` (pyproject puts the checkout's root on
pytest's path).
"""

from __future__ import annotations

import datetime
import io
import socket
import struct
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from kio.index import load_request_schema, load_response_schema
from kio.serial import entity_reader, entity_writer

WAIT_S = 30  # "answers, does not hang": generous on a shared machine


def frame(body: bytes) -> bytes:
    """``body`` behind Kafka's 4-byte size prefix."""
    return struct.pack(">i", len(body)) + body


def read_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes from ``sock`` (TCP may hand them over in pieces). Raises
    ConnectionError when the peer closes first."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def read_frame(sock: socket.socket) -> bytes:
    """One size-prefixed Kafka frame's body."""
    size = struct.unpack(">i", read_exactly(sock, 4))[0]
    return read_exactly(sock, size)


def closed_by_broker(sock: socket.socket) -> bool:
    """True when the peer closes the connection without answering."""
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


def nested_schema(api_key: int, version: int, name: str):
    """A class nested in kio's request schema (e.g. Produce's ``TopicProduceData``)."""
    schema = load_request_schema(api_key, version)
    return getattr(sys.modules[schema.__module__], name)


class KafkaConnection:
    """One raw Kafka connection: requests written and responses read with kio."""

    def __init__(self, sock: socket.socket, client_id: str = "hostile"):
        self.sock = sock
        self.client_id = client_id
        self.correlation = 0

    @classmethod
    def connect(cls, port: int, client_id: str = "hostile") -> KafkaConnection:
        return cls(socket.create_connection(("127.0.0.1", port), timeout=WAIT_S), client_id)

    def send(self, api_key: int, version: int, body) -> int:
        """Write one request (a kio entity); returns its correlation id."""
        schema = load_request_schema(api_key, version)
        header = schema.__header_schema__
        out = io.BytesIO()
        self.correlation += 1
        entity_writer(header)(
            out,
            header(
                request_api_key=api_key,
                request_api_version=version,
                correlation_id=self.correlation,
                client_id=self.client_id,
            ),
        )
        entity_writer(schema)(out, body)
        self.sock.sendall(frame(out.getvalue()))
        return self.correlation

    def receive(self, api_key: int, version: int, correlation: int):
        """Read the next response, which must carry ``correlation``."""
        answer = read_frame(self.sock)
        schema = load_response_schema(api_key, version)
        header, used = entity_reader(schema.__header_schema__)(answer, 0)
        assert header.correlation_id == correlation
        return entity_reader(schema)(answer, used)[0]

    def call(self, api_key: int, version: int, body=None, **fields):
        """Send ``body`` (or the request built from ``fields``) and read its response."""
        if body is None:
            body = load_request_schema(api_key, version)(**fields)
        return self.receive(api_key, version, self.send(api_key, version, body))

    def produce(self, records, acks=-1, topic="bad"):
        """One Produce v9 for partition 0 of ``topic``: the partition's response."""
        part = nested_schema(0, 9, "PartitionProduceData")(index=0, records=records)
        topic_data = nested_schema(0, 9, "TopicProduceData")(name=topic, partition_data=(part,))
        request = load_request_schema(0, 9)(
            transactional_id=None,
            acks=acks,
            timeout=datetime.timedelta(seconds=30),
            topic_data=(topic_data,),
        )
        correlation = self.send(0, 9, request)
        if acks == 0:
            return None
        self.last = self.receive(0, 9, correlation)
        return self.last.responses[0].partition_responses[0]

    def fetch(
        self, offset: int, topic="bad", max_wait_ms=0, partition_max_bytes: int = 1 << 20
    ) -> int:
        """Send one Fetch v12 of partition 0 of ``topic``; returns its correlation id."""
        partition = nested_schema(1, 12, "FetchPartition")(
            partition=0,
            current_leader_epoch=-1,
            fetch_offset=offset,
            last_fetched_epoch=-1,
            log_start_offset=-1,
            partition_max_bytes=partition_max_bytes,
        )
        fetch_topic = nested_schema(1, 12, "FetchTopic")(topic=topic, partitions=(partition,))
        request = load_request_schema(1, 12)(
            cluster_id=None,
            replica_id=-1,
            max_wait=datetime.timedelta(milliseconds=max_wait_ms),
            min_bytes=1,
            max_bytes=1 << 20,
            isolation_level=0,
            session_id=0,
            session_epoch=-1,
            topics=(fetch_topic,),
            forgotten_topics_data=(),
            rack_id="",
        )
        return self.send(1, 12, request)

    def metadata_create(self, topic: str) -> None:
        """Metadata v4 naming ``topic`` with auto-creation on."""
        self.call(
            3,
            4,
            topics=(nested_schema(3, 4, "MetadataRequestTopic")(name=topic),),
            allow_auto_topic_creation=True,
        )

    def close(self) -> None:
        self.sock.close()


def kafka_request(port: int, body):
    """Send one request (a kio entity) on a connection of its own; return the response."""
    conn = KafkaConnection.connect(port, client_id="t")
    try:
        return conn.call(body.__api_key__, body.__version__, body)
    finally:
        conn.close()


@contextmanager
def scripted_server(answer: bytes | None) -> Iterator[str]:
    """A TCP server on a free port (yields "host:port") that reads one request and writes
    ``answer``, then holds the connection open until the client hangs up; ``answer``
    None: it hangs up without a word."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                try:
                    conn.settimeout(5)
                    conn.recv(4096)
                    if answer is None:
                        continue
                    conn.sendall(answer)
                    conn.settimeout(0.5)  # to see ``stop`` while the client holds on
                    while not stop.is_set():
                        try:
                            if not conn.recv(1):
                                break
                        except TimeoutError:
                            continue
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        server.close()
