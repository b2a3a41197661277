"""Where Apache Kafka's jars are: labkit.testing's Apache Kafka runs on them, and so does
Kafka Connect's worker (labkit/ecosystem/connect.py: connect-runtime comes with Kafka).

The jars come from Maven Central through ``make apache-kafka`` (tools/apache-kafka/pom.xml)
into ``.cache/apache-kafka/<version>/libs`` -- git-ignored, never shipped.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VERSION = "4.1.1"  # keep in step with tools/apache-kafka/pom.xml
CACHE_ENV = "LABKIT_APACHE_KAFKA_LIBS"


class ApacheKafkaMissing(RuntimeError):
    """The jars are not downloaded (or Java is missing); the message says what to run."""


def libs_dir() -> Path:
    """Where the jars are: ``$LABKIT_APACHE_KAFKA_LIBS`` or the project's cache folder."""
    return Path(os.environ.get(CACHE_ENV) or ROOT / ".cache" / "apache-kafka" / VERSION / "libs")


def require() -> Path:
    """The jars' folder; raises ``ApacheKafkaMissing`` saying how to get them."""
    libs = libs_dir()
    if shutil.which("java") is None:
        raise ApacheKafkaMissing("no `java` on PATH: Apache Kafka needs Java 17+")
    if not any(libs.glob("kafka_2.13-*.jar")):
        raise ApacheKafkaMissing(
            f"Apache Kafka's jars are not in {libs}: run `make apache-kafka` "
            f"(downloads Kafka {VERSION} from Maven Central, ~55 MB, once)"
        )
    return libs
