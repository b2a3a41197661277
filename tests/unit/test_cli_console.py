"""Console producer/consumer: argument rules, line parsing, Kafka's output format."""

import argparse
import io
import os
import sys
from collections import namedtuple

import pytest

from labkit.cli import console_consumer as cc
from labkit.cli import console_producer as cp
from labkit.cli._common import UsageError, bootstrap_servers, client_kwargs, parse_key_values
from labkit.testing import FakeClock

# kafka-python's ConsumerRecord fields; format_record only reads attributes.
Record = namedtuple(
    "Record",
    [
        "topic",
        "partition",
        "leader_epoch",
        "offset",
        "timestamp",
        "timestamp_type",
        "key",
        "value",
        "headers",
        "checksum",
        "serialized_key_size",
        "serialized_value_size",
        "serialized_header_size",
    ],
)


def record(
    value=b"45",
    key=b"jan",
    partition=0,
    offset=5,
    timestamp=1700000000000,
    timestamp_type=0,
    headers=(),
):
    return Record(
        "rta",
        partition,
        -1,
        offset,
        timestamp,
        timestamp_type,
        key,
        value,
        list(headers),
        None,
        -1,
        -1,
        -1,
    )


def parse(module, argv):
    parser = argparse.ArgumentParser(prog="test")
    module.add_arguments(parser)
    return parser.parse_args(argv)


# -- shared helpers --------------------------------------------------------------


def test_bootstrap_default_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("LABKIT_BOOTSTRAP", raising=False)
    assert bootstrap_servers(None) == ["localhost:9092"]
    monkeypatch.setenv("LABKIT_BOOTSTRAP", "broker:9092")
    assert bootstrap_servers(None) == ["broker:9092"]
    assert bootstrap_servers("a:1, b:2") == ["a:1", "b:2"]


def test_key_values_keep_equals_signs_in_values_and_reject_garbage():
    assert parse_key_values(["a=1", "b=x=y", "a=2"], "--property") == {"a": "2", "b": "x=y"}
    with pytest.raises(UsageError, match="key=value"):
        parse_key_values(["print.key"], "--property")


def test_client_kwargs_translate_kafka_names_and_types():
    kwargs = client_kwargs(
        {
            "acks": "all",
            "linger.ms": "5",
            "enable.auto.commit": "false",
            "client.id": "123",
            "retries": "-1",
        },
        "--producer-property",
    )
    assert kwargs == {
        "acks": "all",
        "linger_ms": 5,
        "enable_auto_commit": False,
        "client_id": "123",
        "retries": -1,
    }
    assert client_kwargs({"acks": "-1"}, "x") == {"acks": "all"}
    assert client_kwargs({"acks": "0"}, "x") == {"acks": 0}
    with pytest.raises(UsageError, match="acks"):
        client_kwargs({"acks": "2"}, "x")


# -- console-consumer: formatting -------------------------------------------------


def test_default_format_is_just_the_value():
    opts, unknown = cc.format_options({})
    assert unknown == []
    assert cc.format_record(record(), opts) == "45\n"


def test_all_fields_in_kafkas_order_with_tab_separators():
    opts, _ = cc.format_options(
        {
            "print.timestamp": "true",
            "print.partition": "true",
            "print.offset": "true",
            "print.key": "true",
        }
    )
    assert (
        cc.format_record(record(), opts)
        == "CreateTime:1700000000000\tPartition:0\tOffset:5\tjan\t45\n"
    )


def test_key_separator_applies_between_every_field():
    opts, _ = cc.format_options({"print.key": "true", "print.offset": "TRUE", "key.separator": ":"})
    assert cc.format_record(record(), opts) == "Offset:5:jan:45\n"


def test_without_the_value_the_last_field_ends_the_line():
    opts, _ = cc.format_options({"print.key": "true", "print.value": "false"})
    assert cc.format_record(record(), opts) == "jan\n"


def test_null_key_and_value_print_as_null():
    opts, _ = cc.format_options({"print.key": "true"})
    assert cc.format_record(record(key=None, value=None), opts) == "null\tnull\n"
    opts, _ = cc.format_options({"print.key": "true", "null.literal": "<none>"})
    assert cc.format_record(record(key=None), opts) == "<none>\t45\n"


def test_invalid_utf8_is_replaced_not_fatal():
    opts, _ = cc.format_options({})
    assert cc.format_record(record(value=b"ok \xff\xfe end"), opts) == "ok \ufffd\ufffd end\n"
    assert cc.format_record(record(value="zażółć".encode()), opts) == "zażółć\n"


def test_timestamp_types_and_missing_timestamp():
    opts, _ = cc.format_options({"print.timestamp": "true", "print.value": "false"})
    assert cc.format_record(record(timestamp_type=1, timestamp=7), opts) == "LogAppendTime:7\n"
    assert cc.format_record(record(timestamp=-1), opts) == "NO_TIMESTAMP\n"


