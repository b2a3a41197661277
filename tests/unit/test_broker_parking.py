"""The parking lot of long-poll fetches, without sockets: a fake fetch and FakeClock."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from labkit.broker.parking import ParkingLot
from labkit.testing import FakeClock


@dataclass
class FakeReply:
    keys: list | None
    final: bool


class FakeFetch:
    """Partitions with data answer; the rest ask to keep waiting (unless final)."""

    def __init__(self):
        self.with_data: set = set()
        self.calls = 0

    def __call__(self, header: dict, final: bool) -> FakeReply:
        self.calls += 1
        ready = any(key in self.with_data for key in header["keys"])
        return FakeReply(None if (ready or final) else header["keys"], final)


@pytest.fixture
def fetch():
    return FakeFetch()


def park(lot, clock, client, rid, keys=(("t", 0),), wait_s=0.5):
    return lot.park(client, rid, {"keys": list(keys)}, clock.monotonic() + wait_s, keys)


def rids(answers):
    return sorted(rid for _client, rid, _reply in answers)


def test_wake_answers_only_fetches_on_partitions_with_data(fetch):
    clock = FakeClock()
    lot = ParkingLot(fetch)
    assert park(lot, clock, b"a", b"1", [("t", 0)]) == []
    assert park(lot, clock, b"a", b"2", [("t", 1)]) == []
    assert lot.wake([("t", 0)]) == []  # no data yet: both keep waiting
    fetch.with_data.add(("t", 0))
    assert rids(lot.wake([("t", 0)])) == [b"1"]
    assert len(lot) == 1
    assert lot.parked_by(b"a") == 1


def test_expire_answers_what_is_due_with_final_fetch(fetch):
    clock = FakeClock()
    lot = ParkingLot(fetch)
    park(lot, clock, b"a", b"short", wait_s=0.5)
    park(lot, clock, b"a", b"long", wait_s=5)
    assert lot.next_deadline() == pytest.approx(clock.monotonic() + 0.5)
    clock.advance(0.4)
    assert lot.expire(clock.monotonic()) == []
    clock.advance(0.2)
    (answer,) = lot.expire(clock.monotonic())
    assert answer[1] == b"short"
    assert answer[2].final
    assert lot.next_deadline() == pytest.approx(clock.monotonic() + 4.4)


def test_a_client_over_its_share_is_answered_at_once(fetch):
    clock = FakeClock()
    lot = ParkingLot(fetch, capacity=100, per_client=3)
    for n in range(3):
        assert park(lot, clock, b"hog", b"%d" % n) == []
    (answer,) = park(lot, clock, b"hog", b"3")
    assert answer[:2] == (b"hog", b"3")
    assert answer[2].final
    assert park(lot, clock, b"good", b"g") == []
    assert len(lot) == 4


def test_when_full_the_biggest_holder_gives_up_its_oldest_slot(fetch):
    clock = FakeClock()
    lot = ParkingLot(fetch, capacity=4, per_client=10)
    for n in range(4):
        park(lot, clock, b"hog", b"h%d" % n)
    (evicted,) = park(lot, clock, b"good", b"g1")
    assert evicted[:2] == (b"hog", b"h0")
    assert evicted[2].final
    park(lot, clock, b"good", b"g2")  # hog 2, good 2: shares are equal now
    (refused,) = park(lot, clock, b"good", b"g3")
    assert refused[:2] == (b"good", b"g3")
    assert lot.parked_by(b"hog") == 2
    assert lot.parked_by(b"good") == 2


def test_release_client_answers_its_fetches_and_leaves_others(fetch):
    clock = FakeClock()
    lot = ParkingLot(fetch)
    for n in range(3):
        park(lot, clock, b"gone", b"%d" % n, wait_s=10**6)
    park(lot, clock, b"stays", b"s")
    assert rids(lot.release_client(b"gone")) == [b"0", b"1", b"2"]
    assert lot.release_client(b"gone") == []
    assert len(lot) == 1
    assert lot.parked_by(b"stays") == 1
    clock.advance(1)
    assert rids(lot.expire(clock.monotonic())) == [b"s"]
    assert lot.next_deadline() is None


def test_the_heap_does_not_keep_released_entries(fetch):
    clock = FakeClock()
    lot = ParkingLot(fetch, capacity=10, per_client=10)
    for round_ in range(100):
        client = b"c%d" % round_
        for n in range(10):
            park(lot, clock, client, b"%d" % n, wait_s=10**6)
        lot.release_client(client)
    assert len(lot) == 0
    assert len(lot._heap) <= 2 * lot.capacity + 1


def test_wake_all_and_answer_all(fetch):
    clock = FakeClock()
    lot = ParkingLot(fetch)
    park(lot, clock, b"a", b"1", [("t", 0)])
    park(lot, clock, b"b", b"2", [("u", 0)])
    fetch.with_data.add(("u", 0))
    assert rids(lot.wake_all()) == [b"2"]
    assert rids(lot.answer_all()) == [b"1"]
    assert len(lot) == 0
    assert lot.next_deadline() is None
