"""Hostile clients against one broker: what a well-behaved client sees during each attack.

    .venv/bin/python benchmarks/attacks.py               # make bench-attacks: every attack
    .venv/bin/python benchmarks/attacks.py --only parked_fetch_flood,create_topics_3000
    .venv/bin/python benchmarks/attacks.py --seconds 3   # shorter attack windows

Issue 11's attacks (items 5-10 and 12), each against a **fresh** broker on loopback,
next to a **probe**: a well-behaved client in a process of its own that loops
``produce`` (acks=1, one record) + ``fetch`` (max_wait_ms 0) of that record, and a
``list_groups`` every tenth turn (an instructor's dashboard), every 10 ms. For each
attack the run reports the probe's per-request p50/p99/max latency while the attack
runs and its p99 in the seconds after, the probe's error replies and timeouts, and
the broker's peak RSS (psutil, sampled every 20 ms), and how long another client's
500 ms long poll on an idle partition takes right after (it must wait, not return at
once: item 5). A baseline runs first without an attack. Goal (issue 11): the probe's p99 < 100 ms and the broker's RSS < 300 MB
during every attack.

Bounds: every attack sends a fixed amount (the issue's figures) on loopback only and
stops at the end of its window (``--seconds``, default 5) even if the broker has not
answered; the probe gives up on a request after 10 s (counted as a timeout); the
broker is stopped (SIGKILL after 10 s) and its data directory removed after each
attack. Results go to ``attacks.json`` and the "Hostile clients" section of
RESULTS.md (``report.attacks_section``; ``run.py`` keeps that section when it
rewrites RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import report  # noqa: E402
from common import latency_summary, machine_conditions, percentile  # noqa: E402

from labkit.protocol.frames import MAGIC  # noqa: E402
from labkit.protocol.records import encode_batch  # noqa: E402
from labkit.testing import BrokerProcess, RawClient  # noqa: E402

PROBE_TOPIC = "probe"
ATTACK_TOPIC = "attack"
PROBE_PERIOD_S = 0.010
PROBE_TIMEOUT_S = 10.0
AFTER_S = 2.0  # the probe keeps measuring this long after an attack's window
WARMUP_S = 1.0
RSS_PERIOD_S = 0.02
GOAL_P99_MS = 100.0
GOAL_RSS_MB = 300.0
LONG_POLL_MS = 500
NOW_MS = int(time.time() * 1000)
MIB = 1 << 20


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def batch_of(*values: bytes, timestamp: int | None = None) -> bytes:
    ts = NOW_MS if timestamp is None else timestamp
    return encode_batch([ts] * len(values), None, list(values))


# -- the probe (a process of its own) ---------------------------------------------------


def probe_main(bootstrap: str) -> int:
    """Loop produce+fetch (+list_groups) until stdin closes; print the samples as JSON.

    A sample is [monotonic send time, api, latency s, error code or "timeout"]."""
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    samples = []
    client = RawClient(bootstrap, timeout=PROBE_TIMEOUT_S)

    def timed(api: str, header: dict, payloads=()):
        started = time.monotonic()
        try:
            reply, got = client.request(api, header, payloads)
        except TimeoutError:
            samples.append([started, api, time.monotonic() - started, "timeout"])
            return None, []
        samples.append([started, api, time.monotonic() - started, reply.get("error")])
        return reply, got

    turn = 0
    next_turn = time.monotonic()
    while not stop.is_set():
        turn += 1
        reply, _ = timed(
            "produce", {"acks": 1, "targets": [[PROBE_TOPIC, 0]]}, [batch_of(b"probe %d" % turn)]
        )
        if reply is not None and reply.get("error") == 0 and reply["results"][0][1] == 0:
            offset = reply["results"][0][0]
            timed(
                "fetch",
                {
                    "max_wait_ms": 0,
                    "min_bytes": 1,
                    "max_bytes": 65536,
                    "partitions": [[PROBE_TOPIC, 0, offset, 65536]],
                },
            )
        if turn % 10 == 0:
            timed("list_groups", {})
        next_turn += PROBE_PERIOD_S
        pause = next_turn - time.monotonic()
        if pause > 0:
            stop.wait(pause)
        else:
            next_turn = time.monotonic()
    client.close()
    json.dump(samples, sys.stdout)
    return 0


class Probe:
    def __init__(self, bootstrap: str):
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--probe", bootstrap],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=dict(os.environ, PYTHONPATH=str(HERE.parent)),
        )

    def finish(self) -> list:
        out, _ = self.proc.communicate(b"", timeout=PROBE_TIMEOUT_S + 30)
        return json.loads(out or b"[]")


class RssSampler(threading.Thread):
    """Peak RSS of a process between ``mark()`` and ``stop()``, and its value at mark()."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        import psutil

        self._proc = psutil.Process(pid)
        self._halt = threading.Event()
        self.base = self.peak = self._rss()
        self.recording = False

    def _rss(self) -> int:
        try:
            return self._proc.memory_info().rss
        except Exception:  # noqa: BLE001 - the broker died: the report says so
            return 0

    def mark(self) -> None:
        self.base = self.peak = self._rss()
        self.recording = True

    def run(self) -> None:
        while not self._halt.wait(RSS_PERIOD_S):
            if self.recording:
                self.peak = max(self.peak, self._rss())

    def stop(self) -> None:
        self._halt.set()
        self.join()


