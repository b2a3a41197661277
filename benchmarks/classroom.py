"""A whole class on one machine (issue 19): N simulated students against one broker.

    .venv/bin/python benchmarks/classroom.py                      # make bench-classroom
    .venv/bin/python benchmarks/classroom.py --sizes 5,10 --window-s 20 --ramp-s 10
    .venv/bin/python benchmarks/classroom.py --sizes 160 --per-process 2 --nice 5

Each simulated **student** runs what a lab exercise runs: one ``create_topics`` of the
shared 3-partition ``transactions`` topic (an "already exists" answer is expected) and
one ``list_topics``; a producer sending one ~220-byte JSON card transaction per
second (``labkit.nb.generators.transactions``, keyed by user); two consumers, each in
a consumer group of its own, reading the whole topic from earliest; and one
``labkit console-consumer --from-beginning --max-messages 5`` subprocess. Students
start spread over the first 10 s. ``--per-process`` packs 1 or 2 students into one
Python process (``--nice`` lowers those processes' priority); student 0, the
**probe**, always runs alone at normal priority, and its latency is reported apart.
One more process holds an **idle consumer** (a group on a topic nobody writes to), to
show what a waiting notebook costs.

Theory of operation. The orchestrator (``main``/``run_size``) starts a fresh broker
(``labkit.testing.BrokerProcess``) on loopback, creates the topics, and starts the
student processes (this file with ``--students SPEC``). Every process gets absolute
wall-clock times: when each of its students starts, when the measured window opens
(after ``--ramp-s``) and closes (``--window-s`` later; producers stop then), and when
consumers stop reading (``DRAIN_S`` later). The orchestrator samples CPU times
(psutil) of the broker and of every client process tree when the window opens and
closes. Each process prints one JSON result: what its producers had acknowledged
(sequence, partition, offset), what each consumer group saw (per producing student,
the sequence numbers as ranges; the highest offset read per partition; duplicates),
a latency histogram of the records received inside the window (receive wall time
minus the producer's ``sent_ns``, one machine clock; records sent before the
consumer's first assignment are its from-earliest backlog and are left out),
first-assignment times,
assignment counts and errors by kind (WARNING log lines of the client, exceptions,
console-consumer timeouts). ``summarize`` turns those into one table row:
e2e p50/p99, CPU, client CPU per delivered record, lost records (acknowledged but
not seen by a group that read past their offset), duplicates, unread records (past a
group's position when it stopped: it fell behind), broker peak RSS (VmHWM).

Bounds: every size runs ``ramp + window + drain`` seconds and then its processes get
``STOP_GRACE_S`` to report before their whole process trees are killed (SIGKILL);
the broker is stopped and its data directory removed after each size. Results go
to ``classroom.json`` and the "Classroom" section of RESULTS.md
(``report.classroom_section``; ``run.py`` keeps that section when it rewrites it).
"""

from __future__ import annotations

import argparse
import bisect
import faulthandler
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import report  # noqa: E402
from common import machine_conditions, proc_status_kb  # noqa: E402

TOPIC = "transactions"
PARTITIONS = 3
IDLE_TOPIC = "classroom-idle"
IDLE_GROUP = "classroom-idle"
START_SPREAD_S = 10.0  # all students start within this many seconds
SEND_INTERVAL_S = 1.0  # one transaction per second per student
DRAIN_S = 5.0  # consumers keep reading this long after producers stop
STOP_GRACE_S = 30.0  # then the processes have this long to report, or are killed
CONSOLE_MAX_MESSAGES = 5
CONSOLE_TIMEOUT_S = 30.0  # a console-consumer still running after this is killed
CONSOLE_IDLE_MS = 10_000  # --timeout-ms: it gives up after 10 s without a record
POLL_MS = 500
HIST_STEP = 1.02  # latency histogram buckets: 2 % wide
MIB = 1 << 20
DEFAULT_SIZES = (20, 40, 80, 160)
GOALS = {"p99_ms": 100.0, "cpu_per_record_ms": 0.1, "idle_cpu_pct": 0.5}
# labkit/broker/groups.py logs "group G: member M expired: ..." (and then a rebalance
# line that quotes the reason, "generation N (member M expired: ...)": not counted twice)
EXPIRED_LINE = re.compile(r"group \S+: member \S+ expired")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- pure parts (tests/unit/test_bench_classroom.py) -------------------------------------


