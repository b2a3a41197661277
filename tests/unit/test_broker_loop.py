"""The broker loop's decisions without sockets (broker/loop.py): a fake transport
collects the replies, FakeClock drives time, fake TCP counters drive the budgets.

The real TopicRegistry, handlers, group service, parking lot and throttle gate run;
only the ROUTER socket (broker/server.py) is left out. The flusher thread is left out
too, except where a test starts it: ``durable.stop()`` runs a round on this thread."""

from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from labkit.broker.config import BrokerConfig
from labkit.broker.connections import ConnectionTable
from labkit.broker.loop import BUDGET_CHECK_S, TICK_S, BrokerLoop
from labkit.broker.quotas import ClientQuotas
from labkit.broker.topics import TopicRegistry
from labkit.errors import (
    InvalidRequestError,
    UnknownError,
    UnknownTopicOrPartitionError,
    UnsupportedVersionError,
)
from labkit.protocol.frames import MAGIC, build_request, decode_header
from labkit.protocol.records import encode_batch
from labkit.testing import FakeClock

BUDGET = 4000  # connection.max.buffered.bytes in these tests


class FakeTransport:
    """Collects what the loop writes: (client, request id, header, payloads)."""

    def __init__(self):
        self.sent: list = []

    def __call__(self, identity, rid, head, payloads):
        self.sent.append((identity, rid, decode_header(head), [bytes(p) for p in payloads]))

    def take(self) -> list:
        out, self.sent = self.sent, []
        return out

    def rids(self) -> list:
        return [rid for _client, rid, _header, _payloads in self.take()]


class FakeTcp:
    """Kernel TCP counters per descriptor, and the shutdowns the table asks for."""

    def __init__(self):
        self.acked: dict[int, int] = {}
        self.received: dict[int, int] = {}
        self.shut: list[int] = []

    def counters(self, fd):
        return self.acked.get(fd, 0), self.received.get(fd, 0)

    def shutdown(self, fd):
        self.shut.append(fd)


@pytest.fixture
def world(tmp_path):
    clock = FakeClock()
    config = BrokerConfig(port=9092, data_dir=tmp_path, connection_max_buffered_bytes=BUDGET)
    registry = TopicRegistry(tmp_path, config.log_defaults, clock, 1).open()
    registry.create("t", 2)  # inline: the loop makes the registry deferred
    transport = FakeTransport()
    tcp = FakeTcp()
    connections = ConnectionTable(
        BUDGET,
        counters=tcp.counters,
        shutdown=tcp.shutdown,
        peer=lambda fd: f"10.0.0.{fd}:5000",
        supported=True,
    )
    quotas = ClientQuotas(tmp_path)
    loop = BrokerLoop(config, clock, registry, quotas, transport, connections=connections)
    yield SimpleNamespace(loop=loop, clock=clock, transport=transport, tcp=tcp, quotas=quotas)
    loop.shutdown()
    registry.close()


def request(world, rid: bytes, api: str, header: dict, payloads=(), client: bytes = b"c"):
    world.loop.receive([client, *build_request(rid, api, header, list(payloads))])


def produce(world, rid, acks=1, client=b"c", value=b"v" * 10, partition=0, **header):
    batch = encode_batch([world.clock.time_ms()], None, [value])
    header = {"acks": acks, "targets": [["t", partition]], **header}
    request(world, rid, "produce", header, [batch], client)


def fetch(world, rid, client=b"c", wait_ms=500, offset=0, partition=0, **header):
    header = {
        "max_wait_ms": wait_ms,
        "min_bytes": 1,
        "partitions": [["t", partition, offset, 1 << 20]],
        **header,
    }
    request(world, rid, "fetch", header, client=client)


def connect(world, fd: int, client: bytes) -> None:
    """What the server learns from the socket monitor and ZMQ_SRCFD."""
    world.loop.connection_accepted(fd)
    world.loop.connections.bind(client, fd)


# -- dispatch and replies -----------------------------------------------------------------