# -- the attacks ----------------------------------------------------------------------------


def dealer(broker, **options):
    import zmq

    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    for name, value in options.items():
        sock.setsockopt(getattr(zmq, name), value)
    sock.connect(f"tcp://{broker.zmq_bootstrap}")
    return sock


def send(sock, rid: bytes, api: str, header_json: bytes, payloads=()) -> None:
    sock.send_multipart([MAGIC, rid, api.encode(), header_json, *payloads])


def replies(sock, count: int, deadline: float) -> list[dict]:
    """Up to ``count`` reply headers, until ``deadline``."""
    got = []
    while len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0 or not sock.poll(int(left * 1000) + 1):
            break
        got.append(json.loads(sock.recv_multipart()[2]))
    return got


def long_poll_ms(broker, topic: str = ATTACK_TOPIC, wait_ms: int = 500) -> float:
    """How long another client's long poll on an idle partition takes (should be wait_ms)."""
    with RawClient(broker.bootstrap, timeout=PROBE_TIMEOUT_S) as client:
        end = client.request("list_offsets", {"partitions": [[topic, 0, -1]]})[0]
        offset = end["partitions"][0][3]
        started = time.monotonic()
        client.request(
            "fetch",
            {
                "max_wait_ms": wait_ms,
                "min_bytes": 1,
                "max_bytes": 1024,
                "partitions": [[topic, 0, max(offset, 0), 1024]],
            },
        )
        return (time.monotonic() - started) * 1000


def codes(headers: list[dict]) -> str:
    seen: dict = {}
    for header in headers:
        seen[header.get("error")] = seen.get(header.get("error"), 0) + 1
    return ", ".join(f"{n}× error {code}" for code, n in sorted(seen.items(), key=str))


def idle_until(stop_at: float) -> None:
    time.sleep(max(0.0, stop_at - time.monotonic()))


def baseline(broker, stop_at: float) -> str:
    idle_until(stop_at)
    return "no attack"


def parked_fetch_flood(broker, stop_at: float, count: int = 10_000) -> str:
    """Item 5: fetches with max_wait_ms=10**15 from a client that then disconnects."""
    sock = dealer(broker, SNDHWM=0)
    header = json.dumps(
        {
            "max_wait_ms": 10**15,
            "min_bytes": 1,
            "max_bytes": 1024,
            "partitions": [[ATTACK_TOPIC, 0, 0, 1024]],
        }
    ).encode()
    for i in range(count):
        send(sock, b"p%d" % i, "fetch", header)
    early = replies(sock, count, time.monotonic() + 1.0)
    sock.close()
    idle_until(stop_at)
    return (
        f"{count:,} fetches (max_wait_ms 10**15) sent, then disconnected "
        f"({len(early):,} answered at once: {codes(early) or '-'})"
    )


def duplicate_partition_fetches(
    broker, stop_at: float, count: int = 400, repeats: int = 5_000
) -> str:
    """Item 6: parked fetches naming one partition 5,000 times, then produces to it."""
    sock = dealer(broker, SNDHWM=0)
    header = json.dumps(
        {
            "max_wait_ms": 60_000,
            "min_bytes": 1 << 30,
            "max_bytes": 1024,
            "partitions": [[ATTACK_TOPIC, 0, 0, 1024]] * repeats,
        }
    ).encode()
    for i in range(count):
        send(sock, b"d%d" % i, "fetch", header)
    early = replies(sock, count, time.monotonic() + 0.5)
    produced = 0
    with RawClient(broker.bootstrap, timeout=PROBE_TIMEOUT_S) as producer:
        while time.monotonic() < stop_at:
            try:
                producer.request(
                    "produce",
                    {"acks": 1, "targets": [[ATTACK_TOPIC, 0]]},
                    [batch_of(b"wake them all")],
                    timeout=max(0.1, stop_at - time.monotonic()),
                )
                produced += 1
            except TimeoutError:
                break
            time.sleep(0.1)
    sock.close()
    return (
        f"{count} fetches × {repeats:,} rows of one partition "
        f"({len(early)} answered at once: {codes(early) or '-'}), then {produced} "
        "produces to it"
    )


