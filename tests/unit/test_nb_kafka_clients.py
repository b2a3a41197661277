"""labkit.nb on a Kafka cluster that is not labkit, without sockets: the admin layer's group
calls wait out a fresh cluster's retriable COORDINATOR_NOT_AVAILABLE and give up on anything
else at once; a missing or too old kafka-python gets a sentence that says what to install."""

import pytest

from labkit.nb import _kafka_admin


class Retriable(Exception):
    retriable = True


class Fatal(Exception):
    retriable = False


def test_a_retriable_error_is_tried_again_until_the_call_answers(monkeypatch):
    monkeypatch.setattr(_kafka_admin, "_RETRY_EVERY_S", 0.0)
    answers = iter([Retriable("coordinator not available"), Retriable("again"), "groups"])

    def call():
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert _kafka_admin._retrying(call) == "groups"


def test_another_error_is_raised_at_once(monkeypatch):
    monkeypatch.setattr(_kafka_admin, "_RETRY_EVERY_S", 0.0)
    calls = []

    def call():
        calls.append(1)
        raise Fatal("group not empty")

    with pytest.raises(Fatal):
        _kafka_admin._retrying(call)
    assert len(calls) == 1


def test_a_retriable_error_that_lasts_is_raised_after_the_deadline(monkeypatch):
    monkeypatch.setattr(_kafka_admin, "_RETRY_EVERY_S", 0.0)
    monkeypatch.setattr(_kafka_admin, "GROUP_RETRY_S", 0.05)

    def call():
        raise Retriable("still not available")

    with pytest.raises(Retriable):
        _kafka_admin._retrying(call)


def test_a_kafka_cluster_without_kafka_python_says_what_to_install(monkeypatch):
    import sys
    import types

    from labkit.nb import _connect

    monkeypatch.setattr(_connect, "is_labkit_broker", lambda servers=None: False)
    monkeypatch.setitem(sys.modules, "kafka", None)  # not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'kafka-python>=3'"):
        _connect.consumer_class("kafka1.example.edu:9092")
    old = types.ModuleType("kafka")
    old.__version__ = "2.0.2"
    monkeypatch.setitem(sys.modules, "kafka", old)
    with pytest.raises(ImportError, match=r"kafka-python 3\.0 or newer.*2\.0\.2"):
        _connect.admin_class("kafka1.example.edu:9092")
