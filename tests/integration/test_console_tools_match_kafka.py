"""The course's console commands print what Apache Kafka's own tools print.

The same commands (the course's labs use them as printed: create, list, a keyed console
producer with ``parse.key``/``key.separator``, a console consumer from the beginning with
``print.key``) run twice: Apache Kafka's tools against Apache Kafka (KRaft, one node) and
labkit's tools of the same name against the labkit broker. stdout must match line for
line (records compared as a multiset: across partitions their order is not defined), and
the consumer's closing "Processed a total of N messages" on stderr too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from labkit.testing.apache_kafka import run_tool

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
TOPIC = "course-events"
RECORDS = 'anna:{"amount": 12}\nbartek:{"amount": 3400}\nanna:{"amount": 7}\n'


def labkit_tool(script: str, *args: str, input: str | None = None):
    return subprocess.run(
        [str(BIN / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        input=input,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )


def session(run, bootstrap: str) -> list[tuple[list[str], str]]:
    """The course's commands, in order; (stdout lines, last stderr line) of each."""
    boot = ("--bootstrap-server", bootstrap)
    steps = [
        (
            (
                "kafka-topics.sh",
                *boot,
                "--create",
                "--topic",
                TOPIC,
                "--partitions",
                "3",
                "--replication-factor",
                "1",
            ),
            None,
        ),
        (("kafka-topics.sh", *boot, "--list"), None),
        (
            (
                "kafka-console-producer.sh",
                *boot,
                "--topic",
                TOPIC,
                "--property",
                "parse.key=true",
                "--property",
                "key.separator=:",
            ),
            RECORDS,
        ),
        (
            (
                "kafka-console-consumer.sh",
                *boot,
                "--topic",
                TOPIC,
                "--from-beginning",
                "--max-messages",
                "3",
                "--property",
                "print.key=true",
                "--property",
                "key.separator=:",
            ),
            None,
        ),
        (("kafka-topics.sh", *boot, "--create", "--topic", TOPIC, "--partitions", "1"), None),
    ]
    out = []
    for args, stdin in steps:
        done = run(*args, input=stdin)
        errors = [line for line in done.stderr.splitlines() if "SLF4J" not in line]
        out.append((done.stdout.splitlines(), errors[-1] if errors else ""))
    return out


def test_course_commands_print_what_kafkas_tools_print(apache_kafka, shared_broker):
    kafka = session(run_tool, apache_kafka.bootstrap)
    labkit = session(labkit_tool, shared_broker.bootstrap)
    create, listing, produce, consume, again = zip(kafka, labkit, strict=True)
    assert create[0] == create[1] == ([f"Created topic {TOPIC}."], "")
    assert TOPIC in listing[0][0]
    assert TOPIC in listing[1][0]
    assert produce[0] == produce[1] == ([], "")
    assert sorted(consume[0][0]) == sorted(consume[1][0])
    assert sorted(consume[1][0]) == sorted(RECORDS.splitlines())
    assert consume[0][1] == consume[1][1] == "Processed a total of 3 messages"
    # creating it again: Kafka's TopicCommand prints its error on stdout
    assert again[0][0] == again[1][0]
    assert again[0][0] == [f"Error while executing topic command : Topic '{TOPIC}' already exists."]
