"""The course's Kafka lab, run as a student runs it: kafka/bin commands from the home folder,
then the course-style scripts of examples/course/ (kafka-python, unchanged but for the
broker's address), each checked against what it must print and do.

    python course_lab.py --server localhost:9092 --scripts examples/course --home ~ --work DIR

The address: the scripts say ``bootstrap_servers='localhost:9092'``; ``--server`` replaces
it in a copy under ``--work`` (only the port without Docker; ``broker:9092``, the course's
spelling, in the Docker lab). ``--home`` must hold ``kafka/bin`` (``labkit kafka-bin``).

Only the standard library and kafka-python: it runs on the test machine against a labkit
broker (tests/integration/test_course_scripts.py) and inside the lab container
(tests/e2e/test_docker_compose.py). Prints ``COURSE-LAB-OK`` at the end; a failed check
raises with what was expected and what the script printed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

ADDRESS_IN_SCRIPTS = "'localhost:9092'"
TRANSACTIONS = 60
WAIT_S = 120.0  # generous: "does not hang" under a loaded CI machine
ALERT_LINE = re.compile(r"^ALERT: (TX\d+) \| ([\d.]+) PLN \| (\S+) \| (\S+)$")
SCORE_LINE = re.compile(r"^ALERT: (TX\d+) \| score (\d+) \(([R\d, ]+)\) \| ([\d.]+) PLN$")
TABLE_ROW = re.compile(r"^(\S+)\s+\|\s+(\d+) \|\s+([\d.]+) \|\s+([\d.]+)$")


class Lab:
    def __init__(self, server: str, scripts: Path, home: Path, work: Path):
        self.server, self.home, self.work = server, home, work
        work.mkdir(parents=True, exist_ok=True)
        for script in sorted(scripts.glob("*.py")):
            text = script.read_text(encoding="utf-8")
            assert ADDRESS_IN_SCRIPTS in text, f"{script.name} does not say {ADDRESS_IN_SCRIPTS}"
            (work / script.name).write_text(
                text.replace(ADDRESS_IN_SCRIPTS, repr(server)), encoding="utf-8"
            )
        self.env = dict(os.environ, PYTHONUNBUFFERED="1")

    # -- kafka/bin, run from the home folder as the course prints it ------------------

    def kafka_bin(self, tool: str, *args: str, input: str | None = None) -> str:
        result = subprocess.run(
            [f"kafka/bin/{tool}", "--bootstrap-server", self.server, *args],
            cwd=self.home,
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=WAIT_S,
        )
        assert result.returncode == 0, f"kafka/bin/{tool} {' '.join(args)}: {result}"
        return result.stdout

    def start(self, *argv: str, cwd: Path | None = None) -> subprocess.Popen:
        """A program in its own session, as in a terminal of its own; Ctrl-C is SIGINT."""
        return subprocess.Popen(
            list(argv),
            cwd=cwd or self.work,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def ctrl_c(self, proc: subprocess.Popen, expect_code: int = 0) -> tuple[str, str]:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=WAIT_S)
        assert proc.returncode == expect_code, (
            f"{proc.args} exited with {proc.returncode} after Ctrl-C:\n{out}\n{err}"
        )
        assert "Traceback" not in err, f"{proc.args} after Ctrl-C:\n{err}"
        return out, err

    def python(self, script: str, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, script, *args],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=WAIT_S,
        )
        assert result.returncode == 0, f"python {script}: {result}"
        assert "Traceback" not in result.stderr, result.stderr
        return result.stdout

    def read_all(self, topic: str) -> list:
        """Every record of ``topic`` up to its end offsets now, read with kafka-python."""
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers=self.server, enable_auto_commit=False)
        try:
            deadline = time.monotonic() + WAIT_S
            while not (partitions := consumer.partitions_for_topic(topic)):
                assert time.monotonic() < deadline, f"no topic {topic}"
                time.sleep(0.2)
            assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
            consumer.assign(assigned)
            consumer.seek_to_beginning()
            ends = consumer.end_offsets(assigned)
            records = []
            while any(consumer.position(tp) < ends[tp] for tp in assigned):
                assert time.monotonic() < deadline, f"{topic}: read {len(records)} records"
                for batch in consumer.poll(timeout_ms=500).values():
                    records.extend(batch)
        finally:
            consumer.close()
        return records

    def group_lag(self, group: str, topic: str = "transactions") -> list[str]:
        """The LAG column of ``kafka-consumer-groups.sh --describe --group``, for ``topic``."""
        result = subprocess.run(
            [
                "kafka/bin/kafka-consumer-groups.sh",
                *("--bootstrap-server", self.server, "--describe", "--group", group),
            ],
            cwd=self.home,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=WAIT_S,
        )
        lines = [line.split() for line in result.stdout.splitlines() if line.strip()]
        header = next((cols for cols in lines if cols[:2] == ["GROUP", "TOPIC"]), None)
        if header is None:
            return []
        lag = header.index("LAG")
        return [cols[lag] for cols in lines if cols[0] == group and cols[1] == topic]

    def wait_caught_up(self, group: str, partitions: int) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            lags = self.group_lag(group)
            if len(lags) == partitions and all(lag == "0" for lag in lags):
                return
            time.sleep(0.5)
        raise AssertionError(f"group {group} did not commit the whole topic: LAG {lags}")


def console_tools(lab: Lab) -> None:
    """Lab 1, part 1, and the course's keyed console producer."""
    out = lab.kafka_bin(
        "kafka-topics.sh",
        *("--create", "--topic", "transactions", "--partitions", "3"),
        *("--replication-factor", "1"),
    )
    assert "Created topic transactions." in out, out
    assert "transactions" in lab.kafka_bin("kafka-topics.sh", "--list").split()
    described = lab.kafka_bin("kafka-topics.sh", "--describe", "--topic", "transactions")
    assert "PartitionCount: 3" in described, described
    lab.kafka_bin(
        "kafka-console-producer.sh",
        *("--topic", "mytopic", "--property", "parse.key=true"),
        *("--property", "key.separator=:"),
        input="jan:45\nalicja:20\n",
    )
    consumer = lab.start(
        "kafka/bin/kafka-console-consumer.sh",
        *("--bootstrap-server", lab.server, "--topic", "mytopic", "--from-beginning"),
        *("--property", "print.key=true", "--group", "reporting"),
        cwd=lab.home,
    )
    lines = [consumer.stdout.readline(), consumer.stdout.readline()]
    out, err = lab.ctrl_c(consumer, expect_code=130)  # Kafka's tools exit 130 on Ctrl-C
    assert sorted("".join(lines).splitlines()) == ["alicja\t20", "jan\t45"], (lines, out, err)
    assert "Processed a total of 2 messages" in err, err
    # the group's offsets were committed: a second run of the group has nothing left
    assert lab.group_lag("reporting", "mytopic") == ["0"]


