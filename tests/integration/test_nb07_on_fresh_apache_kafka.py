"""Notebook 07 run first on a fresh Apache Kafka with Kafka's own group timing.

Its section 4 moves a group's committed offset back with ``labkit consumer-groups
--reset-offsets`` and starts a consumer in that group. It is the first group the cluster
sees: Kafka creates ``__consumer_offsets`` and, while its partitions load, answers
DescribeGroups with NOT_COORDINATOR for the group (the reset failed: "could not be
described", and the group then read from the log end: nothing); and a group that was
empty waits ``group.initial.rebalance.delay.ms`` (3 s by default) before its first member
gets partitions (a read that gives up after ``consumer_timeout_ms=2000`` got nothing). The
series on Apache Kafka (test_series_on_apache_kafka.py) runs notebook 07 on a broker other
notebooks used before, with the delay at 0 as every Apache Kafka of the tests
(labkit/testing/apache_kafka.py); this test keeps Kafka's default, as a teaching cluster
would, and gives each language of the notebook a broker nothing ran on before.

``log.initial.task.delay.ms`` (Kafka: 30 s after start before the first retention check,
"for testing only") is 0 here: a class's cluster has been up for longer than that, and a
first check 30 s late would delete every segment of section 2's topic at once.
"""

from __future__ import annotations

import pytest

pytest.importorskip("nbformat")
pytest.importorskip("nbval")
pytest.importorskip("kafka")

from labkit.testing.apache_kafka import ApacheKafka, ApacheKafkaMissing
from tests.integration.test_series_masters import (
    MASTERS,
    expected_exercises,
    run_notebook,
)
from tests.integration.test_series_on_apache_kafka import LAB_TIMING

KAFKAS_GROUP_TIMING = {"group.initial.rebalance.delay.ms": "3000"}  # Kafka's default
UP_FOR_A_WHILE = {"log.initial.task.delay.ms": "0"}  # as a cluster that is not just started

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(900),
    pytest.mark.usefixtures("kafka_python_garbage"),
]


@pytest.fixture
def fresh_kafka():
    try:
        broker = ApacheKafka(config={**LAB_TIMING, **KAFKAS_GROUP_TIMING, **UP_FOR_A_WHILE}).start()
    except ApacheKafkaMissing as exc:
        pytest.fail(str(exc))
    try:
        yield broker
    finally:
        broker.stop()


@pytest.mark.parametrize("name", ["07_retention_and_replay", "pl/07_retention_and_replay"])
def test_notebook_07_passes_first_on_a_fresh_apache_kafka(fresh_kafka, name):
    run = run_notebook(MASTERS / f"{name}.ipynb", fresh_kafka.bootstrap, grading_mode=True)
    assert run.returncode == 0, f"{name} failed on a fresh Apache Kafka:\n{run.tail()}"
    wanted = expected_exercises(name)
    statuses = run.statuses()
    assert {ex: statuses.get(ex, "NOT RUN") for ex in wanted} == dict.fromkeys(wanted, "PASS")