def join_group_many_topics(broker, stop_at: float, count: int = 10, topics: int = 100_000) -> str:
    """Item 7: join_group naming 100,000 non-existent topics, ten times."""
    sock = dealer(broker)
    for i in range(count):
        names = [f"{j:x}" for j in range(topics)]  # short: the header stays under 1 MiB
        send(
            sock,
            b"j%d" % i,
            "join_group",
            json.dumps(
                {
                    "group_id": f"attack-g{i}",
                    "topics": names,
                    "session_timeout_ms": 3_600_000,
                    "client_id": "attacker",
                }
            ).encode(),
        )
    got = replies(sock, count, stop_at)
    idle_until(stop_at)
    sock.close()
    return (
        f"{count} join_group × {topics:,} non-existent topics, session_timeout_ms "
        f"3,600,000: {codes(got) or 'no answer in the window'}"
    )


def _zmtp_handshake(host: str, port: int) -> socket.socket:
    """A raw TCP peer that speaks just enough ZMTP 3.0 (NULL mechanism) to be a DEALER."""
    conn = socket.create_connection((host, port), timeout=5)
    greeting = (
        b"\xff"
        + b"\x00" * 8
        + b"\x7f"
        + b"\x03\x00"
        + b"NULL".ljust(20, b"\x00")
        + b"\x00"
        + b"\x00" * 31
    )
    conn.sendall(greeting)
    got = b""
    while len(got) < 64:
        chunk = conn.recv(64 - len(got))
        if not chunk:
            raise ConnectionError("the broker closed the connection during the greeting")
        got += chunk
    prop = bytes([len(b"Socket-Type")]) + b"Socket-Type" + struct.pack(">I", 6) + b"DEALER"
    body = b"\x05READY" + prop
    conn.sendall(bytes([0x04, len(body)]) + body)
    return conn


def more_frames_never_last(
    broker, stop_at: float, frames: int = 60, frame_bytes: int = 16 * MIB
) -> str:
    """Item 8: a raw ZMTP peer sends 16 MiB frames with MORE set and never the last."""
    conn = _zmtp_handshake(broker.host, broker.zmq_port)
    chunk = b"\x00" * frame_bytes
    sent = 0
    try:
        for _ in range(frames):
            if time.monotonic() >= stop_at:
                break
            conn.sendall(bytes([0x03]) + struct.pack(">Q", frame_bytes) + chunk)  # MORE|LONG
            sent += 1
        idle_until(stop_at)
    except OSError as exc:
        return f"{sent} × {frame_bytes // MIB} MiB frames with MORE, then {exc}"
    finally:
        conn.close()
    return f"{sent} × {frame_bytes // MIB} MiB frames with MORE set, never the last; held open"


def fetches_never_read(broker, stop_at: float, count: int = 400) -> str:
    """Item 8: a client sends 1 MB fetches and never reads the replies."""
    with RawClient(broker.bootstrap, timeout=PROBE_TIMEOUT_S) as filler:
        for _ in range(4):
            filler.request(
                "produce", {"acks": 1, "targets": [[ATTACK_TOPIC, 0]]}, [batch_of(b"f" * 250_000)]
            )
    sock = dealer(broker, RCVHWM=1, RCVBUF=4096)
    header = json.dumps(
        {
            "max_wait_ms": 0,
            "min_bytes": 1,
            "max_bytes": MIB,
            "partitions": [[ATTACK_TOPIC, 0, 0, MIB]],
        }
    ).encode()
    for i in range(count):
        send(sock, b"n%d" % i, "fetch", header)
    idle_until(stop_at)
    sock.close()
    return f"{count} fetches of ~1 MB each, replies never read (socket held open)"


def create_topics_3000(broker, stop_at: float, count: int = 3_000) -> str:
    """Item 9: one create_topics request naming 3,000 topics."""
    sock = dealer(broker)
    started = time.monotonic()
    send(
        sock,
        b"c",
        "create_topics",
        json.dumps(
            {
                "topics": [
                    {"name": f"many-{i}", "num_partitions": 1, "replication_factor": 1}
                    for i in range(count)
                ]
            }
        ).encode(),
    )
    got = replies(sock, 1, stop_at)
    sock.close()
    if not got:
        return f"create_topics × {count:,}: no answer within the window"
    took = time.monotonic() - started
    idle_until(stop_at)
    created = sum(1 for t in got[0].get("topics", []) if t.get("error") == 0)
    return f"create_topics × {count:,}: answered in {took:.1f} s, {created:,} created"