def score(tx: dict) -> tuple[int, list[str]]:
    """The course's rules, written here again on purpose: the oracle for scoring_consumer."""
    rules = []
    if tx["amount"] > 3000:
        rules.append(("R1", 3))
    if tx["category"] == "elektronika" and tx["amount"] > 1500:
        rules.append(("R2", 2))
    if datetime.fromisoformat(tx["timestamp"]).hour < 6:
        rules.append(("R3", 2))
    return sum(points for _, points in rules), [name for name, _ in rules]


def transactions_and_consumers(lab: Lab) -> None:
    printed = lab.python("producer.py", str(TRANSACTIONS), "0").splitlines()
    assert len(printed) == TRANSACTIONS, printed
    assert printed[-1].startswith(f"[{TRANSACTIONS}] TX{TRANSACTIONS:04d} | "), printed
    records = lab.read_all("transactions")
    assert len(records) == TRANSACTIONS, len(records)
    txs = [json.loads(r.value) for r in records]
    assert sorted(tx["tx_id"] for tx in txs) == [f"TX{i:04d}" for i in range(1, TRANSACTIONS + 1)]
    assert all(r.key == json.loads(r.value)["user_id"].encode() for r in records)
    assert len({r.partition for r in records}) > 1, "keys should spread over the partitions"

    consumers = {
        group: lab.start(sys.executable, script)
        for group, script in (
            ("filter-group", "consumer_filter.py"),
            ("count-group", "consumer_count.py"),
            ("scoring-group", "scoring_consumer.py"),
        )
    }
    try:
        for group in consumers:
            lab.wait_caught_up(group, partitions=3)
        outputs = {group: lab.ctrl_c(proc)[0] for group, proc in consumers.items()}
    finally:
        for proc in consumers.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()

    # filter: exactly the transactions over 3000, once each, in the course's format
    alerts = [ALERT_LINE.match(line) for line in outputs["filter-group"].splitlines()[1:]]
    assert all(alerts), outputs["filter-group"]
    expected = {
        (tx["tx_id"], f"{tx['amount']:.2f}", tx["store"], tx["category"])
        for tx in txs
        if tx["amount"] > 3000
    }
    assert expected, "no transaction over 3000 among 60: the producer's amounts are wrong"
    assert sorted(m.groups() for m in alerts) == sorted(expected), outputs["filter-group"]

    # count: the last table (after 60 messages) has every store's count and sum
    out = outputs["count-group"]
    assert f"--- after {TRANSACTIONS} messages ---" in out, out
    last = out.split(f"--- after {TRANSACTIONS} messages ---")[1]
    rows = {m[1]: m for m in map(TABLE_ROW.match, last.splitlines()) if m}
    counts, sums = Counter(tx["store"] for tx in txs), defaultdict(float)
    for tx in txs:
        sums[tx["store"]] += tx["amount"]
    assert {store: int(m[2]) for store, m in rows.items()} == dict(counts), out
    for store, m in rows.items():
        assert abs(float(m[3]) - sums[store]) < 0.006, (store, m[3], sums[store])

    # scoring: the flagged transactions, printed and sent to `alerts`, once each
    flagged = {tx["tx_id"]: score(tx) for tx in txs if score(tx)[0] >= 3}
    printed_scores = {
        m[1]: (int(m[2]), m[3].split(", "))
        for m in map(SCORE_LINE.match, outputs["scoring-group"].splitlines())
        if m
    }
    assert printed_scores == flagged, outputs["scoring-group"]
    sent = [json.loads(r.value) for r in lab.read_all("alerts")]
    assert sorted(a["tx_id"] for a in sent) == sorted(flagged), sent
    assert all(a["score"] == flagged[a["tx_id"]][0] for a in sent), sent


