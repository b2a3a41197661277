"""The Kafka listener shortens the GIL switch interval of the broker's process, so that
the broker's loop waits at most that long for the GIL while the listener converts Kafka
batches (ZeroMQ clients' latency under Kafka load: benchmarks/NOTES.md section 11)."""

import sys

import pytest
import zmq

from labkit.kafka.listener import KafkaListener, ListenSpec


@pytest.fixture
def default_switch_interval():
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)  # CPython's default
    yield
    sys.setswitchinterval(before)


def _listener(context: zmq.Context) -> KafkaListener:
    spec = ListenSpec("PLAINTEXT", "127.0.0.1", 0, "127.0.0.1", 0, None, 9192)
    return KafkaListener(context, "inproc://nobody", [spec], 1 << 20, 1 << 20)


def test_a_running_listener_lets_the_loop_take_the_gil_within_a_millisecond(
    default_switch_interval,
):
    context = zmq.Context()
    listener = _listener(context)
    listener.start()
    try:
        assert sys.getswitchinterval() <= 0.001
    finally:
        listener.close()
        context.term()
    assert sys.getswitchinterval() == pytest.approx(0.005)  # close() sets it back


def test_a_shorter_interval_set_by_the_process_is_kept(default_switch_interval):
    sys.setswitchinterval(0.0001)
    context = zmq.Context()
    listener = _listener(context)
    listener.start()
    try:
        assert sys.getswitchinterval() == pytest.approx(0.0001)
    finally:
        listener.close()
        context.term()