def bucket_of(ms: float) -> int:
    """The histogram bucket of a latency in ms (2 % wide; everything under 0.01 ms is 0)."""
    return max(0, int(math.log(max(ms, 0.01) / 0.01, HIST_STEP)))


def bucket_ms(bucket: int) -> float:
    """The upper edge of a bucket in ms (a percentile is over-, never under-stated)."""
    return 0.01 * HIST_STEP ** (bucket + 1)


def merge_hists(hists) -> dict[int, int]:
    total: Counter = Counter()
    for hist in hists:
        total.update({int(k): v for k, v in hist.items()})
    return dict(total)


def hist_percentile(hist: dict, pct: float) -> float | None:
    """Nearest-rank percentile of a histogram {bucket: count}, in ms; None when empty."""
    count = sum(hist.values())
    if not count:
        return None
    rank = max(1, math.ceil(pct / 100.0 * count))
    seen = 0
    for bucket in sorted(hist, key=int):
        seen += hist[bucket]
        if seen >= rank:
            return bucket_ms(int(bucket))
    return bucket_ms(int(max(hist, key=int)))


def percentile(values, pct: float) -> float | None:
    """Nearest-rank percentile of a list of numbers; None when empty."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, math.ceil(pct / 100.0 * len(ordered)) - 1)]


def to_ranges(numbers) -> list[list[int]]:
    """Sorted inclusive ranges [[lo, hi], ...] covering a set of integers."""
    out: list[list[int]] = []
    for n in sorted(set(numbers)):
        if out and n == out[-1][1] + 1:
            out[-1][1] = n
        else:
            out.append([n, n])
    return out


def in_ranges(ranges: list[list[int]], n: int) -> bool:
    i = bisect.bisect_right(ranges, [n, math.inf]) - 1
    return i >= 0 and ranges[i][0] <= n <= ranges[i][1]


def account(acked: dict[str, list], groups: dict[str, dict]) -> dict:
    """Lost, duplicated and unread records over every consumer group.

    ``acked``: producing student -> [[seq, partition, offset], ...] acknowledged.
    ``groups``: group id -> {"seen": {student: ranges of seqs}, "max_offset":
    {partition: highest offset read}, "duplicates": n}. A record is **lost** for a
    group when the group read past its offset in its partition (its members together)
    but never saw its id; **unread** when the group stopped before reaching it (it
    fell behind: not a loss). Duplicates: ids a group saw more than once.
    """
    lost = unread = 0
    lost_examples: list[str] = []
    for group_id, group in groups.items():
        seen = group.get("seen", {})
        max_offset = {int(p): o for p, o in group.get("max_offset", {}).items()}
        for student, records in acked.items():
            ranges = seen.get(student, [])
            for seq, partition, offset in records:
                if in_ranges(ranges, seq):
                    continue
                if offset <= max_offset.get(int(partition), -1):
                    lost += 1
                    if len(lost_examples) < 5:
                        lost_examples.append(f"{student}-{seq} in {group_id}")
                else:
                    unread += 1
    duplicates = sum(g.get("duplicates", 0) for g in groups.values())
    return {
        "lost": lost,
        "duplicates": duplicates,
        "unread": unread,
        "lost_examples": lost_examples,
    }


def classify(message: str) -> str | None:
    """The error kind of a client WARNING log line (None: not an error)."""
    text = message.lower()
    if "no longer knows this consumer" in text:
        return "member expired (client told)"
    if "no answer from the coordinator" in text:
        return "session timed out (client side)"
    if "poll timeout has expired" in text:
        return "max.poll.interval exceeded"
    if "commit" in text and "failed" in text:
        return "offset commit failed"
    if "metadata refresh failed" in text:
        return "metadata refresh failed"
    if "committed earlier" in text:
        return None  # the consumer resumed from its own commits: expected after a rejoin
    return "other warning: " + message[:60]


def cpu_pct(seconds: float | None, window_s: float) -> float | None:
    return None if seconds is None or window_s <= 0 else 100.0 * seconds / window_s


def summarize(
    size: int,
    per_process: int,
    window_s: float,
    results: list[dict],
    cpu: dict,
    broker_expired: int = 0,
    broker_peak_rss_mb: float | None = None,
    broker_alive: bool = True,
) -> dict:
    """One table row from the processes' results and the CPU seconds of the window.

    ``cpu``: {"broker": s, "clients": s, "idle": s} measured over ``window_s``.
    """
    errors: Counter = Counter()
    acked: dict[str, list] = {}
    groups: dict[str, dict] = {}
    hists, probe_hists, first_ms = [], [], []
    assignments = consumers = delivered = produced = 0
    for res in results:
        errors.update(res.get("errors", {}))
        if "error" in res:
            errors["student process failed"] += 1
        for student, records in res.get("acked", {}).items():
            acked.setdefault(student, []).extend(records)
            produced += len(records)
        for group_id, group in res.get("groups", {}).items():
            groups[group_id] = group
            consumers += 1
            assignments += group.get("assignments", 0)
            if group.get("first_assignment_ms") is not None:
                first_ms.append(group["first_assignment_ms"])
            else:
                errors["consumer never assigned"] += 1
            delivered += group.get("received_in_window", 0)
        hists.append(res.get("hist", {}))
        if res.get("probe"):
            probe_hists.append(res.get("hist", {}))
    if broker_expired:
        errors["members expired (no heartbeat)"] += broker_expired
    if not broker_alive:
        errors["broker died"] += 1
    hist = merge_hists(hists)
    probe = merge_hists(probe_hists)
    tally = account(acked, groups)
    clients_cpu = cpu.get("clients")
    return {
        "students": size,
        "per_process": per_process,
        "window_s": window_s,
        "e2e_p50_ms": hist_percentile(hist, 50),
        "e2e_p99_ms": hist_percentile(hist, 99),
        "probe_p50_ms": hist_percentile(probe, 50),
        "probe_p99_ms": hist_percentile(probe, 99),
        "broker_cpu_pct": cpu_pct(cpu.get("broker"), window_s),
        "clients_cpu_pct": cpu_pct(clients_cpu, window_s),
        "idle_consumer_cpu_pct": cpu_pct(cpu.get("idle"), window_s),
        "delivered": delivered,
        "produced": produced,
        "cpu_per_record_ms": (
            1000.0 * clients_cpu / delivered if clients_cpu is not None and delivered else None
        ),
        "first_assignment_p95_ms": percentile(first_ms, 95),
        "consumers": consumers,
        "rebalances": max(0, assignments - len(first_ms)),
        "errors": dict(sorted(errors.items())),
        "lost": tally["lost"],
        "duplicates": tally["duplicates"],
        "unread": tally["unread"],
        "lost_examples": tally["lost_examples"],
        "broker_peak_rss_mb": broker_peak_rss_mb,
    }


# -- a student process ----------------------------------------------------------------------


class ErrorLog(logging.Handler):
    """Counts the client's WARNING+ log lines by error kind (``classify``)."""

    def __init__(self, errors: Counter, counts_lock: threading.Lock):
        super().__init__(logging.WARNING)
        # not ``self.lock``: that is the Handler's own lock, held around emit()
        self.errors, self.counts_lock = errors, counts_lock

    def emit(self, record: logging.LogRecord) -> None:
        kind = classify(record.getMessage())
        if kind:
            with self.counts_lock:
                self.errors[kind] += 1