def test_each_request_is_answered_through_the_transport_with_its_request_id(world):
    request(world, b"1", "metadata", {"topics": ["t"]})
    request(world, b"2", "no_such_api", {})
    (meta, unknown) = world.transport.take()
    assert meta[:2] == (b"c", b"1")
    assert len(meta[2]["topics"][0]["partitions"]) == 2
    assert unknown[1] == b"2"
    assert unknown[2]["error"] == UnsupportedVersionError.errno
    assert world.loop.stats["errors"] == 0


def test_malformed_messages_get_an_error_when_their_id_can_be_read_else_are_dropped(world):
    world.loop.receive([b"c"])  # nothing but an identity
    world.loop.receive([b"c", b"XX", b"1", b"metadata", b"{}"])  # wrong magic
    world.loop.receive([b"c", MAGIC, b"7", b"metadata", b"{not json"])
    world.loop.receive([b"c", MAGIC, b"8", b"metadata"])  # too few frames, id readable
    sent = world.transport.take()
    assert [(rid, h["error"]) for _c, rid, h, _p in sent] == [
        (b"7", InvalidRequestError.errno),
        (b"8", InvalidRequestError.errno),
    ]
    assert world.loop.stats["dropped"] == 2
    assert world.loop.stats["errors"] == 2


def test_an_unexpected_error_is_answered_and_the_loop_carries_on(world, monkeypatch):
    real = world.loop.handlers.handle

    def broken(api, header, payloads):
        if api == "metadata":
            raise RuntimeError("a bug")
        return real(api, header, payloads)

    monkeypatch.setattr(world.loop.handlers, "handle", broken)
    request(world, b"1", "metadata", {})
    produce(world, b"2")
    (bug, ok) = world.transport.take()
    assert bug[2]["error"] == UnknownError.errno
    assert "RuntimeError: a bug" in bug[2]["message"]
    assert ok[1] == b"2"
    assert ok[2]["results"][0][1] == 0
    assert world.loop.stats["errors"] == 1


def test_a_reply_that_is_not_json_goes_out_as_an_error_not_half_a_message(world):
    world.loop.send(b"c", b"1", {"value": object()}, [b"payload"])
    ((_client, rid, header, payloads),) = world.transport.take()
    assert rid == b"1"
    assert header["error"] == UnknownError.errno
    assert payloads == []


def test_acks_0_gets_no_reply(world):
    produce(world, b"1", acks=0)
    assert world.transport.take() == []
    assert world.loop.registry.partition("t", 0).log_end_offset == 1


# -- parked fetches: park, wake, expire ------------------------------------------------------


def test_a_short_fetch_is_parked_and_a_produce_wakes_it_on_the_next_turn(world):
    fetch(world, b"f", client=b"consumer", wait_ms=10_000)
    assert world.transport.take() == []
    assert len(world.loop.parking) == 1
    produce(world, b"p", client=b"producer")
    assert world.transport.rids() == [b"p"]  # the fetch is re-checked by the turn
    world.loop.turn()
    ((client, rid, header, payloads),) = world.transport.take()
    assert (client, rid) == (b"consumer", b"f")
    assert header["partitions"][0][3] == 1
    assert len(payloads[0]) > 0
    assert len(world.loop.parking) == 0


def test_a_replica_fetch_that_moves_the_high_watermark_wakes_parked_consumers(world):
    plog = world.loop.registry.partition("t", 0)
    plog.set_high_watermark(0)  # replicated: consumers wait for the ISR
    produce(world, b"p", client=b"producer")
    world.transport.take()
    fetch(world, b"f", client=b"consumer", wait_ms=10_000)
    world.loop.turn()
    assert world.transport.take() == []  # a record exists, but not below the high watermark

    def follower_fetched(_topic, _partition, _replica, offset, _leo, _now):
        plog.set_high_watermark(offset)
        return True

    world.loop.handlers.on_replica_fetch = follower_fetched
    fetch(world, b"r", client=b"follower", wait_ms=0, offset=1, replica_id=1)
    assert world.transport.rids() == [b"r"]
    world.loop.turn()
    ((client, rid, header, payloads),) = world.transport.take()
    assert (client, rid) == (b"consumer", b"f")
    assert header["partitions"][0][3] == 1
    assert len(payloads[0]) > 0


