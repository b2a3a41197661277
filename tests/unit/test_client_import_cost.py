"""What importing labkit's client drags in: every student process pays it at start-up.

A class of 80 starting at once starts ~160 Python processes (kernels, console tools) on
one machine (issue 19); asyncio alone was 28 ms of each, pulled in by pyzmq's
``zmq.utils.monitor`` for one helper the bootstrap probes used.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys

import zmq

from labkit.client.zmq_bootstrap import _monitor_event


def _modules_after(statement: str) -> set[str]:
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout))


def test_the_client_does_not_import_asyncio():
    loaded = _modules_after("from labkit import KafkaProducer, KafkaConsumer, KafkaAdminClient")
    assert "asyncio" not in loaded
    assert "zmq.utils.monitor" not in loaded


def test_a_monitor_message_gives_its_event_id():
    frames = [struct.pack("=Hi", int(zmq.EVENT_HANDSHAKE_SUCCEEDED), 0), b"tcp://127.0.0.1:1"]
    assert _monitor_event(frames) == zmq.EVENT_HANDSHAKE_SUCCEEDED
    frames = [struct.pack("=Hi", int(zmq.EVENT_CONNECT_RETRIED), 100), b"tcp://127.0.0.1:1"]
    assert _monitor_event(frames) == zmq.EVENT_CONNECT_RETRIED


def test_a_malformed_monitor_message_is_no_event():
    assert _monitor_event([b"\x00\x10"]) == -1
    assert _monitor_event([b"short", b"tcp://x"]) == -1
