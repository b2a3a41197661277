"""Bootstrap patience (issue 19, item 4): a busy or stalled broker is waited for (up to
request_timeout_ms, as Kafka clients retry bootstrap); nothing listening fails fast;
NoBrokersAvailable says what each address did."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from contextlib import contextmanager

import pytest

from labkit import KafkaAdminClient, NoBrokersAvailable
from labkit.testing.broker import free_port
from labkit.testing.processes import freeze, thaw


@contextmanager
def stopped(broker):
    """The broker process frozen (SIGSTOP), as on a machine too busy to run it: every
    thread stopped before the client starts (a thread woken by the client's request
    could otherwise still answer it)."""
    freeze(broker.pid)
    try:
        yield
    finally:
        thaw(broker.pid)


def test_a_broker_too_busy_to_answer_within_2_s_is_waited_for(broker):
    with stopped(broker):
        timer = threading.Timer(3.5, os.kill, (broker.pid, signal.SIGCONT))
        timer.start()
        try:
            started = time.monotonic()
            with KafkaAdminClient(bootstrap_servers=broker.bootstrap) as admin:
                waited = time.monotonic() - started
                assert isinstance(admin.list_topics(), list)
        finally:
            timer.cancel()
    assert waited >= 3.0  # it really waited for the broker, past api_version_auto_timeout_ms


def test_a_broker_that_never_answers_is_reported_with_what_was_tried(broker):
    with stopped(broker):
        started = time.monotonic()
        with pytest.raises(NoBrokersAvailable) as info:
            KafkaAdminClient(bootstrap_servers=broker.bootstrap, request_timeout_ms=3000)
        waited = time.monotonic() - started
    assert 2.5 <= waited < 15
    message = str(info.value)
    assert f"{broker.bootstrap} accepted the connection but did not answer" in message
    assert "labkit broker" in message


def test_nothing_listening_fails_fast_and_says_so():
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(NoBrokersAvailable) as info:
        # the refusal seen by the socket monitor cuts the wait to api_version_auto_timeout_ms
        KafkaAdminClient(bootstrap_servers=address, request_timeout_ms=180_000)
    assert time.monotonic() - started < 120  # does not hang: far below request_timeout_ms
    assert f"{address} refused the connection (nothing listens there)" in str(info.value)


def test_another_service_on_the_port_fails_fast_and_says_so():
    server = socket.create_server(("127.0.0.1", 0))
    address = f"127.0.0.1:{server.getsockname()[1]}"
    stop = threading.Event()

    def accept_and_hang_up():  # what a non-ZeroMQ service does with a ZeroMQ greeting
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.recv(64)
            conn.close()

    thread = threading.Thread(target=accept_and_hang_up, daemon=True)
    thread.start()
    try:
        started = time.monotonic()
        with pytest.raises(NoBrokersAvailable) as info:
            # the failed handshake cuts the wait to api_version_auto_timeout_ms
            KafkaAdminClient(bootstrap_servers=address, request_timeout_ms=180_000)
        assert time.monotonic() - started < 120  # does not hang: far below request_timeout_ms
    finally:
        stop.set()
        thread.join(5)
        server.close()
    assert "does not speak labkit's protocol" in str(info.value)
