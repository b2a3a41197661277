"""labkit.nb's admin layer over kafka-python: the group calls wait out a fresh cluster's
retriable COORDINATOR_NOT_AVAILABLE, and give up on anything else at once."""

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
