"""quixstreams 3.28.1 (confluent-kafka / librdkafka underneath) against each target: a
count per store in tumbling event-time windows with a late event, and the course's
homework in a sliding window, both with their state restored from the changelog topic
after a restart with the local state deleted."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("kafka_python_garbage"),
    # quixstreams imports authlib's httpx client, which warns about itself on import
    pytest.mark.filterwarnings("ignore:The httpx module is deprecated"),
]

# librdkafka's producer (idempotent in quixstreams' default config), the consumer group,
# and the admin calls quixstreams makes for its repartition and changelog topics.
QUIX_APIS = [0, 1, 2, 3, 8, 9, 10, 11, 12, 13, 14, 19, 22, 32]

T0 = datetime(2026, 1, 1, 10, 0, 0)
# (seconds after T0, user, store); the app stops and loses its local state in between.
BEFORE_RESTART = [
    (1, "u01", "Warszawa"), (2, "u02", "Kraków"), (4, "u01", "Warszawa"),
    (8, "u02", "Warszawa"), (12, "u01", "Kraków"), (3, "u03", "Warszawa"),
    (14, "u02", "Gdańsk"),
]  # fmt: skip
AFTER_RESTART = [
    (30, "u01", "Warszawa"), (31, "u02", "Warszawa"),
    (9, "u03", "Warszawa"),  # late: 22 s behind the newest event, the grace is 5 s
    (45, "u03", "Kraków"), (70, "u01", "Gdańsk"),
]  # fmt: skip

# Windows close when the newest event time passes end + 5 s: none before the restart
# (newest 10:00:14); after it, every window up to 10:00:50. Warszawa's first window has
# its 4 events from before the restart (restored state) and not the late one.
EXPECTED_COUNTS = [
    {"store": "Warszawa", "start": "10:00:00", "end": "10:00:10", "count": 4},
    {"store": "Kraków", "start": "10:00:00", "end": "10:00:10", "count": 1},
    {"store": "Kraków", "start": "10:00:10", "end": "10:00:20", "count": 1},
    {"store": "Gdańsk", "start": "10:00:10", "end": "10:00:20", "count": 1},
    {"store": "Warszawa", "start": "10:00:30", "end": "10:00:40", "count": 2},
    {"store": "Kraków", "start": "10:00:40", "end": "10:00:50", "count": 1},
]
# u01 (1, 4, 12, 30 s) and u02 (2, 8, 14, 31 s) reach 4 in 60 s only with the 3 counted
# before the restart; u03 never has more than 3.
EXPECTED_ALERTS = {("u01", 4), ("u02", 4)}


def send(bootstrap: str, topic: str, rows, first_id: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for i, (seconds, user, store) in enumerate(rows, start=first_id):
            tx = {
                "tx_id": f"TX{i:04d}",
                "user_id": user,
                "amount": 100.0,
                "store": store,
                "timestamp": (T0 + timedelta(seconds=seconds)).isoformat(),
            }
            producer.send(topic, json.dumps(tx).encode())
        producer.flush()
    finally:
        producer.close()


def run_app(kind: str, bootstrap: str, group: str, state_dir, topic: str, out: str) -> list:
    from labkit.ecosystem import quix_transactions

    app = quix_transactions.application(bootstrap, group, str(state_dir))
    quix_transactions.APPS[kind](app, topic, out)
    # Stops once no record has come for 8 s after the group's rebalance and recovery.
    return app.run(timeout=8)


@pytest.mark.parametrize("kind", ["store-counts", "homework"])
def test_windows_and_state_survive_a_restart(kafka_target, tmp_path, kind):
    kafka_target.require("quixstreams (librdkafka)", QUIX_APIS)
    bootstrap = kafka_target.bootstrap
    topic, out, group = f"quix-{kind}-tx", f"quix-{kind}-out", f"quix-{kind}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        admin.close()
    state = tmp_path / "state"

    send(bootstrap, topic, BEFORE_RESTART, 0)
    before = run_app(kind, bootstrap, group, state, topic, out)
    shutil.rmtree(state)  # only the changelog topic can bring the counts back
    send(bootstrap, topic, AFTER_RESTART, len(BEFORE_RESTART))
    after = run_app(kind, bootstrap, group, state, topic, out)

    assert before == []
    if kind == "store-counts":
        order = ("start", "store")  # windows closed together come in no fixed order
        assert sorted(after, key=lambda w: [w[k] for k in order]) == sorted(
            EXPECTED_COUNTS, key=lambda w: [w[k] for k in order]
        )
    else:
        assert {(a["user_id"], a["count"]) for a in after} == EXPECTED_ALERTS
        assert all(a["alert"].startswith("ALERT: u0") for a in after)

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        changelogs = [t for t in admin.list_topics() if t.startswith(f"changelog__{group}--")]
        described = admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in changelogs]
        )
    finally:
        admin.close()
    assert len(changelogs) == 1, changelogs
    assert described["topic"][changelogs[0]]["cleanup.policy"]["value"] == "compact"
