"""InitProducerId (API 22, v0-4) through the Kafka listener, over a real socket: a
new producer id with epoch 0 per request, never repeated; a transactional id gets
UNSUPPORTED_VERSION (35): labkit has no transactions."""

from __future__ import annotations

import datetime
import io
import socket
import struct
import time

import pytest
from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.serial import entity_reader, entity_writer

from labkit.testing import BrokerProcess
from tests.raw_connections import read_frame

pytestmark = pytest.mark.usefixtures("kafka_python_garbage")

KEY = 22


def init_producer_id(sock, version: int, correlation_id: int, transactional_id=None):
    schema = load_request_schema(KEY, version)
    header_schema = schema.__header_schema__
    fields = {
        "transactional_id": transactional_id,
        "transaction_timeout": datetime.timedelta(seconds=60),
    }
    if version >= 3:
        fields.update(producer_id=-1, producer_epoch=-1)
    names = {f for f in header_schema.__dataclass_fields__}
    head = {"request_api_key": KEY, "request_api_version": version}
    head.update(correlation_id=correlation_id, client_id="init-producer-id-test")
    out = io.BytesIO()
    entity_writer(header_schema)(
        out, header_schema(**{k: v for k, v in head.items() if k in names})
    )
    entity_writer(schema)(out, schema(**fields))
    body = out.getvalue()
    sock.sendall(struct.pack(">i", len(body)) + body)
    frame = read_frame(sock)
    response_schema = load_response_schema(KEY, version)
    _header, used = entity_reader(response_schema.__header_schema__)(frame, 0)
    response, _size = entity_reader(response_schema)(frame, used)
    return response


def test_each_version_hands_out_a_new_id_with_epoch_0(tmp_path):
    with (
        BrokerProcess(data_dir=tmp_path / "data") as broker,
        socket.create_connection(("127.0.0.1", broker.port), timeout=10) as sock,
    ):
        ids = []
        for version in range(5):
            deadline = time.monotonic() + 10
            while True:
                answer = init_producer_id(sock, version, 100 + version)
                if answer.error_code != ErrorCode.coordinator_load_in_progress:
                    break  # (14 only while the first block of ids is being reserved)
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert answer.error_code == ErrorCode.none
            assert answer.producer_epoch == 0
            ids.append(int(answer.producer_id))
        assert len(set(ids)) == 5
        refused = init_producer_id(sock, 4, 200, transactional_id="tx")
        assert refused.error_code == ErrorCode.unsupported_version
        assert int(refused.producer_id) == -1
        assert refused.producer_epoch == -1