class Student:
    """One student's clients, on threads of the process (see the module docstring)."""

    def __init__(self, index: int, spec: dict, proc: StudentProcess):
        self.name = f"s{index:03d}"
        self.index = index
        self.spec = spec
        self.proc = proc
        self.start_at = spec["starts"][str(index)]
        self.acked: list[list[int]] = []
        self.acked_lock = threading.Lock()

    def threads(self) -> list[threading.Thread]:
        return [
            threading.Thread(
                target=self._guard, args=(fn,), name=f"{self.name}-{label}", daemon=True
            )
            for label, fn in (
                ("admin", self.admin),
                ("producer", self.produce),
                ("consumer-a", lambda: self.consume("a")),
                ("consumer-b", lambda: self.consume("b")),
            )
        ]

    def _guard(self, fn) -> None:
        try:
            wait_until(self.start_at)
            fn()
        except Exception as exc:  # noqa: BLE001 - counted by kind in the report
            self.proc.error(type(exc).__name__)

    def admin(self) -> None:
        from labkit.client import KafkaAdminClient, NewTopic
        from labkit.errors import TopicAlreadyExistsError

        admin = KafkaAdminClient(
            bootstrap_servers=self.spec["bootstrap"], client_id=f"{self.name}-admin"
        )
        try:
            try:
                admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)])
            except TopicAlreadyExistsError:
                pass  # the first student (or the instructor) created it
            if TOPIC not in admin.list_topics():
                self.proc.error("list_topics without the topic")
        finally:
            admin.close()
        self.console_consumer()

    def console_consumer(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "labkit",
            "console-consumer",
            "--bootstrap-server",
            self.spec["bootstrap"],
            "--topic",
            TOPIC,
            "--from-beginning",
            "--max-messages",
            str(CONSOLE_MAX_MESSAGES),
            "--timeout-ms",
            str(CONSOLE_IDLE_MS),
        ]
        try:
            done = subprocess.run(
                cmd,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=CONSOLE_TIMEOUT_S,
                env=child_env(),
            )
        except subprocess.TimeoutExpired:
            self.proc.error("console-consumer timeouts")
            return
        lines = [ln for ln in done.stdout.decode(errors="replace").splitlines() if ln]
        if "NoBrokersAvailable" in done.stderr.decode(errors="replace"):
            self.proc.error("NoBrokersAvailable")
        elif done.returncode != 0:
            self.proc.error("console-consumer failed")
        elif len(lines) < CONSOLE_MAX_MESSAGES:
            self.proc.error("console-consumer timeouts")

    def produce(self) -> None:
        from labkit.client import KafkaProducer
        from labkit.nb.generators import transactions

        producer = KafkaProducer(
            bootstrap_servers=self.spec["bootstrap"],
            client_id=f"{self.name}-producer",
            acks=1,  # the table was measured with acks=1 (the default before kafka-python 3.0)
            key_serializer=str.encode,
            value_serializer=lambda v: json.dumps(v).encode(),
        )
        events = transactions(seed=self.index)
        seq = 0
        next_at = time.time()
        try:
            while time.time() < self.spec["stop_at"]:
                event = next(events)
                record = {
                    **event,
                    "id": f"{self.name}-{seq}",
                    "student": self.name,
                    "seq": seq,
                    "sent_ns": time.time_ns(),
                }
                future = producer.send(TOPIC, key=event["user_id"], value=record)
                future.add_callback(self._acked, seq)
                future.add_errback(self._failed)
                seq += 1
                next_at += SEND_INTERVAL_S
                wait_until(min(next_at, self.spec["stop_at"]))
            producer.flush(timeout=10)
        finally:
            producer.close(timeout=5)

    def _acked(self, seq: int, metadata) -> None:
        with self.acked_lock:
            self.acked.append([seq, metadata.partition, metadata.offset])

    def _failed(self, exc) -> None:
        self.proc.error(f"produce failed: {type(exc).__name__}")

    def consume(self, which: str) -> None:
        from labkit.client import ConsumerRebalanceListener, KafkaConsumer

        group_id = f"{self.name}-{which}"
        state = {
            "seen": {},
            "max_offset": {},
            "duplicates": 0,
            "assignments": 0,
            "first_assignment_ms": None,
            "received_in_window": 0,
        }
        self.proc.groups[group_id] = state
        subscribed = time.monotonic()
        # Records sent before the first assignment are the backlog read from earliest:
        # catching up is not latency, so e2e counts only records sent after it.
        joined_ns = [math.inf]

        class Listener(ConsumerRebalanceListener):
            def on_partitions_revoked(self, revoked):
                pass

            def on_partitions_assigned(self, assigned):
                if not assigned:
                    return
                state["assignments"] += 1
                if state["first_assignment_ms"] is None:
                    state["first_assignment_ms"] = (time.monotonic() - subscribed) * 1000
                    joined_ns[0] = time.time_ns()

        consumer = KafkaConsumer(
            bootstrap_servers=self.spec["bootstrap"],
            group_id=group_id,
            client_id=f"{group_id}-consumer",
            auto_offset_reset="earliest",
            value_deserializer=json.loads,
            **self.spec.get("consumer_config", {}),
        )
        consumer.subscribe([TOPIC], listener=Listener())
        seen: dict[str, set] = {}
        state["_seqs"] = seen  # turned into ranges by report()
        window_open, window_close = self.spec["measure_at"], self.spec["stop_at"]
        stop_reading = self.spec["stop_at"] + DRAIN_S
        try:
            while time.time() < stop_reading:
                batches = consumer.poll(timeout_ms=POLL_MS)
                now_ns = time.time_ns()
                now = now_ns / 1e9
                for tp, records in batches.items():
                    top = state["max_offset"].get(tp.partition, -1)
                    for record in records:
                        value = record.value
                        ids = seen.setdefault(value["student"], set())
                        if value["seq"] in ids:
                            state["duplicates"] += 1
                        ids.add(value["seq"])
                        top = max(top, record.offset)
                        if window_open <= now <= window_close:
                            state["received_in_window"] += 1
                            if value["sent_ns"] >= joined_ns[0]:
                                self.proc.latency((now_ns - value["sent_ns"]) / 1e6)
                    state["max_offset"][tp.partition] = top
        finally:
            consumer.close()