def test_a_produce_to_another_partition_does_not_answer_the_fetch(world):
    fetch(world, b"f", wait_ms=10_000, partition=0)
    produce(world, b"p", partition=1)
    world.loop.turn()
    assert world.transport.rids() == [b"p"]
    assert len(world.loop.parking) == 1


def test_a_parked_fetch_is_answered_empty_when_its_wait_runs_out(world):
    world.loop.turn()  # the first budget check is due at once; then ticks set the pace
    fetch(world, b"f", wait_ms=20)
    assert world.loop.wait_s(world.clock.monotonic()) == pytest.approx(0.02)
    world.clock.advance(0.019)
    world.loop.turn()
    assert world.transport.take() == []
    world.clock.advance(0.002)
    world.loop.turn()
    ((_client, rid, header, payloads),) = world.transport.take()
    assert rid == b"f"
    assert header["partitions"][0][2] == 0
    assert payloads == [b""]


def test_an_admin_change_rechecks_every_parked_fetch(world):
    fetch(world, b"f", wait_ms=10_000)
    request(world, b"d", "delete_topics", {"topics": ["t"]})
    assert world.transport.take() == []  # the delete waits for the flusher's round
    world.loop.turn()
    ((_client, rid, header, _payloads),) = world.transport.take()
    assert rid == b"f"
    assert header["partitions"][0][2] == UnknownTopicOrPartitionError.errno


def test_the_wait_is_bounded_by_the_group_tick_and_the_budget_check(world):
    now = world.clock.monotonic()
    assert world.loop.wait_s(now) <= 0  # the first budget check is due at once
    world.loop.turn()
    assert world.loop.wait_s(now) == pytest.approx(BUDGET_CHECK_S)


def test_the_group_service_ticks_every_tick_period_and_a_failing_tick_is_survived(
    world, monkeypatch
):
    ticks = []

    def tick():
        ticks.append(world.clock.monotonic())
        raise RuntimeError("a bug in the group service")

    monkeypatch.setattr(world.loop.groups, "tick", tick)
    world.loop.turn()
    assert ticks == []
    world.clock.advance(TICK_S)
    world.loop.turn()
    world.loop.turn()
    assert len(ticks) == 1


# -- throttled connections (client quotas) ----------------------------------------------------


def set_producer_quota(world, client_id: str, rate: int) -> None:
    entry = {
        "entity": {"client-id": client_id},
        "ops": [{"key": "producer_byte_rate", "value": rate}],
    }
    assert world.quotas.alter([entry]) == [
        {"entity": {"client-id": client_id}, "error": 0, "message": None}
    ]


def test_a_throttled_connection_is_muted_for_its_throttle_time_but_metadata_is_not(world):
    set_producer_quota(world, "slow", 20)
    produce(world, b"1", client_id="slow", value=b"x" * 200, timeout_ms=60_000)
    ((_c, _rid, header, _p),) = world.transport.take()
    throttle_s = header["throttle_time_ms"] / 1000.0
    assert 0.5 < throttle_s < 10  # shorter than a queued request's longest wait
    fetch(world, b"2", wait_ms=0)
    produce(world, b"3", client_id="slow", timeout_ms=60_000)
    request(world, b"4", "metadata", {"topics": ["t"]})
    assert world.transport.rids() == [b"4"]  # produce and fetch wait behind the mute
    assert world.loop.wait_s(world.clock.monotonic()) <= throttle_s
    world.clock.advance(throttle_s - 0.01)
    world.loop.turn()
    assert world.transport.rids() == []
    world.clock.advance(0.02)
    world.loop.turn()
    assert world.transport.rids() == [b"2", b"3"]  # in arrival order


def test_other_connections_are_not_muted(world):
    set_producer_quota(world, "slow", 10)
    produce(world, b"1", client=b"a", client_id="slow", value=b"x" * 200)
    produce(world, b"2", client=b"b", client_id="other")
    assert world.transport.rids() == [b"1", b"2"]


