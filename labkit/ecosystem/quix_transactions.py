"""Stream processing with a real library: quixstreams apps on the course's transactions.

    python -m labkit.ecosystem.quix_transactions store-counts --bootstrap-server localhost:9092
    python -m labkit.ecosystem.quix_transactions homework --bootstrap-server localhost:9092

Both read JSON transactions (``tx_id``, ``user_id``, ``amount``, ``store``, ISO
``timestamp``) and use the transaction's own time (event time), not arrival time.

``store-counts``: transactions re-keyed by store (``group_by``: quixstreams writes them
to a repartition topic), counted in tumbling windows of 10 s with 5 s of grace; a window
is written to ``store-counts`` once (``final()``) when the stream's time (the newest
event time in the partition) passes its end plus the grace. An event later than that is
dropped (quixstreams logs it).

``homework`` (the course's): re-keyed by user, a sliding window of 60 s counts each
user's transactions; when a user has more than 3 in 60 s, an alert goes to
``user-alerts``.

The window counts are state: kept in a RocksDB store under ``state_dir`` and written to
a compacted changelog topic, so an app restarted with its local state gone gets it back
from the changelog and goes on counting.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from typing import Any

TUMBLING_MS = 10_000
GRACE_MS = 5_000
HOMEWORK_WINDOW_MS = 60_000
HOMEWORK_LIMIT = 3


def event_time_ms(value: Any, headers: Any, timestamp: float, timestamp_type: int) -> int:
    """A transaction's ``timestamp`` (ISO, UTC if it names no zone) in epoch ms."""
    moment = datetime.fromisoformat(value["timestamp"])
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _clock(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


def _key(key: Any) -> str:
    return key.decode() if isinstance(key, bytes) else str(key)


def store_counts(app, topic: str = "transactions", out: str = "store-counts"):
    """Count per store in tumbling event-time windows, each final count once."""
    source = app.topic(topic, value_deserializer="json", timestamp_extractor=event_time_ms)
    sdf = app.dataframe(source).group_by("store", name="by-store")
    windows = sdf.tumbling_window(duration_ms=TUMBLING_MS, grace_ms=GRACE_MS).count()
    # "partition": a window closes when the partition's time passes it, as Spark's
    # watermark does (the default closes a store's window on that store's next event).
    sdf = windows.final(closing_strategy="partition")
    sdf = sdf.apply(
        lambda window, key, timestamp, headers: {
            "store": _key(key),
            "start": _clock(window["start"]),
            "end": _clock(window["end"]),
            "count": window["value"],
        },
        metadata=True,
    )
    return sdf.to_topic(app.topic(out, value_serializer="json"))


def homework(app, topic: str = "transactions", out: str = "user-alerts"):
    """Alert when one user makes more than 3 transactions in 60 s (sliding window)."""
    source = app.topic(topic, value_deserializer="json", timestamp_extractor=event_time_ms)
    sdf = app.dataframe(source).group_by("user_id", name="by-user")
    sdf = sdf.sliding_window(duration_ms=HOMEWORK_WINDOW_MS, grace_ms=GRACE_MS).count().current()
    sdf = sdf.filter(lambda window: window["value"] > HOMEWORK_LIMIT)
    sdf = sdf.apply(
        lambda window, key, timestamp, headers: {
            "user_id": _key(key),
            "count": window["value"],
            "start": _clock(window["start"]),
            "end": _clock(window["end"]),
            "alert": f"ALERT: {_key(key)} made {window['value']} transactions in 60 s",
        },
        metadata=True,
    )
    return sdf.to_topic(app.topic(out, value_serializer="json"))


APPS = {"store-counts": store_counts, "homework": homework}


def application(bootstrap: str, group: str, state_dir: str, **extra):
    from quixstreams import Application

    return Application(
        broker_address=bootstrap,
        consumer_group=group,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel=extra.pop("loglevel", "WARNING"),
        **extra,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labkit.ecosystem.quix_transactions", description=__doc__.split("\n")[0]
    )
    parser.add_argument("app", choices=sorted(APPS))
    parser.add_argument("--bootstrap-server", default="localhost:9092")
    parser.add_argument("--topic", default="transactions")
    parser.add_argument("--state-dir", default="quix-state")
    args = parser.parse_args(argv)
    app = application(args.bootstrap_server, f"quix-{args.app}", args.state_dir)
    APPS[args.app](app, args.topic).print(metadata=False)
    app.run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