def surrogate_group_ids(broker, stop_at: float) -> str:
    """Item 10: a lone surrogate in group_id / client_id."""
    sock = dealer(broker)
    send(sock, b"s1", "join_group", b'{"group_id": "\\ud800", "topics": ["probe"]}')
    send(
        sock,
        b"s2",
        "join_group",
        b'{"group_id": "g-ok", "client_id": "\\udfff", "topics": ["probe"]}',
    )
    got = replies(sock, 2, time.monotonic() + 5)
    sock.close()
    idle_until(stop_at)
    with RawClient(broker.bootstrap, timeout=PROBE_TIMEOUT_S) as other:
        listed = other.request("list_groups", {})[0]
    return (
        f"2 join_group with lone surrogates: {codes(got)}; another client's "
        f"list_groups then: error {listed.get('error')}"
    )


def future_timestamp(broker, stop_at: float) -> str:
    """Item 12: one record timestamped 2**62."""
    with RawClient(broker.bootstrap, timeout=PROBE_TIMEOUT_S) as client:
        header, _ = client.request(
            "produce",
            {"acks": 1, "targets": [[ATTACK_TOPIC, 0]]},
            [batch_of(b"from the future", timestamp=2**62)],
        )
    idle_until(stop_at)
    base, code = header["results"][0][:2]
    verdict = f"accepted at offset {base}" if code == 0 else f"refused with error {code}"
    return f"1 record timestamped 2**62: {verdict}"


def many_empty_groups(broker, stop_at: float, count: int = 20_000, window: int = 200) -> str:
    """Item 12: one-shot groups (join, leave) that are never forgotten."""
    sock = dealer(broker)
    joined = left = 0
    pending: dict[bytes, int] = {}
    sent = 0
    while (sent < count or pending) and time.monotonic() < stop_at:
        while sent < count and len(pending) < window:
            send(
                sock,
                b"e%d" % sent,
                "join_group",
                json.dumps(
                    {
                        "group_id": f"oneshot-{sent}",
                        "topics": [PROBE_TOPIC],
                        "client_id": "attacker",
                    }
                ).encode(),
            )
            pending[b"e%d" % sent] = sent
            sent += 1
        if not sock.poll(100):
            continue
        frames = sock.recv_multipart()
        rid, header = frames[1], json.loads(frames[2])
        index = pending.pop(rid, None)
        if rid.startswith(b"e") and header.get("error") == 0 and index is not None:
            joined += 1
            leave_id = b"l%d" % index
            pending[leave_id] = index
            send(
                sock,
                leave_id,
                "leave_group",
                json.dumps(
                    {"group_id": f"oneshot-{index}", "member_id": header["member_id"]}
                ).encode(),
            )
        elif rid.startswith(b"l"):
            left += 1
    sock.close()
    idle_until(stop_at)
    with RawClient(broker.bootstrap, timeout=PROBE_TIMEOUT_S) as other:
        listed = other.request("list_groups", {})[0]
    return (
        f"{joined:,} one-shot groups joined, {left:,} left; list_groups then lists "
        f"{len(listed.get('groups', [])):,}"
    )


@dataclass(frozen=True)
class Attack:
    name: str
    item: str
    run: Callable
    broker_config: tuple = ()


ATTACKS = [
    Attack("baseline", "-", baseline),
    Attack("parked_fetch_flood", "5", parked_fetch_flood),
    Attack("duplicate_partition_fetches", "6", duplicate_partition_fetches),
    Attack("join_group_many_topics", "7", join_group_many_topics),
    Attack("more_frames_never_last", "8", more_frames_never_last),
    Attack("fetches_never_read", "8", fetches_never_read),
    Attack("create_topics_3000", "9", create_topics_3000),
    Attack("surrogate_group_ids", "10", surrogate_group_ids),
    Attack("future_timestamp", "12", future_timestamp),
    Attack("many_empty_groups", "12", many_empty_groups),
]


# -- one attack, measured ---------------------------------------------------------------------


def _window(samples: list, start: float, end: float) -> list:
    return [s for s in samples if start <= s[0] < end]