class StudentProcess:
    """The students of one process, its error counts and its latency histogram."""

    def __init__(self, spec: dict):
        self.spec = spec
        self.lock = threading.Lock()
        self.errors: Counter = Counter()
        self.hist: Counter = Counter()
        self.groups: dict[str, dict] = {}
        self.students = [Student(i, spec, self) for i in spec["students"]]

    def error(self, kind: str) -> None:
        with self.lock:
            self.errors[kind] += 1

    def latency(self, ms: float) -> None:
        with self.lock:
            self.hist[bucket_of(ms)] += 1

    def run(self) -> dict:
        logging.getLogger().addHandler(ErrorLog(self.errors, self.lock))
        threads = [t for s in self.students for t in s.threads()]
        for thread in threads:
            thread.start()
        deadline = self.spec["stop_at"] + DRAIN_S + STOP_GRACE_S / 2
        for thread in threads:
            thread.join(max(0.0, deadline - time.time()))
        hung = [t.name for t in threads if t.is_alive()]
        if hung:
            self.error("client threads still running at the end")
            faulthandler.dump_traceback(all_threads=True)  # where they hang: stderr
        return self.report(hung)

    def report(self, hung: list[str]) -> dict:
        """The process's result (what a hung thread had seen so far counts too)."""
        for group in self.groups.values():
            seqs = group.pop("_seqs", {})
            group["seen"] = {student: to_ranges(list(ids)) for student, ids in list(seqs.items())}
        acked = {}
        for student in self.students:
            with student.acked_lock:
                acked[student.name] = list(student.acked)
        with self.lock:
            return {
                "students": [s.name for s in self.students],
                "probe": self.spec.get("probe", False),
                "acked": acked,
                "groups": self.groups,
                "hist": dict(self.hist),
                "errors": dict(self.errors),
                "hung": hung,
            }