def ctrl_c_producer(lab: Lab) -> None:
    """stream.py's `while True` loop, stopped with Ctrl-C: every record sent is in the
    topic once, the one being sent when Ctrl-C came included or not at all."""
    proc = lab.start(sys.executable, "stream.py", "0.02")
    sent = 0
    deadline = time.monotonic() + WAIT_S
    while sent < 25 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, f"stream.py ended early: {proc.communicate()}"
        sent += line.startswith("sent ")
    out, _ = lab.ctrl_c(proc)
    sent += sum(line.startswith("sent ") for line in out.splitlines())
    assert "Ctrl-C: closing the producer" in out, out
    seqs = sorted(json.loads(r.value)["seq"] for r in lab.read_all("streaming"))
    # the record being sent when Ctrl-C came, before its "sent" line, may be there too
    assert seqs in (list(range(1, sent + 1)), list(range(1, sent + 2))), (sent, seqs)


def confluent_kafka_client(lab: Lab) -> None:
    """confluent-kafka, the course's other client (the lab installs it): a keyed JSON record
    produced and delivered, then read back by kafka-python."""
    from confluent_kafka import Producer

    delivered = []
    producer = Producer({"bootstrap.servers": lab.server})
    record = {"id": 1, "imie": "adam", "nazwisko": "nowak"}
    producer.produce(
        "rta",
        key="K-1001",
        value=json.dumps(record).encode("utf-8"),
        on_delivery=lambda err, msg: delivered.append(err),
    )
    assert producer.flush(WAIT_S) == 0, "confluent-kafka did not deliver its record"
    assert delivered == [None], delivered
    (read,) = lab.read_all("rta")
    assert (read.key, json.loads(read.value)) == (b"K-1001", record)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", required=True)
    parser.add_argument("--scripts", type=Path, required=True)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    args = parser.parse_args(argv)
    lab = Lab(args.server, args.scripts, args.home.expanduser(), args.work)
    steps = (console_tools, transactions_and_consumers, ctrl_c_producer, confluent_kafka_client)
    for step in steps:
        started = time.monotonic()
        step(lab)
        print(f"{step.__name__}: ok ({time.monotonic() - started:.1f} s)", flush=True)
    print("COURSE-LAB-OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
