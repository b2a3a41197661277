"""Notebook 12, Kafka Connect: the checks of its exercises (rules in ``labkit.course.exercises``).

- ``12.1`` (2 points) The FileStreamSource's config: the transactions file into the
  transactions topic (``topic``, singular), named SOURCE_NAME. Pure: it looks at the dict
  only (and at the student's prefix, labkit.nb.names).
- ``12.2`` (2 points) The FileStreamSink's config: the alerts topic out to a file
  (``topics``, plural), named SINK_NAME. Pure.

A connector is named as the notebook names it (``nb.group("nb12-alerts-out")``): Connect
calls a sink's consumer group ``connect-<connector name>``, so on a broker shared by a class
the name's prefix is what keeps two students' sinks out of one group, and the notebook's
later cells find the connector (REST API) and the group by that name.
- ``12.3`` (3 points) Alerts through the sink: the alerts topic holds exactly the alert
  lines of the transactions topic's large payments (amount > 3000), once each, and the
  sink's file holds exactly the topic's lines -- both read here, from the broker and the
  file; the lines the notebook hands in must be the file's.
- ``12.4`` (3 points) A restarted worker does not send again: after more transactions were
  appended to the source file and the worker restarted, the transactions topic holds
  every line of the file exactly once, in the file's order; the records handed in must be
  the topic's own.

Connect's own work is checked where it shows: in the topic and in the file, never in a
list the notebook keeps.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

from labkit.course.broker_checks import full_group, full_topic, read_topic, verify_records
from labkit.course.checks import Registry, Wrong, counted, expect
from labkit.course.exercises._ref import alert_line
from labkit.i18n import N_, _

EXERCISES = Registry()
exercise = EXERCISES.exercise

# the notebook's names (nb.topic adds a student's prefix on a shared broker)
TRANSACTIONS, ALERTS = "nb12-transactions", "nb12-alerts"
SOURCE_NAME, SINK_NAME = "nb12-transactions-in", "nb12-alerts-out"  # connectors, via nb.group
SOURCE_CLASSES = ("FileStreamSource", "org.apache.kafka.connect.file.FileStreamSourceConnector")
SINK_CLASSES = ("FileStreamSink", "org.apache.kafka.connect.file.FileStreamSinkConnector")
LARGE = 3000


def _same_file(given: object, wanted: str | Path) -> bool:
    return isinstance(given, str | Path) and Path(given).resolve() == Path(wanted).resolve()


def _connector_config(
    config: object, *, classes: tuple[str, ...], other: tuple[str, ...], name: tuple[str, str]
) -> None:
    """What a source's and a sink's config share: a dict, the notebook's name for it
    (``name``: its variable and its bare name), the class, one task."""
    expect(
        isinstance(config, Mapping),
        _(
            'a connector config is a dict of strings, {{"name": ..., "connector.class": ..., ...}}, not {name}'
        ).format(name=type(config).__name__),
    )
    expect(
        str(config.get("name") or "").strip(),
        _(
            'give the connector a "name": the worker knows it by that name (its REST API, its offsets)'
        ),
    )
    variable, bare = name
    expected = full_group(bare)
    expect(
        config.get("name") == expected,
        _(
            '"name" is {got!r}: name the connector {variable} ({expected!r}), as the notebook does. Connect calls a sink\'s consumer group "connect-" + its name, so on a shared broker the name carries your prefix, and the next cells find the connector by it'
        ).format(got=config.get("name"), variable=variable, expected=expected),
    )
    kind = config.get("connector.class")
    expect(
        kind not in other,
        _('"connector.class" is {kind!r}, the other direction: use {wanted!r}').format(
            kind=kind, wanted=classes[0]
        ),
    )
    expect(
        kind in classes,
        _('"connector.class" is {kind!r}: Kafka\'s file connector is {wanted!r}').format(
            kind=kind, wanted=classes[0]
        ),
    )
    tasks = config.get("tasks.max", "1")
    expect(
        str(tasks).strip() == "1",
        _(
            '"tasks.max" is {tasks!r}: a file connector reads or writes one file, with one task ("1")'
        ).format(tasks=tasks),
    )


@exercise("12.1", points=2, title=N_("The source connector: a file of transactions into a topic"))
def source_config(config, *, file, topic):
    """config: the FileStreamSource's config (a dict); file, topic: where it should read
    from and write to (the notebook's TX_FILE and TRANSACTIONS)."""
    _connector_config(
        config, classes=SOURCE_CLASSES, other=SINK_CLASSES, name=("SOURCE_NAME", SOURCE_NAME)
    )
    expect(
        "topic" in config or "topics" not in config,
        _('a source writes to one topic: its key is "topic" (singular); "topics" is a sink\'s'),
    )
    expect(
        config.get("topic") == topic,
        _('"topic" is {got!r}: the transactions go to TRANSACTIONS ({topic!r})').format(
            got=config.get("topic"), topic=topic
        ),
    )
    expect(
        _same_file(config.get("file"), file),
        _(
            '"file" is {got!r}: the source reads the transactions file, str(TX_FILE) ({file!r})'
        ).format(got=config.get("file"), file=str(file)),
    )


@exercise("12.2", points=2, title=N_("The sink connector: the alerts topic out to a file"))
def sink_config(config, *, topic, file):
    """config: the FileStreamSink's config (a dict); topic, file: what it should read and
    where it should write (the notebook's ALERTS and ALERTS_FILE)."""
    _connector_config(
        config, classes=SINK_CLASSES, other=SOURCE_CLASSES, name=("SINK_NAME", SINK_NAME)
    )
    expect(
        "topics" in config,
        _(
            'a sink reads a list of topics: its key is "topics" (plural, comma-separated), "topic" is a source\'s'
        ),
    )
    expect(
        [t.strip() for t in str(config["topics"]).split(",")] == [topic],
        _('"topics" is {got!r}: the sink reads the alerts topic, ALERTS ({topic!r})').format(
            got=config["topics"], topic=topic
        ),
    )
    expect(
        _same_file(config.get("file"), file),
        _('"file" is {got!r}: the sink writes the alerts file, str(ALERTS_FILE) ({file!r})').format(
            got=config.get("file"), file=str(file)
        ),
    )


def _transactions(topic: str) -> list[dict]:
    """The JSON transactions of ``topic`` in partition-offset order (a line that is not
    a transaction is skipped: 12.4 judges the topic's lines)."""
    found = []
    for record in read_topic(topic):
        try:
            value = json.loads(record.value)
        except (TypeError, ValueError):
            continue
        if isinstance(value, Mapping) and {"tx_id", "amount", "store", "category"} <= set(value):
            found.append(dict(value))
    return found


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.is_file() else []


@exercise("12.3", points=3, title=N_("Alerts out through the sink connector"))
def alerts_file(written, *, file):
    """written: the lines read back from the sink's file; file: that file (ALERTS_FILE).
    The alerts topic and the transactions topic are read from the broker."""
    expect(
        isinstance(written, list | tuple) and all(isinstance(line, str) for line in written),
        _(
            "hand in the lines of the alerts file, a list of str: ALERTS_FILE.read_text().splitlines()"
        ),
    )
    path = Path(file)
    wanted = [
        alert_line(tx)
        for tx in _transactions(full_topic(TRANSACTIONS))
        if float(tx["amount"]) > LARGE
    ]
    on_topic = [
        r.value.decode("utf-8", "replace") if r.value is not None else ""
        for r in read_topic(full_topic(ALERTS))
    ]
    got = Counter(on_topic)
    extra = [line for line in on_topic if line not in wanted]
    expect(
        not extra,
        _(
            "the alerts topic holds {line!r}, which is not the alert line of a transaction over {large} PLN: send alert_line(tx) for each transaction with amount > {large}"
        ).format(line=extra[0][:80] if extra else "", large=LARGE),
    )
    missing = [line for line in wanted if line not in got]
    expect(
        not missing,
        _(
            "{counted} missing from the alerts topic, e.g. {line!r}: send one per transaction over {large} PLN (and flush())"
        ).format(
            counted=counted(len(missing), "alert", "alerts"),
            line=missing[0] if missing else "",
            large=LARGE,
        ),
    )
    twice = [line for line, n in got.items() if n > 1]
    expect(
        not twice,
        _(
            "{line!r} is in the alerts topic {n} times: send each alert once (run the notebook from the top to start with empty topics)"
        ).format(line=twice[0] if twice else "", n=got[twice[0]] if twice else 0),
    )
    expect(
        path.is_file(),
        _(
            "there is no file {file}: the sink connector writes it once it runs (section 5 starts the worker); is the worker running?"
        ).format(file=str(path)),
    )
    in_file = _lines(path)
    expect(
        len(in_file) >= len(on_topic),
        _(
            "the sink has written {n} of the topic's {m} alerts so far: wait a second and read the file again (the sink polls the topic); if nothing changes, is the worker running?"
        ).format(n=len(in_file), m=len(on_topic)),
    )
    expect(
        in_file == on_topic,
        _(
            "the alerts file is not the alerts topic line for line: the sink writes each record once, in the topic's order; something else wrote to {file}"
        ).format(file=str(path)),
    )
    expect(
        list(written) == in_file,
        _(
            "the lines you hand in are not the file's ({n} lines, the file has {m}): read them back from ALERTS_FILE after the sink has written every alert"
        ).format(n=len(written), m=len(in_file)),
    )


@exercise("12.4", points=3, title=N_("A restarted worker goes on where it stopped"))
def no_resend(records, *, file, first):
    """records: the ConsumerRecords read back from the transactions topic; file: the
    source's file (TX_FILE); first: how many lines it had when the worker first ran."""
    topic = full_topic(TRANSACTIONS)
    verify_records(records, topic=topic)
    lines = _lines(Path(file))
    expect(
        len(lines) > first,
        _(
            "{file} still has only its first {first} lines: append the new transactions (more) to it, one JSON line each, then start the worker again"
        ).format(file=str(file), first=first),
    )
    on_topic = [
        r.value.decode("utf-8", "replace") if r.value is not None else "" for r in read_topic(topic)
    ]
    handed_in = {(r.partition, r.offset) for r in records}
    expect(
        len(handed_in) == len(on_topic),
        _(
            "you read {counted}, the topic holds {n}: read it again from the beginning to the end once the worker has sent the new lines"
        ).format(counted=counted(len(handed_in), "record", "records"), n=len(on_topic)),
    )
    seen = Counter(on_topic)
    twice = [line for line in lines if seen[line] > 1]
    if twice:
        raise Wrong(
            _(
                "line {number} of the file is in the topic {n} times: the worker restarted without its offsets and read the file from the top; start it on the same WORK_DIR, where connect.offsets keeps them (run the notebook from the top to start clean)"
            ).format(number=lines.index(twice[0]) + 1, n=seen[twice[0]])
        )
    in_file = set(lines)
    pieces = [value for value in on_topic if value not in in_file]
    expect(
        not pieces,
        _(
            "the topic holds {value!r}, not a line of the file: the restarted source began mid-line (it counts characters, skips bytes). Write json.dumps(tx), without ensure_ascii=False (run the notebook from the top to start clean)"
        ).format(value=pieces[0][:30] if pieces else ""),
    )
    missing = [line for line in lines if line not in seen]
    expect(
        not missing,
        _(
            "the topic holds {n} of the file's {m} lines: is the worker running again (ConnectWorker(...).start())? It reads new lines within a second; then read the topic again"
        ).format(n=len(on_topic), m=len(lines)),
    )
    expect(
        on_topic == lines,
        _(
            "the topic is not the file line for line: only the source connector should write to TRANSACTIONS (run the notebook from the top to start clean)"
        ),
    )