def idle_main(spec: dict) -> dict:
    """One consumer in a group on a topic with no traffic, polling as a notebook would."""
    from labkit.client import KafkaConsumer

    consumer = KafkaConsumer(
        IDLE_TOPIC,
        bootstrap_servers=spec["bootstrap"],
        group_id=IDLE_GROUP,
        auto_offset_reset="earliest",
    )
    try:
        while time.time() < spec["stop_at"]:
            consumer.poll(timeout_ms=1000)
    finally:
        consumer.close()
    return {"idle": True}


def wait_until(wall: float) -> None:
    time.sleep(max(0.0, wall - time.time()))


def child_env() -> dict:
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": str(HERE.parent) + (os.pathsep + path if path else ""),
    }


def child_main(spec_json: str) -> int:
    spec = json.loads(spec_json)
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # kill -USR1: stacks to stderr
    if spec.get("nice"):
        os.nice(spec["nice"])
    try:
        result = idle_main(spec) if spec.get("idle") else StudentProcess(spec).run()
    except Exception as exc:  # noqa: BLE001 - the orchestrator reports it
        result = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    os._exit(0)  # a client thread that hung must not keep the process (and the run) alive


# -- the orchestrator -------------------------------------------------------------------------


def pack(size: int, per_process: int) -> list[list[int]]:
    """Student indexes per process: student 0 (the probe) alone, the rest by per_process."""
    rest = list(range(1, size))
    return [[0]] + [rest[i : i + per_process] for i in range(0, len(rest), per_process)]