def measure(attack: Attack, seconds: float) -> dict:
    row = {"attack": attack.name, "item": attack.item, "seconds": seconds}
    with BrokerProcess(config=dict(attack.broker_config)) as broker:
        with RawClient(broker.bootstrap, timeout=PROBE_TIMEOUT_S) as admin:
            admin.request(
                "create_topics",
                {
                    "topics": [
                        {"name": PROBE_TOPIC, "num_partitions": 1, "replication_factor": 1},
                        {"name": ATTACK_TOPIC, "num_partitions": 1, "replication_factor": 1},
                    ]
                },
            )
        rss = RssSampler(broker.pid)
        rss.start()
        probe = Probe(broker.bootstrap)
        time.sleep(WARMUP_S)
        rss.mark()
        started = time.monotonic()
        try:
            row["attacker"] = attack.run(broker, started + seconds)
        except Exception as exc:  # noqa: BLE001 - the table shows what broke
            row["attacker"] = f"the attack raised {type(exc).__name__}: {exc}"
        ended = max(time.monotonic(), started + seconds)
        time.sleep(max(0.0, ended + AFTER_S - time.monotonic()))
        samples = probe.finish()
        try:  # a long poll on an idle partition must wait its max_wait_ms (item 5)
            row["long_poll_ms"] = long_poll_ms(broker, wait_ms=LONG_POLL_MS)
        except TimeoutError:
            row["long_poll_ms"] = None
        rss.stop()
        row["broker_alive"] = broker.proc.poll() is None
        row["peak_rss_mb"] = rss.peak / MIB
        row["base_rss_mb"] = rss.base / MIB
    during = _window(samples, started, ended)
    after = _window(samples, ended, ended + AFTER_S)
    summary = latency_summary([int(s[2] * 1e9) for s in during])
    row.update({k: summary[k] for k in ("count", "p50_ms", "p99_ms", "max_ms")})
    after_ms = sorted(s[2] * 1000 for s in after)
    row["after_p99_ms"] = percentile(after_ms, 99) if after_ms else None
    row["timeouts"] = sum(1 for s in during + after if s[3] == "timeout")
    row["errors"] = sum(1 for s in during + after if s[3] not in (0, "timeout"))
    row["ok"] = (
        row["broker_alive"]
        and not row["timeouts"]
        and not row["errors"]
        and summary["p99_ms"] < GOAL_P99_MS
        and (row["after_p99_ms"] or 0) < GOAL_P99_MS
        and row["peak_rss_mb"] < GOAL_RSS_MB
        and row["long_poll_ms"] is not None
        and LONG_POLL_MS * 0.8 <= row["long_poll_ms"] <= LONG_POLL_MS * 3
    )
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe", metavar="BOOTSTRAP", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=5.0, help="each attack's window")
    parser.add_argument("--only", default="", help="comma-separated attack names")
    parser.add_argument("--out", default=str(HERE), help="directory for attacks.json etc.")
    parser.add_argument("--note", default="", help="a line added to the conditions")
    args = parser.parse_args(argv)
    if args.probe:
        return probe_main(args.probe)
    wanted = [a for a in ATTACKS if not args.only or a.name in args.only.split(",")]
    unknown = set(filter(None, args.only.split(","))) - {a.name for a in ATTACKS}
    if unknown:
        parser.error(f"unknown attacks {sorted(unknown)}; choose from {[a.name for a in ATTACKS]}")
    out = Path(args.out)
    machine = machine_conditions()
    shown = [a for a in (argv if argv is not None else sys.argv[1:]) if a != args.note]
    meta = {
        "command": "python benchmarks/attacks.py " + " ".join(a for a in shown if a != "--note"),
        "machine": machine,
        "seconds": args.seconds,
        "after_s": AFTER_S,
        "note": args.note,
        "goal": {"p99_ms": GOAL_P99_MS, "rss_mb": GOAL_RSS_MB},
    }
    rows = []
    for attack in wanted:
        log(f"attack {attack.name} (item {attack.item}) for {args.seconds:.0f} s")
        rows.append(measure(attack, args.seconds))
        log(
            f"  p50 {rows[-1]['p50_ms']:.1f} ms, p99 {rows[-1]['p99_ms']:.1f} ms, "
            f"peak RSS {rows[-1]['peak_rss_mb']:.0f} MB: {rows[-1]['attacker']}"
        )
    meta["load_after"] = [round(x, 2) for x in os.getloadavg()]
    data = {"meta": meta, "rows": rows}
    (out / "attacks.json").write_text(json.dumps(data, indent=1))
    results = out / "results.json"
    if results.exists():  # RESULTS.md gets (or refreshes) its "Hostile clients" section
        main_data = json.loads(results.read_text())
        (out / "RESULTS.md").write_text(
            report.render(
                main_data["rows"], main_data["meta"], **report.side_sections(out, attacks=data)
            )
        )
    print("\n".join(report.attacks_section(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