def test_headers_like_kafka():
    opts, _ = cc.format_options({"print.headers": "true"})
    assert cc.format_record(record(), opts) == "NO_HEADERS\t45\n"
    rec = record(headers=[("source", b"web"), ("trace", None)])
    assert cc.format_record(rec, opts) == "source:web,trace:null\t45\n"


def test_unknown_properties_are_reported_and_deserializers_ignored():
    _, unknown = cc.format_options(
        {
            "print.keys": "true",
            "value.deserializer": "org.apache.kafka.common.serialization.StringDeserializer",
        }
    )
    assert unknown == ["print.keys"]


def test_processed_line_matches_kafka():
    assert cc.processed_line(1) == "Processed a total of 1 messages"


# -- console-consumer: options ------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--topic is required"),
        (["--topic", "rta", "--offset", "3"], "partition is required"),
        (
            ["--topic", "rta", "--partition", "0", "--offset", "3", "--from-beginning"],
            "from-beginning and offset",
        ),
        (["--topic", "rta", "--partition", "0", "--group", "g"], "group and partition"),
        (["--topic", "rta", "--max-messages", "-2"], "--max-messages"),
        (["--topic", "rta", "--include", "r.*"], "not both"),
    ],
)
def test_consumer_option_rules(argv, message):
    with pytest.raises(UsageError, match=message):
        cc.validate(parse(cc, argv))


def test_offset_parsing():
    assert cc.parse_offset(None, False) == cc.StartPosition("latest")
    assert cc.parse_offset(None, True) == cc.StartPosition("earliest")
    assert cc.parse_offset("Earliest", False) == cc.StartPosition("earliest")
    assert cc.parse_offset("12", False) == cc.StartPosition("offset", 12)
    for bad in ("-1", "first", "1.5"):
        with pytest.raises(UsageError):
            cc.parse_offset(bad, False)


def test_consumer_config_without_group_is_a_throwaway_reader(monkeypatch):
    monkeypatch.delenv("LABKIT_BOOTSTRAP", raising=False)
    config = cc.consumer_config(parse(cc, ["--topic", "rta", "--from-beginning"]))
    assert config["group_id"] is None
    assert config["enable_auto_commit"] is False
    assert config["auto_offset_reset"] == "earliest"
    assert config["bootstrap_servers"] == ["localhost:9092"]


def test_consumer_config_with_group_and_properties():
    args = parse(
        cc,
        [
            "--topic",
            "rta",
            "--group",
            "g1",
            "--bootstrap-server",
            "h:1",
            "--consumer-property",
            "fetch.max.wait.ms=100",
        ],
    )
    config = cc.consumer_config(args)
    assert config["group_id"] == "g1"
    assert config["enable_auto_commit"] is True
    assert config["auto_offset_reset"] == "latest"
    assert config["fetch_max_wait_ms"] == 100
    assert config["bootstrap_servers"] == ["h:1"]
    with pytest.raises(UsageError, match="do not match"):
        cc.consumer_config(
            parse(cc, ["--topic", "rta", "--group", "a", "--consumer-property", "group.id=b"])
        )
    with pytest.raises(UsageError, match="from-beginning"):
        cc.consumer_config(
            parse(
                cc,
                [
                    "--topic",
                    "rta",
                    "--from-beginning",
                    "--consumer-property",
                    "auto.offset.reset=latest",
                ],
            )
        )


def test_consumer_config_file(tmp_path):
    path = tmp_path / "consumer.properties"
    path.write_text("# comment\ngroup.id=from-file\nmax.poll.records = 10\n", encoding="utf-8")
    config = cc.consumer_config(parse(cc, ["--topic", "rta", "--consumer.config", str(path)]))
    assert config["group_id"] == "from-file"
    assert config["max_poll_records"] == 10


class TimedPolls:
    """Returns the given poll results in turn, advancing a FakeClock by each poll's wait."""

    def __init__(self, clock, results):
        self.clock, self.results, self.waits = clock, list(results), []

    def poll(self, timeout_ms, max_records=None):
        self.waits.append((timeout_ms, max_records))
        if self.results:
            result = self.results.pop(0)
            if result:
                return result
        self.clock.advance(timeout_ms / 1000)
        return {}


def test_consume_stops_at_max_messages_mid_batch():
    clock = FakeClock()
    polls = TimedPolls(clock, [{("rta", 0): [record(offset=i) for i in range(5)]}])
    out, progress = io.StringIO(), cc.Progress()
    opts, _ = cc.format_options({"print.offset": "true", "print.value": "false"})
    cc.consume(polls, out, opts, progress, max_messages=3, clock=clock)
    assert out.getvalue() == "Offset:0\nOffset:1\nOffset:2\n"
    assert progress.count == 3
    assert not progress.timed_out
    assert polls.waits[0][1] == 3


