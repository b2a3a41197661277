"""A local SparkSession that reads and writes Kafka topics (Spark Structured Streaming).

pyspark comes from PyPI (the ``streams`` extra); Spark's Kafka source and sink
(``spark-sql-kafka-0-10``, the same Spark and Scala versions) and the jars it needs come
from Maven Central through ``make spark-kafka`` into ``.cache/spark-kafka/<version>/jars``.
``session()`` puts those jars on Spark's classpath, leaving out any that pyspark's own
``jars/`` folder already has in another version (two copies of one library on a
classpath are trouble), so a student never writes ``--packages`` or a classpath.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPARK_VERSION = "4.2.0"  # keep in step with pyproject's streams extra and the Makefile
JARS_ENV = "LABKIT_SPARK_KAFKA_JARS"

_VERSIONED_JAR = re.compile(r"^(?P<artifact>.+?)-\d[\w.\-]*\.jar$")


class SparkMissing(RuntimeError):
    """pyspark, Java or the connector's jars are missing; the message says what to run."""


def jars_dir() -> Path:
    return Path(
        os.environ.get(JARS_ENV) or ROOT / ".cache" / "spark-kafka" / SPARK_VERSION / "jars"
    )


def _artifact(jar: Path) -> str:
    match = _VERSIONED_JAR.match(jar.name)
    return match["artifact"] if match else jar.stem


def connector_jars() -> list[Path]:
    """The connector's jars that pyspark does not already ship, or ``SparkMissing``."""
    try:
        import pyspark
    except ImportError:
        raise SparkMissing(
            f"pyspark is not installed: `make streams` (or pip install pyspark=={SPARK_VERSION})"
        ) from None
    if pyspark.__version__ != SPARK_VERSION:
        raise SparkMissing(
            f"pyspark {pyspark.__version__} is installed but the Kafka connector in .cache is "
            f"for Spark {SPARK_VERSION}: pip install pyspark=={SPARK_VERSION}"
        )
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        raise SparkMissing("no `java` on PATH: Spark needs Java 17 or 21")
    return select_jars(jars_dir(), Path(pyspark.__file__).parent / "jars")


def select_jars(folder: Path, shipped_folder: Path) -> list[Path]:
    """The connector's jars in ``folder`` whose artifact is not in ``shipped_folder``."""
    jars = sorted(folder.glob("*.jar"))
    if not any(j.name.startswith("spark-sql-kafka-0-10") for j in jars):
        raise SparkMissing(
            f"Spark's Kafka connector is not in {folder}: run `make spark-kafka` "
            f"(downloads spark-sql-kafka-0-10_2.13 {SPARK_VERSION} from Maven Central, "
            "~11 MB, once)"
        )
    shipped = {_artifact(j) for j in shipped_folder.glob("*.jar")}
    return [j for j in jars if _artifact(j) not in shipped]


def session(app_name: str = "labkit", master: str = "local[2]", shuffle_partitions: int = 2):
    """A SparkSession with the Kafka connector; small defaults for one machine: two
    cores, ``shuffle_partitions`` (Spark's 200 would make 200 tasks per window batch),
    no web UI, WARN logs."""
    jars = connector_jars()
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.jars", ",".join(str(j) for j in jars))
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "1g")
        .config("spark.sql.session.timeZone", "UTC")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("WARN")
    return spark