def start_times(size: int, t0: float, spread_s: float = START_SPREAD_S) -> dict[str, float]:
    """Students start evenly spread over ``spread_s`` from ``t0`` (the probe first)."""
    step = spread_s / size if size else 0.0
    return {str(i): t0 + i * step for i in range(size)}


def cpu_seconds(roots: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds (user+system) of process trees: {name: root pids} -> {name: seconds}.

    A tree counts its roots, their reaped children (``children_*``) and every live
    descendant, so a child that exits between two samples is counted once. One pass
    over the process table: walking it per root took seconds at 160 processes.
    """
    import psutil

    kids: dict[int, list[int]] = {}
    times: dict[int, tuple] = {}
    for proc in psutil.process_iter(["ppid", "cpu_times"]):
        info = proc.info
        if info.get("cpu_times") is None:
            continue
        kids.setdefault(info["ppid"], []).append(proc.pid)
        times[proc.pid] = info["cpu_times"]
    out = {}
    for name, pids in roots.items():
        total = 0.0
        for root in pids:
            if root not in times:
                continue  # exited and reaped: its time is gone from the tree
            t = times[root]
            total += t.children_user + t.children_system
            stack = [root]
            while stack:
                pid = stack.pop()
                total += times[pid].user + times[pid].system if pid in times else 0.0
                stack.extend(kids.get(pid, ()))
        out[name] = total
    return out


def kill_tree(proc: subprocess.Popen) -> None:
    import psutil

    try:
        family = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        family = []
    for member in [*family]:
        try:
            member.kill()
        except psutil.Error:
            pass
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def run_size(size: int, args) -> dict:
    from labkit.client import KafkaAdminClient, NewTopic
    from labkit.testing import BrokerProcess

    log(
        f"{size} students, {args.per_process} per process, ramp {args.ramp_s:.0f} s, "
        f"window {args.window_s:.0f} s"
    )
    with BrokerProcess() as broker:
        admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1), NewTopic(IDLE_TOPIC, 1, 1)])
        admin.close()
        t0 = time.time() + 2.0  # time for the processes to import labkit
        measure_at = t0 + args.ramp_s
        stop_at = measure_at + args.window_s
        spread_s = min(START_SPREAD_S, args.ramp_s)  # everyone has started by the window
        base = {
            "bootstrap": broker.bootstrap,
            "starts": start_times(size, t0, spread_s),
            "measure_at": measure_at,
            "stop_at": stop_at,
            "consumer_config": args.consumer_config,
        }
        specs = [
            {
                **base,
                "students": group,
                "probe": group == [0],
                "nice": 0 if group == [0] else args.nice,
            }
            for group in pack(size, args.per_process)
        ]
        procs = [spawn(spec) for spec in specs]
        idle = spawn({**base, "idle": True, "stop_at": stop_at + DRAIN_S})
        try:
            row = measure(size, args, broker, procs, idle, measure_at, stop_at)
        finally:  # also on Ctrl-C or a failure of the harness: no process outlives the size
            for proc in [*procs, idle]:
                if proc.poll() is None:
                    kill_tree(proc)
    row["processes"] = len(procs)
    row["nice"] = args.nice
    return row


def measure(size: int, args, broker, procs: list, idle, measure_at: float, stop_at: float) -> dict:
    """CPU over the window, then every process's report: one table row."""
    roots = {"broker": [broker.pid], "clients": [p.pid for p in procs], "idle": [idle.pid]}
    wait_until(measure_at)
    window_started = time.monotonic()
    late_s = time.time() - measure_at
    before = cpu_seconds(roots)
    wait_until(stop_at)
    window_s = time.monotonic() - window_started
    after = cpu_seconds(roots)
    log(f"  window closed after {window_s:.1f} s; waiting for the students' reports")
    if late_s > 1.0:  # the students' window is by the clock: CPU would cover less of it
        log(f"  the CPU window opened {late_s:.1f} s late (a starved orchestrator)")
    results = [collect(p, stop_at + DRAIN_S + STOP_GRACE_S) for p in procs]
    collect(idle, stop_at + DRAIN_S + STOP_GRACE_S)
    broker_alive = broker.proc.poll() is None
    peak_kb = proc_status_kb(broker.pid, "VmHWM") if broker_alive else None
    expired = len(EXPIRED_LINE.findall(broker.output()))
    cpu = {name: after[name] - before[name] for name in roots}
    return summarize(
        size,
        args.per_process,
        window_s,
        results,
        cpu,
        broker_expired=expired,
        broker_peak_rss_mb=peak_kb / 1024 if peak_kb else None,
        broker_alive=broker_alive,
    )


def spawn(spec: dict) -> subprocess.Popen:
    """A student (or idle-consumer) process; its stderr goes to a temporary file."""
    err = tempfile.TemporaryFile()  # noqa: SIM115 - read after the child exits
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=err,
        env=child_env(),
        cwd=str(HERE),
    )
    proc.err_file = err
    return proc


