"""Per-connection byte budgets and descriptor guards, without sockets (fake counters)."""

from __future__ import annotations

import errno
import os
import socket

import pytest

from labkit.broker.connections import (
    FLOOD_FACTOR,
    ConnectionTable,
    frame_overhead,
    peer_address,
    shutdown_connection,
    tcp_counters,
)
from labkit.broker.descriptors import DescriptorGuard, out_of_descriptors, reserve
from labkit.errors import PolicyViolationError


class FakeKernel:
    """TCP counters and peers per descriptor, and the descriptors shut down."""

    def __init__(self):
        self.acked: dict[int, int] = {}
        self.received: dict[int, int] = {}
        self.peers: dict[int, str] = {}
        self.shut: list[int] = []

    def counters(self, fd):
        return self.acked.get(fd, 0), self.received.get(fd, 0)

    def table(self, budget=1000):
        return ConnectionTable(
            budget,
            counters=self.counters,
            shutdown=self.shut.append,
            peer=lambda fd: self.peers.get(fd, "?"),
        )


def test_frame_overhead_is_zmtp3():
    assert frame_overhead(0) == frame_overhead(255) == 2
    assert frame_overhead(256) == 9


def test_a_request_that_never_completes_is_cut():
    kernel = FakeKernel()
    table = kernel.table(budget=1000)
    table.accepted(7)
    table.bind(b"id", 7)
    kernel.received[7] = 900
    table.on_read(b"id", 300)
    assert table.check() == []
    kernel.received[7] = 1500  # 1,200 bytes in, not yet a whole message
    assert table.check() == [b"id"]
    assert kernel.shut == [7]
    assert table.closed_for_budget == 1
    assert table.check() == []  # once


def test_a_backlog_being_read_is_not_cut_unless_it_floods():
    kernel = FakeKernel()
    table = kernel.table(budget=1000)
    table.accepted(7)
    table.bind(b"id", 7)
    for received in (3000, 3500):  # queued whole requests (acks=0), the loop reads on
        kernel.received[7] = received
        table.on_read(b"id", 400)
        assert table.check() == []
    kernel.received[7] = 1000 * FLOOD_FACTOR + 2000
    table.on_read(b"id", 400)
    assert table.check() == [b"id"]  # more than the loop can ever catch up with


def test_an_unknown_peer_is_measured_by_descriptor_alone():
    kernel = FakeKernel()
    table = kernel.table(budget=1000)
    table.accepted(9)  # a raw peer that never finished a message
    kernel.received[9] = 5000
    assert table.check() == []  # no client id to release, but it is cut
    assert kernel.shut == [9]


def test_unread_replies_over_budget_close_the_connection():
    kernel = FakeKernel()
    table = kernel.table(budget=1000)
    table.accepted(7)
    table.bind(b"id", 7)
    assert table.on_send(b"id", 5000) is None  # one big reply is always allowed
    kernel.acked[7] = 4500
    assert table.on_send(b"id", 100) is None  # it read most of it
    assert table.on_send(b"id", 100) is None
    assert table.on_send(b"id", 2000) is None
    assert table.on_send(b"id", 10) == [b"id"]  # 2,700 unread > 1,000
    assert kernel.shut == [7]
    assert table.on_send(b"id", 10) == []  # closed: send nothing more


def test_closed_returns_the_clients_of_that_connection():
    kernel = FakeKernel()
    table = kernel.table()
    kernel.peers[7] = "1.2.3.4:1000"
    table.accepted(7)
    table.bind(b"a", 7)
    assert table.closed(7) == [b"a"]
    assert not table.knows(b"a")
    assert table.closed(7) == []


def test_a_reused_descriptor_is_told_apart_by_its_peer():
    kernel = FakeKernel()
    table = kernel.table()
    kernel.peers[7] = "10.0.0.1:1000"
    table.accepted(7)
    table.bind(b"old", 7)
    kernel.peers[7] = "10.0.0.2:2000"  # old closed, fd 7 reused; events not in yet
    table.bind(b"new", 7)  # the new client's first message came first
    assert table.closed(7) == []  # the old connection's event: not the new one's
    table.accepted(7)  # the new connection's event
    assert table.knows(b"new")
    assert not table.knows(b"old")
    assert table.closed(7) == [b"new"]


def test_nothing_is_enforced_without_counters():
    table = ConnectionTable(
        10, counters=lambda fd: None, shutdown=pytest.fail, supported=False, peer=lambda fd: "?"
    )
    table.accepted(3)
    table.bind(b"id", 3)
    assert table.enforced is False
    assert table.on_send(b"id", 10**9) is None
    assert table.on_send(b"id", 1) is None
    assert table.check() == []


def test_tcp_counters_of_a_non_socket_is_none_and_leaks_no_descriptor(tmp_path):
    # a closed connection's descriptor number is soon a log file's: the budget check
    # asks it every 50 ms, and each ask leaked a duplicate (20,000 fds in a test session)
    with open(tmp_path / "f", "wb") as handle:
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(100):
            assert tcp_counters(handle.fileno()) is None
            assert peer_address(handle.fileno()) == "?"
            shutdown_connection(handle.fileno())
        assert len(os.listdir("/proc/self/fd")) - before < 5


def test_peer_address_of_a_reused_descriptor_that_is_no_tcp_socket_is_unknown():
    # a closed connection's number reused by libzmq's own socketpair or a Unix socket:
    # getpeername answers '' there, and the broker crashed at startup formatting it (seen
    # when a restarted leader's followers reconnected at once, tests/integration/
    # test_cluster_failures.py)
    left, right = socket.socketpair(socket.AF_UNIX)
    try:
        assert peer_address(left.fileno()) == "?"
        table = ConnectionTable(1 << 20, peer=peer_address)
        table.bind(b"id", left.fileno())  # no crash
    finally:
        left.close()
        right.close()


def test_descriptor_guard_keeps_a_reserve_for_connections():
    guard = DescriptorGuard(limit=lambda: 1000, count=lambda: 600)
    assert reserve(1000) == 250
    guard.check(150)  # 600 + 150 = 750 = 1000 - 250
    with pytest.raises(PolicyViolationError, match="file descriptors"):
        guard.check(151)
    DescriptorGuard(limit=lambda: None, count=lambda: 10**6).check(10**6)  # unknown: allowed


def test_emfile_says_file_descriptors_not_disk():
    text = out_of_descriptors(OSError(errno.EMFILE, "Too many open files"))
    assert "out of file descriptors" in text
    assert "disk" not in text
    assert out_of_descriptors(OSError(errno.ENOSPC, "No space left")) is None


def test_a_connection_gone_before_its_event_does_not_switch_the_budgets_off():
    live = {}
    table = ConnectionTable(
        10,
        counters=live.get,
        shutdown=lambda fd: None,
        peer=lambda fd: "127.0.0.1:1",
        supported=True,
    )
    table.accepted(5)  # a port probe: connected and closed before the event was read
    assert table.enforced is None
    table.closed(5)
    live[6] = (0, 0)
    table.accepted(6)
    assert table.enforced is True
