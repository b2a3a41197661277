"""labkit.nb and the graded checks on a Kafka broker that is not labkit (Apache Kafka 4.1.1,
one KRaft node): the lab tells the two apart, and the doctor, the dashboard's snapshot,
live streams, ``nb.reset`` and the checks that ask the broker work there through labkit's
own client classes, which delegate to kafka-python's there (client/delegate*.py) and talk
ZeroMQ to labkit's broker.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest

kafka = pytest.importorskip("kafka")

from labkit import KafkaAdminClient  # noqa: E402
from labkit.client.kafka_python_fixes import keep_unfinished_joins_wanted  # noqa: E402
from labkit.course import broker_checks  # noqa: E402
from labkit.course.checks import Wrong  # noqa: E402
from labkit.nb import _connect  # noqa: E402
from labkit.nb.dashboard_widget import _open_clients, collect  # noqa: E402
from labkit.nb.doctor_checks import FAIL, OK, run_checks  # noqa: E402
from labkit.nb.stream import EventStream  # noqa: E402

pytestmark = [pytest.mark.usefixtures("kafka_python_garbage"), pytest.mark.timeout(300)]


@pytest.fixture(autouse=True)
def fresh_detection():
    _connect.forget_broker_kinds()
    yield
    _connect.forget_broker_kinds()


@pytest.fixture
def kafka_topic(apache_kafka):
    """A 2-partition topic on Apache Kafka with 10 JSON records (5 per key), deleted after."""
    name = f"nb-on-kafka-{uuid.uuid4().hex[:8]}"
    admin = kafka.KafkaAdminClient(bootstrap_servers=apache_kafka.bootstrap)
    admin.create_topics({name: {"num_partitions": 2, "replication_factor": 1}})
    producer = kafka.KafkaProducer(bootstrap_servers=apache_kafka.bootstrap)
    for i in range(10):
        producer.send(name, json.dumps({"n": i}).encode(), key=b"ab"[i % 2 : i % 2 + 1])
    producer.flush(timeout=30)
    producer.close()
    try:
        yield name
    finally:
        admin.delete_topics([name])
        admin.close()


def read_all_and_commit(bootstrap: str, topic: str, group: str, count: int = 10) -> None:
    """A kafka-python group member reads ``count`` records of ``topic`` and commits."""
    reader = kafka.KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=30_000,
    )
    keep_unfinished_joins_wanted(reader)  # kafka-python 3.0.12's lost join rounds
    for seen, _ in enumerate(reader, 1):
        if seen == count:
            break
    reader.commit()
    reader.close()


def test_the_lab_tells_a_labkit_broker_from_another_kafka(apache_kafka, shared_broker):
    assert _connect.is_labkit_broker(shared_broker.bootstrap) is True
    assert _connect.is_labkit_broker(apache_kafka.bootstrap) is False
    # nobody listening: labkit's client says what is wrong, as before
    assert _connect.is_labkit_broker("127.0.0.1:1") is True
    # the helpers' clients (the dashboard's here) are labkit's classes, which choose alike
    expected = {
        apache_kafka.bootstrap: ["DelegatingAdmin", "DelegatingConsumer"],  # over kafka-python
        shared_broker.bootstrap: ["KafkaAdminClient", "KafkaConsumer"],
    }
    for where, names in expected.items():
        admin, consumer = _open_clients([where])
        try:
            assert [type(admin).__name__, type(consumer).__name__] == names
        finally:
            consumer.close()
            admin.close()


def test_the_doctor_passes_on_apache_kafka_with_a_round_trip(apache_kafka):
    report = run_checks(apache_kafka.bootstrap, roundtrip=True, timeout_s=30)
    by_name = {r.name: r for r in report.results}
    assert by_name["broker"].status == OK, by_name["broker"]
    assert "a Kafka cluster (not labkit)" in by_name["broker"].detail
    assert "1 broker" in by_name["broker"].detail
    assert by_name["round trip"].status == OK, by_name["round trip"]
    assert all(r.status != FAIL for r in report.results if r.name in ("broker", "round trip"))


def test_the_dashboard_snapshot_shows_offsets_and_committed_groups(apache_kafka, kafka_topic):
    group = f"nb-on-kafka-group-{uuid.uuid4().hex[:6]}"
    read_all_and_commit(apache_kafka.bootstrap, kafka_topic, group)
    admin, consumer = _open_clients([apache_kafka.bootstrap])
    try:
        snap = collect(admin, consumer, at=0.0, topics=[kafka_topic])
    finally:
        consumer.close()
        admin.close()
    assert sorted(snap.offsets) == [(kafka_topic, 0), (kafka_topic, 1)]
    assert sum(end - start for start, end in snap.offsets.values()) == 10
    committed = snap.groups[group]
    assert {tp: off for tp, off in committed.items()} == {
        tp: end for tp, (_, end) in snap.offsets.items()
    }


def test_the_broker_checks_read_verify_and_judge_groups_on_apache_kafka(apache_kafka, kafka_topic):
    where = apache_kafka.bootstrap
    records = broker_checks.read_topic(kafka_topic, bootstrap=where)
    assert [json.loads(r.value)["n"] for r in records if r.partition == records[0].partition]
    assert len(records) == 10
    assert sum(broker_checks.end_offsets(kafka_topic, bootstrap=where).values()) == 10
    # the records a student's consumer returned are found on the broker...
    assert broker_checks.verify_records(records, topic=kafka_topic, bootstrap=where) == records
    # ...a made-up one is not
    fake = records[0]._replace(offset=records[0].offset + 100)
    with pytest.raises(Wrong, match="there is no record"):
        broker_checks.verify_records([fake], bootstrap=where)
    with pytest.raises(Wrong, match="does not exist"):
        broker_checks.read_topic(f"{kafka_topic}-missing", bootstrap=where)
    group = f"nb-on-kafka-judged-{uuid.uuid4().hex[:6]}"
    with pytest.raises(Wrong, match="committed no offset"):
        broker_checks.expect_group_done(group, kafka_topic, bootstrap=where)
    read_all_and_commit(where, kafka_topic, group)
    broker_checks.expect_group_done(group, kafka_topic, bootstrap=where)
    rows = broker_checks.group_offsets(group, kafka_topic, bootstrap=where)
    assert sum(row.committed for row in rows) == 10
    assert all(row.lag == 0 for row in rows)


def test_an_event_stream_writes_to_apache_kafka(apache_kafka):
    topic = f"nb-on-kafka-stream-{uuid.uuid4().hex[:8]}"
    admin = kafka.KafkaAdminClient(bootstrap_servers=apache_kafka.bootstrap)
    admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 1}})
    try:
        events = [{"n": i} for i in range(20)]
        stream = EventStream(apache_kafka.bootstrap, topic, events, rate=200).start()
        deadline = time.monotonic() + 60
        while stream.running and time.monotonic() < deadline:
            time.sleep(0.1)
        stream.stop()
        assert stream.error is None
        values = [
            json.loads(r.value)
            for r in broker_checks.read_topic(topic, bootstrap=apache_kafka.bootstrap)
        ]
        assert values == events
    finally:
        admin.delete_topics([topic])
        admin.close()


def test_nb_reset_empties_topics_and_deletes_groups_on_apache_kafka(apache_kafka, kafka_topic):
    from labkit.course.checks import Exercise
    from labkit.course.reset import reset_exercise

    group = f"nb-on-kafka-reset-{uuid.uuid4().hex[:6]}"
    read_all_and_commit(apache_kafka.bootstrap, kafka_topic, group)
    exercise = Exercise(
        "99.1", 1, "reset on Kafka", lambda: None, topics={kafka_topic: 3}, groups=(group,)
    )
    report = reset_exercise(exercise, bootstrap=apache_kafka.bootstrap)
    assert report.deleted_groups == [group]
    assert report.emptied_topics == [kafka_topic]
    assert broker_checks.end_offsets(kafka_topic, bootstrap=apache_kafka.bootstrap) == {
        0: 0,
        1: 0,
        2: 0,
    }
    admin = KafkaAdminClient(bootstrap_servers=apache_kafka.bootstrap)
    try:
        assert group not in {g for g, _ in admin.list_consumer_groups()}
        # labkit's describe_topics keys (kafka-python 2.0's) beside kafka-python 3.0's
        (info,) = admin.describe_topics([kafka_topic])
        assert info["topic"] == info["name"] == kafka_topic
        assert sorted(p["partition"] for p in info["partitions"]) == [0, 1, 2]
        assert all(p["leader"] == p["leader_id"] for p in info["partitions"])
    finally:
        admin.close()


def test_labkit_grade_grades_a_notebook_on_apache_kafka(apache_kafka, tmp_path):
    """`labkit grade --bootstrap-server <a Kafka cluster>`: the notebook's nb.doctor() and a
    check that asks the broker (02.2) run on Apache Kafka; the cells are course code
    verbatim (kafka-python), so this does not wait for labkit's client delegation."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from labkit.course import grading

    topic = "nb02-flush"  # the exercise's topic, unprefixed on a private lab
    notebook = new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3"}
    notebook.cells = [
        new_code_cell(
            "from labkit import nb\n"
            "report = nb.doctor()\n"
            "assert report.ok, report.format()\n"
            "BOOTSTRAP = nb.bootstrap_servers()"
        ),
        new_code_cell(
            "from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition\n"
            "admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)\n"
            f"if {topic!r} in admin.list_topics():\n"
            f"    admin.delete_topics([{topic!r}])\n"
            f"admin.create_topics({{{topic!r}: {{'num_partitions': 1, 'replication_factor': 1}}}},"
            " wait_for_metadata=True)\n"
            "producer = KafkaProducer(bootstrap_servers=BOOTSTRAP)\n"
            "for i in range(30):\n"
            f"    producer.send({topic!r}, str(i).encode())\n"
            "producer.flush()\n"
            "consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP)\n"
            f"tp = TopicPartition({topic!r}, 0)\n"
            "in_topic = consumer.end_offsets([tp])[tp]\n"
            f"nb.check('02.2', in_topic, topic={topic!r}, sent=30)"
        ),
        new_code_cell(
            f"consumer.close(); producer.close(); admin.delete_topics([{topic!r}]); admin.close()"
        ),
    ]
    folder = tmp_path / "anna"
    folder.mkdir()
    nbformat.write(notebook, str(folder / "02_producer.ipynb"))
    [result] = grading.grade([folder], bootstrap=apache_kafka.bootstrap, cell_timeout=60)
    assert (result.status, result.detail) == ("ok", "")
    assert [(e.exercise, e.status) for e in result.exercises] == [("02.2", "PASS")]


def test_a_live_plot_follows_a_topic_on_apache_kafka(apache_kafka, kafka_topic):
    from labkit.nb.live import LivePlot

    plot = LivePlot("hist", bins=2, range=(0, 10), display=False)
    plot.follow(
        kafka_topic,
        value_fn=lambda r: json.loads(r.value)["n"],
        from_beginning=True,
        bootstrap_servers=apache_kafka.bootstrap,
    )
    deadline = time.monotonic() + 60
    while plot.model.total < 10 and time.monotonic() < deadline and plot.error is None:
        time.sleep(0.05)
    plot.stop()
    assert plot.error is None
    assert plot.model.snapshot()[1] == [5, 5]
