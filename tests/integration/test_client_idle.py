"""Idle clients cost almost nothing (issue 19, item 1): the I/O thread sleeps until its
next deadline instead of waking on a fixed tick."""

from __future__ import annotations

import threading
import time

from labkit.client.transport import Transport


def test_an_idle_transport_sleeps_until_its_next_deadline(shared_broker):
    transport = Transport(shared_broker.bootstrap, name="idle-test")
    turns = []
    due = threading.Event()

    def driver(now: float) -> float | None:
        turns.append(now)
        if len(turns) == 1:
            return 1.5  # the only deadline: one turn 1.5 s from now
        due.set()
        return None

    try:
        transport.add_driver(driver)
        assert due.wait(10), "the driver's deadline was not honoured"
        time.sleep(1.0)  # nothing due, nothing in flight: no turn at all
        assert len(turns) == 2, f"{len(turns)} loop turns; an idle client must not tick"
        assert turns[1] - turns[0] >= 1.4
        assert transport.call("api_versions", {}).header["error"] == 0  # still awake to work
    finally:
        transport.close()