def stderr_tail(proc: subprocess.Popen, lines: int = 40) -> str:
    err = getattr(proc, "err_file", None)
    if err is None:
        return ""
    err.seek(0)
    return "\n".join(err.read().decode(errors="replace").splitlines()[-lines:])


def collect(proc: subprocess.Popen, deadline: float) -> dict:
    """The process's JSON result; its process tree is killed at ``deadline`` (or after)."""
    try:
        out, _ = proc.communicate(timeout=max(0.1, deadline - time.time()))
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        log(
            f"  process {proc.pid} did not report in time; killed. Its stderr:\n"
            + stderr_tail(proc)
        )
        return {"error": "did not report in time (killed)"}
    finally:
        if proc.poll() is None:
            kill_tree(proc)
    try:
        result = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        result = {"error": f"no result (exit status {proc.returncode})"}
    if "error" in result or result.get("hung"):
        log(
            f"  process {proc.pid}: {result.get('error') or 'threads hung: ' + str(result['hung'])}"
            f". Its stderr:\n{stderr_tail(proc)}"
        )
    return result


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--sizes takes comma-separated numbers of students, e.g. 20,40; got {text!r}"
        ) from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--sizes needs numbers of at least 1; got {text!r}")
    return sizes


def parse_configs(text: str) -> dict[str, int]:
    """``key=int,...`` -> {key: int} (the students' consumer configs)."""
    out = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not value.strip().isdigit():
            raise argparse.ArgumentTypeError(f"{item!r}: expected key=integer")
        out[key.strip()] = int(value)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", metavar="SPEC", help=argparse.SUPPRESS)
    parser.add_argument(
        "--sizes",
        type=parse_sizes,
        default=list(DEFAULT_SIZES),
        help="numbers of students, comma-separated (default 20,40,80,160)",
    )
    parser.add_argument("--window-s", type=float, default=60.0, help="measured window")
    parser.add_argument(
        "--ramp-s",
        type=float,
        default=15.0,
        help="time from the first start to the window (students start "
        f"within the first {START_SPREAD_S:.0f} s, or the whole ramp "
        "when shorter)",
    )
    parser.add_argument(
        "--per-process",
        type=int,
        choices=(1, 2),
        default=None,
        help="students per process (default 1, and 2 from 160 students)",
    )
    parser.add_argument(
        "--nice", type=int, default=0, help="niceness of the student processes (not the probe's)"
    )
    parser.add_argument("--out", default=str(HERE), help="directory for classroom.json")
    parser.add_argument(
        "--no-results", action="store_true", help="do not write classroom.json nor RESULTS.md"
    )
    parser.add_argument("--note", default="", help="a line added to the conditions")
    parser.add_argument(
        "--consumer-config",
        type=parse_configs,
        default={},
        metavar="KEY=INT,...",
        help="configs of the students' consumers, e.g. fetch_min_bytes=1024,fetch_max_wait_ms=50",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="re-render RESULTS.md from classroom.json (with --note: replace its note)",
    )
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args.child)
    if args.report_only:
        data = json.loads((Path(args.out) / "classroom.json").read_text())
        if args.note:
            data["meta"]["note"] = args.note
        return write_results(data, Path(args.out))
    if args.ramp_s <= 0 or args.window_s <= 0:
        parser.error("--ramp-s and --window-s must be more than 0 seconds")
    machine = machine_conditions()
    machine["bytecode"] = byte_compile_labkit()
    started = time.monotonic()
    rows = []
    per_process_arg = args.per_process
    for size in args.sizes:
        args.per_process = per_process_arg or (2 if size >= 160 else 1)
        rows.append(run_size(size, args))
        r = rows[-1]
        log(
            f"  e2e p50 {report.fmt_ms(r['e2e_p50_ms'])} ms, p99 {report.fmt_ms(r['e2e_p99_ms'])}"
            f" ms; broker {report.fmt_num(r['broker_cpu_pct'])} %, clients "
            f"{report.fmt_num(r['clients_cpu_pct'])} %; lost {r['lost']}, duplicates "
            f"{r['duplicates']}; errors {r['errors'] or 'none'}"
        )
    shown = argv if argv is not None else sys.argv[1:]
    command = []
    skip = False
    for arg in shown:  # the --note text is shown once, below the command
        if skip:
            skip = False
        elif arg == "--note":
            skip = True
        elif not arg.startswith("--note="):
            command.append(arg)
    meta = {
        "command": " ".join(["python benchmarks/classroom.py", *command]),
        "machine": machine,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "ramp_s": args.ramp_s,
        "window_s": args.window_s,
        "drain_s": DRAIN_S,
        "nice": args.nice,
        "consumer_config": args.consumer_config,
        "note": args.note,
        "elapsed_s": time.monotonic() - started,
        "goals": GOALS,
    }
    data = {"meta": meta, "rows": rows}
    if args.no_results:
        print("\n".join(report.classroom_section(data)))
        return 0
    return write_results(data, Path(args.out))


