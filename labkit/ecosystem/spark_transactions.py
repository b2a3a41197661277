"""The course's Spark lab on a Kafka topic of card transactions.

    python -m labkit.ecosystem.spark_transactions --bootstrap-server localhost:9092

Two streaming queries over the topic ``transactions`` (JSON values: ``tx_id``,
``user_id``, ``amount``, ``store``, ``category``, ISO ``timestamp``):

1. windows: ``from_json`` on the value, ``withWatermark`` on the event time and a count
   and sum of ``amount`` per store in tumbling windows; each micro-batch's finished
   windows go to ``foreachBatch`` (printed, and appended to ``--out`` as JSON lines).
   Append mode: a window is written once, when the watermark (the newest event time
   seen minus the delay) passes its end; an event older than the watermark is dropped.
2. alerts: every transaction over 3000 PLN becomes ``ALERT: TX0042 | 3245.00 PLN |
   Warszawa | elektronika`` on the topic ``alerts`` (``writeStream.format("kafka")``).
   No state here, so a late transaction is still alerted.

With ``--available-now`` both queries read what the topic has and stop (Spark's
``Trigger.AvailableNow``; ``--max-per-batch`` splits it into micro-batches as a live
stream would arrive); without it they run every ``--every`` until Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

ALERT_OVER_PLN = 3000.0


def transactions(spark, bootstrap: str, topic: str, max_per_batch: int | None = None):
    """The topic as a streaming DataFrame of parsed transactions with ``event_time``."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    schema = StructType(
        [
            StructField("tx_id", StringType()),
            StructField("user_id", StringType()),
            StructField("amount", DoubleType()),
            StructField("store", StringType()),
            StructField("category", StringType()),
            StructField("timestamp", StringType()),
        ]
    )
    reader = (
        spark.readStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("subscribe", topic)
        .option("startingOffsets", "earliest")
    )
    if max_per_batch:
        reader = reader.option("maxOffsetsPerTrigger", str(max_per_batch))
    return (
        reader.load()
        .select(F.from_json(F.col("value").cast("string"), schema).alias("tx"))
        .select("tx.*")
        .withColumn("event_time", F.to_timestamp("timestamp"))
    )


def window_totals(parsed, window: str = "10 seconds", watermark: str = "5 seconds"):
    """Count and sum of ``amount`` per store and tumbling event-time window."""
    from pyspark.sql import functions as F

    return (
        parsed.withWatermark("event_time", watermark)
        .groupBy(F.window("event_time", window), "store")
        .agg(F.count("*").alias("count"), F.round(F.sum("amount"), 2).alias("total"))
        .select(
            F.date_format("window.start", "HH:mm:ss").alias("window_start"),
            F.date_format("window.end", "HH:mm:ss").alias("window_end"),
            "store",
            "count",
            "total",
        )
    )


def alerts(parsed):
    """Transactions over the limit as Kafka records: key = user, value = the alert line."""
    from pyspark.sql import functions as F

    line = F.format_string("ALERT: %s | %.2f PLN | %s | %s", "tx_id", "amount", "store", "category")
    return parsed.where(F.col("amount") > ALERT_OVER_PLN).select(
        F.col("user_id").alias("key"), line.alias("value")
    )


def start(
    spark,
    bootstrap: str,
    checkpoint_dir: Path | str,
    on_windows: Callable[[list[dict], int], None],
    *,
    topic: str = "transactions",
    alerts_topic: str = "alerts",
    available_now: bool = False,
    every: str = "5 seconds",
    max_per_batch: int | None = None,
    window: str = "10 seconds",
    watermark: str = "5 seconds",
):
    """Start both queries; returns them (``awaitTermination()`` / ``stop()`` each)."""
    checkpoints = Path(checkpoint_dir)
    parsed = transactions(spark, bootstrap, topic, max_per_batch)

    def each_batch(batch, batch_id: int) -> None:
        rows = [row.asDict() for row in batch.orderBy("window_start", "store").collect()]
        on_windows(rows, batch_id)

    def trigger(writer):
        return (
            writer.trigger(availableNow=True)
            if available_now
            else writer.trigger(processingTime=every)
        )

    windows_query = trigger(
        window_totals(parsed, window, watermark)
        .writeStream.outputMode("append")
        .foreachBatch(each_batch)
        .option("checkpointLocation", str(checkpoints / "windows"))
        .queryName("windows")
    ).start()
    alerts_query = trigger(
        alerts(parsed)
        .writeStream.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("topic", alerts_topic)
        .option("checkpointLocation", str(checkpoints / "alerts"))
        .queryName("alerts")
    ).start()
    return windows_query, alerts_query


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m labkit.ecosystem.spark_transactions", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--bootstrap-server", default="localhost:9092")
    parser.add_argument("--topic", default="transactions")
    parser.add_argument("--alerts-topic", default="alerts")
    parser.add_argument("--checkpoint-dir", default="spark-checkpoints")
    parser.add_argument("--out", default="window_totals.jsonl", help="finished windows, appended")
    parser.add_argument("--window", default="10 seconds")
    parser.add_argument("--watermark", default="5 seconds")
    parser.add_argument("--every", default="5 seconds", help="processing-time trigger")
    parser.add_argument("--available-now", action="store_true", help="read what is there, stop")
    parser.add_argument("--max-per-batch", type=int, default=None)
    args = parser.parse_args(argv)

    from labkit.ecosystem.spark import session

    out = Path(args.out)

    def print_windows(rows: list[dict], batch_id: int) -> None:
        with out.open("a", encoding="utf-8") as sink:
            for row in rows:
                print(f"batch {batch_id}: {row}")
                sink.write(json.dumps(row) + "\n")

    spark = session("labkit-spark-transactions")
    queries = start(
        spark,
        args.bootstrap_server,
        args.checkpoint_dir,
        print_windows,
        topic=args.topic,
        alerts_topic=args.alerts_topic,
        available_now=args.available_now,
        every=args.every,
        max_per_batch=args.max_per_batch,
        window=args.window,
        watermark=args.watermark,
    )
    try:
        for query in queries:
            query.awaitTermination()
    except KeyboardInterrupt:
        for query in queries:
            query.stop()
    finally:
        spark.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
