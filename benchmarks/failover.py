"""Time from a group member's death (SIGKILL) to the others reading its partitions.

Three members read a topic of six partitions while a producer writes 2,000
records/s to it, round robin over the partitions. Once the group is settled
(three disjoint assignments covering every partition, each member reading all
of its own), member 0 is killed. Reported:

- ``detect_s``: kill -> a survivor is told it owns one of the dead member's
  partitions (the session timeout dominates it);
- ``resume_s``: kill -> survivors have read a record from every one of them.
"""

from __future__ import annotations

import time

from cases import _members, topic_name
from common import monotonic_ns
from plan import Plan, spec_for, system_label
from procs import Worker

RATE = 2000


def _latest_assignment(events: list[dict]) -> tuple[set, int]:
    latest, at = set(), 0
    for event in events:
        if event.get("ev") == "assigned":
            latest, at = set(event["partitions"]), event["t"]
    return latest, at


def _reading_all(events: list[dict], partitions: set, since: int) -> bool:
    got = {e["p"] for e in events if e.get("ev") == "first" and e["t"] >= since}
    return partitions <= got


def _settled(members: list[Worker], partitions: int) -> list[set] | None:
    owned = []
    for member in members:
        events = member.snapshot()
        assignment, at = _latest_assignment(events)
        if not assignment or not _reading_all(events, assignment, at):
            return None
        owned.append(assignment)
    union = set().union(*owned)
    if len(union) != partitions or sum(len(a) for a in owned) != partitions:
        return None
    return owned


def failover(peer, client: str, plan: Plan, producer_client: str) -> dict:
    system = system_label(client, peer.name)
    row = {
        "table": "failover",
        "system": system,
        "members": 3,
        "partitions": plan.group_partitions,
        "session_timeout_ms": plan.session_timeout_ms,
        "heartbeat_interval_ms": plan.heartbeat_interval_ms,
        "status": "ok",
    }
    topic = topic_name(f"failover-{client}")
    peer.create_topic(topic, plan.group_partitions)
    budget = plan.session_timeout_ms / 1000 * 3 + 60
    members = _members(peer, client, plan, topic, f"g-{topic}", reset="latest", until_s=budget)
    producer = None
    try:
        for member in members:
            if member.wait_event("started", 30) is None:
                row["status"] = "failed: a member did not start: " + member.wait(1).get("error", "")
                return row
        producer = Worker(
            spec_for(
                producer_client,
                "lat_produce",
                peer.bootstrap,
                topic=topic,
                size=100,
                acks=1,
                rate=RATE,
                n=int(RATE * budget),
                partitions=plan.group_partitions,
            )
        )
        deadline = time.monotonic() + 30 + plan.session_timeout_ms / 1000
        owned = None
        while owned is None and time.monotonic() < deadline:
            time.sleep(0.2)
            owned = _settled(members, plan.group_partitions)
        if owned is None:
            seen = [sorted(_latest_assignment(m.snapshot())[0]) for m in members]
            row["status"] = (
                f"failed: the group never settled into 3 disjoint assignments "
                f"being read (last assignments seen: {seen})"
            )
            return row
        time.sleep(1.0)
        dead = _latest_assignment(members[0].snapshot())[0]
        t_kill = monotonic_ns()
        members[0].kill()
        row["dead_partitions"] = sorted(dead)
        wait_until = time.monotonic() + plan.session_timeout_ms / 1000 + 30
        resumed: dict[int, int] = {}
        detected = None
        while time.monotonic() < wait_until and len(resumed) < len(dead):
            time.sleep(0.1)
            for member in members[1:]:
                for event in member.snapshot():
                    if "t" not in event or event["t"] <= t_kill:  # progress lines carry no time
                        continue
                    if event.get("ev") == "assigned" and dead & set(event["partitions"]):
                        detected = min(detected or event["t"], event["t"])
                    if event.get("ev") == "first" and event["p"] in dead:
                        resumed[event["p"]] = min(resumed.get(event["p"], event["t"]), event["t"])
        row["detect_s"] = (detected - t_kill) / 1e9 if detected else None
        if len(resumed) < len(dead):
            row["status"] = (
                f"failed: survivors read {len(resumed)} of the dead member's "
                f"{len(dead)} partitions within session timeout + 30 s"
            )
        else:
            row["resume_s"] = (max(resumed.values()) - t_kill) / 1e9
        return row
    finally:
        for worker in [*members, producer]:
            if worker is not None:
                worker.kill()
        peer.delete_topic(topic)


def not_applicable(peer, client: str, reason: str) -> dict:
    return {
        "table": "failover",
        "system": system_label(client, peer.name),
        "status": f"n/a: {reason}",
    }