def byte_compile_labkit() -> str:
    """Compile labkit's modules once, as ``pip install`` does, before ~160 processes
    import them: with PYTHONDONTWRITEBYTECODE set (Docker images set it, so do some
    shells) an editable checkout never gets its ``__pycache__`` written, and every
    student process would compile ~100 modules from source again (~60 ms of CPU each
    here) -- a cost no installed lab pays. What it found goes into the conditions."""
    import compileall

    package = HERE.parent / "labkit"
    written_by_python = not sys.flags.dont_write_bytecode
    ok = compileall.compile_dir(str(package), quiet=1, workers=1)
    if not ok:
        return "labkit's modules could not all be byte-compiled: processes compile them"
    if written_by_python:
        return "byte-compiled (Python writes its caches here)"
    return "byte-compiled by the harness (PYTHONDONTWRITEBYTECODE is set here)"


def write_results(data: dict, out: Path) -> int:
    """classroom.json, and RESULTS.md's "Classroom" section when RESULTS.md is made here."""
    (out / "classroom.json").write_text(json.dumps(data, indent=1))
    results = out / "results.json"
    if results.exists():
        main_data = json.loads(results.read_text())
        (out / "RESULTS.md").write_text(
            report.render(
                main_data["rows"], main_data["meta"], **report.side_sections(out, classroom=data)
            )
        )
    print("\n".join(report.classroom_section(data)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