def test_consume_times_out_after_silence_counted_from_the_last_record():
    clock = FakeClock()
    polls = TimedPolls(clock, [{}, {("rta", 0): [record()]}])
    out, progress = io.StringIO(), cc.Progress()
    cc.consume(
        polls, out, cc.format_options({})[0], progress, timeout_ms=1000, clock=clock, poll_ms=300
    )
    assert progress.timed_out
    assert progress.count == 1
    # 300 ms of silence, then a record; then the full 1000 ms of silence again.
    assert sum(wait for wait, _ in polls.waits[2:]) == 1000


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes")
def test_reader_gone_sees_a_closed_pipe():
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as stream:
        assert not cc.reader_gone(stream)
        os.close(read_end)
        assert cc.reader_gone(stream)
    assert not cc.reader_gone(io.StringIO())


# -- console-producer ---------------------------------------------------------------


def test_lines_without_parse_key_are_values():
    opts, _ = cp.reader_options({})
    assert cp.parse_line(b"jan:45", 1, opts) == (None, b"jan:45")


def test_parse_key_splits_at_the_first_separator():
    opts, _ = cp.reader_options({"parse.key": "true", "key.separator": ":"})
    assert cp.parse_line(b"jan:45", 1, opts) == (b"jan", b"45")
    assert cp.parse_line(b"k:a:b", 1, opts) == (b"k", b"a:b")
    assert cp.parse_line(b":45", 1, opts) == (b"", b"45")


def test_missing_separator_is_a_clear_error_naming_the_line():
    opts, _ = cp.reader_options({"parse.key": "true", "key.separator": ":"})
    with pytest.raises(cp.LineError) as info:
        cp.parse_line(b"jan 45", 3, opts)
    message = str(info.value)
    assert "No key separator found on line number 3: 'jan 45'" in message
    assert "jan:45" in message


def test_ignore_error_sends_the_whole_line_and_null_marker_makes_nulls():
    opts, _ = cp.reader_options(
        {"parse.key": "true", "key.separator": ":", "ignore.error": "true", "null.marker": "NULL"}
    )
    assert cp.parse_line(b"no separator", 1, opts) == (None, b"no separator")
    assert cp.parse_line(b"jan:NULL", 1, opts) == (b"jan", None)


def test_default_key_separator_is_tab_and_empty_is_rejected():
    opts, unknown = cp.reader_options({"parse.key": "true", "parse.headers": "true"})
    assert cp.parse_line(b"a\tb", 1, opts) == (b"a", b"b")
    assert unknown == ["parse.headers"]
    with pytest.raises(UsageError):
        cp.reader_options({"key.separator": ""})


def test_newlines_stripped_like_java_readline():
    assert cp.strip_newline(b"abc\r\n") == b"abc"
    assert cp.strip_newline(b"abc\n") == b"abc"
    assert cp.strip_newline(b"abc") == b"abc"
    assert cp.strip_newline(b"a\rb\n") == b"a\rb"


def test_producer_config_maps_flags_to_kafka_python_names():
    args = parse(
        cp,
        [
            "--topic",
            "rta",
            "--broker-list",
            "h:9",
            "--request-required-acks",
            "-1",
            "--timeout",
            "50",
            "--producer-property",
            "batch.size=1000",
            "--producer-property",
            "acks=1",
        ],
    )
    config = cp.producer_config(args)
    assert config["bootstrap_servers"] == ["h:9"]
    assert config["linger_ms"] == 50
    assert config["batch_size"] == 1000
    assert config["acks"] == 1, "--producer-property wins, as in Kafka"
    assert (
        cp.producer_config(parse(cp, ["--topic", "rta", "--request-required-acks", "all"]))["acks"]
        == "all"
    )


class RecordingProducer:
    """Collects what produce_lines sends (the real producer is tested end to end)."""

    class Future:
        def add_errback(self, fn):
            return self

        def get(self, timeout=None):
            return None

    def __init__(self):
        self.sent = []

    def send(self, topic, value=None, key=None):
        self.sent.append((topic, key, value))
        return self.Future()


def test_produce_lines_keeps_going_after_a_bad_line_and_prompts_only_when_asked():
    producer, err, prompt = RecordingProducer(), io.StringIO(), io.StringIO()
    opts, _ = cp.reader_options({"parse.key": "true", "key.separator": ":"})
    delivery = cp.Delivery("rta", err)
    stdin = io.BytesIO(b"jan:45\r\nbroken\nfeb:50")
    cp.produce_lines(producer, "rta", stdin, opts, delivery, prompt=prompt)
    assert producer.sent == [("rta", b"jan", b"45"), ("rta", b"feb", b"50")]
    assert delivery.sent == 2
    assert delivery.rejected == 1
    assert "line number 2: 'broken'" in err.getvalue()
    assert prompt.getvalue() == ">>>>\n"


def test_a_rejected_client_setting_names_the_flag():
    from labkit import KafkaProducer
    from labkit.cli._common import build_client
    from labkit.errors import KafkaConfigurationError

    with pytest.raises(KafkaConfigurationError, match=r"foo_bar.*--producer-property"):
        build_client(
            KafkaProducer,
            {"bootstrap_servers": ["127.0.0.1:1"], "foo_bar": 1},
            "--producer-property",
        )