def test_a_queued_request_waits_at_most_half_its_timeout(world):
    set_producer_quota(world, "slow", 1)
    produce(world, b"1", client_id="slow", value=b"x" * 2000)
    produce(world, b"2", client_id="slow", timeout_ms=2000)
    assert world.transport.rids() == [b"1"]
    world.clock.advance(1.0)
    world.loop.turn()
    assert world.transport.rids() == [b"2"]  # still muted, but never timed out by its client


# -- connection budgets ---------------------------------------------------------------------


def test_a_connection_flooding_past_its_budget_is_closed_and_loses_its_parked_fetch(world):
    connect(world, 5, b"flood")
    connect(world, 6, b"calm")
    fetch(world, b"f", client=b"flood", wait_ms=10_000)
    fetch(world, b"g", client=b"calm", wait_ms=10_000)
    world.tcp.received[5] = 5 * BUDGET  # bytes the loop never read
    world.loop.turn()
    assert world.tcp.shut == [5]
    assert world.loop.parking.parked_by(b"flood") == 0
    assert len(world.loop.parking) == 1
    assert world.transport.take() == []  # nothing more goes to a connection that is cut


def test_a_client_that_reads_no_replies_is_cut_off(world):
    connect(world, 5, b"deaf")
    fetch(world, b"f", client=b"deaf", wait_ms=10_000)
    for n in range(100):
        request(world, b"%d" % n, "metadata", {"topics": ["t"]}, client=b"deaf")
    sent = world.transport.take()
    assert world.tcp.shut == [5]
    assert 0 < len(sent) < 100
    assert len(world.loop.parking) == 0  # released with its connection
    request(world, b"x", "metadata", {}, client=b"deaf")
    assert world.transport.take() == []


def test_a_closed_connection_takes_its_parked_fetches_with_it(world):
    connect(world, 5, b"gone")
    fetch(world, b"f", client=b"gone", wait_ms=10_000)
    world.loop.connection_closed(5)
    assert len(world.loop.parking) == 0
    assert world.transport.rids() == [b"f"]  # answered at once (ZeroMQ drops it)


# -- replies that wait for the flusher ------------------------------------------------------


def test_durable_replies_wait_for_the_round_that_covers_them(world):
    produce(world, b"p", acks=-1)
    commit = {"group_id": "g", "member_id": "", "generation": -1, "offsets": [["t", 0, 1, ""]]}
    request(world, b"c", "offset_commit", commit)
    quota = {"entity": {"client-id": "x"}, "ops": [{"key": "consumer_byte_rate", "value": 9}]}
    request(world, b"q", "alter_client_quotas", {"entries": [quota]})
    request(world, b"t", "create_topics", {"topics": [{"name": "new", "num_partitions": 1}]})
    request(world, b"m", "metadata", {"topics": ["t"]})
    assert world.transport.rids() == [b"m"]
    world.loop.durable.stop()  # no flusher thread: the round runs here
    assert world.transport.rids() == [b"p", b"c", b"q", b"t"]


def test_a_finished_round_installs_topics_and_answers_held_requests(world):
    done = threading.Event()
    world.loop.durable.start(lambda: (done.set, lambda: None))  # the real flusher thread
    meta = {"topics": ["auto"], "allow_auto_create": True}
    request(world, b"m", "metadata", meta)
    assert world.transport.take() == []  # held: the topic is being created
    world.loop.turn()  # hands the round to the flusher
    assert done.wait(10), "the flusher finished no round"
    world.loop.flushes_done()
    ((_c, rid, header, _p),) = world.transport.take()
    assert rid == b"m"
    assert header["topics"][0]["error"] == 0
    assert world.loop.registry.get("auto") is not None


def test_shutdown_answers_parked_and_queued_requests(world):
    set_producer_quota(world, "slow", 1)
    produce(world, b"1", client_id="slow", value=b"x" * 2000)
    produce(world, b"2", client_id="slow", timeout_ms=60_000)
    fetch(world, b"f", client=b"other", wait_ms=10_000, partition=1)
    assert world.transport.rids() == [b"1"]
    world.loop.shutdown()
    assert sorted(world.transport.rids()) == [b"2", b"f"]
