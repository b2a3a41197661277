"""labkit's admin client on a Kafka broker that is not labkit, without sockets
(client/delegate_admin.py over a stand-in for kafka-python's ``KafkaAdminClient``): the
group calls wait out a fresh cluster's retriable COORDINATOR_NOT_AVAILABLE, raised or
answered per group (NOT_COORDINATOR while ``__consumer_offsets`` loads), and give up on
anything else at once; ``create_topics`` returns once the metadata lists the topics it
created, as labkit's broker answers."""

from __future__ import annotations

import kafka
import pytest

import labkit
from labkit.client import delegate_admin
from labkit.testing import FakeClock


class StandInAdmin:
    """kafka-python's KafkaAdminClient as far as these tests reach: scripted answers."""

    DEFAULT_CONFIG = kafka.KafkaAdminClient.DEFAULT_CONFIG

    def __init__(self, **configs):
        self.config = {**self.DEFAULT_CONFIG, **configs}
        self.group_answers: list = []  # list_groups(): errors to raise, then an answer
        self.created: dict = {"topics": []}
        self.calls: list = []

    def list_groups(self, broker_ids=None):
        self.calls.append("list_groups")
        answer = self.group_answers.pop(0) if len(self.group_answers) > 1 else self.group_answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    def describe_groups(self, group_ids):
        self.calls.append(("describe_groups", list(group_ids)))
        return self.group_answers.pop(0)

    def delete_groups(self, group_ids):
        self.calls.append(("delete_groups", list(group_ids)))
        return self.group_answers.pop(0)

    def create_topics(self, new_topics, timeout_ms=None, validate_only=False, raise_errors=True):
        self.calls.append(("create_topics", [t.name for t in new_topics], validate_only))
        return self.created

    def wait_for_topics(self, topic_names, timeout_ms=10000):
        self.calls.append(("wait_for_topics", list(topic_names), timeout_ms))


@pytest.fixture
def admin(monkeypatch):
    """A DelegatingAdmin over StandInAdmin whose retries pass on a FakeClock at once."""
    monkeypatch.setattr(kafka, "KafkaAdminClient", StandInAdmin)
    made = delegate_admin.DelegatingAdmin(
        labkit.KafkaAdminClient, bootstrap_servers="k1:9092", request_timeout_ms=15_000
    )
    clock = FakeClock()
    made._clock, made._sleep = clock, clock.advance
    return made


def not_available():
    return kafka.errors.CoordinatorNotAvailableError("the offsets topic does not exist yet")


def test_a_retriable_error_is_tried_again_until_the_call_answers(admin):
    admin._inner.group_answers = [not_available(), not_available(), [{"group_id": "g"}]]
    assert admin.list_consumer_groups() == [("g", "consumer")]
    assert admin._inner.calls == ["list_groups"] * 3


def test_another_error_is_raised_at_once(admin):
    admin._inner.group_answers = [kafka.errors.GroupAuthorizationFailedError("no"), []]
    with pytest.raises(labkit.errors.GroupAuthorizationFailedError):
        admin.list_consumer_groups()
    assert admin._inner.calls == ["list_groups"]


def test_a_retriable_error_that_lasts_is_raised_after_request_timeout_ms(admin):
    admin._inner.group_answers = [not_available()]
    started = admin._clock.monotonic()
    with pytest.raises(labkit.errors.CoordinatorNotAvailableError):
        admin.list_consumer_groups()
    waited = admin._clock.monotonic() - started
    assert 15.0 <= waited < 15.0 + 2 * delegate_admin.RETRY_BACKOFF_S
    assert len(admin._inner.calls) == round(15.0 / delegate_admin.RETRY_BACKOFF_S) + 1


def test_create_topics_waits_until_the_metadata_lists_the_topics_it_created(admin):
    admin._inner.created = {
        "topics": [
            {"name": "fresh", "error_code": 0, "error_message": None},
            {"name": "old", "error_code": 36, "error_message": "Topic 'old' already exists."},
        ]
    }
    answer = admin.create_topics([labkit.NewTopic("fresh", 1, 1), "old"], raise_errors=False)
    assert [t["name"] for t in answer["topics"]] == ["fresh", "old"]
    assert admin._inner.calls == [
        ("create_topics", ["fresh", "old"], False),
        ("wait_for_topics", ["fresh"], 15_000),  # not "old": it was there already
    ]


def test_create_topics_validate_only_waits_for_nothing(admin):
    admin._inner.created = {"topics": [{"name": "t", "error_code": 0, "error_message": None}]}
    admin.create_topics([labkit.NewTopic("t", 1, 1)], validate_only=True)
    assert admin._inner.calls == [("create_topics", ["t"], True)]


NOT_COORDINATOR = "[Error 16] NotCoordinatorError: None"  # kafka-python's per-group answer


def test_describe_waits_out_a_group_answered_not_coordinator(admin):
    """Apache Kafka 4.1.1, fresh: FindCoordinator fails for ~0.3 s, then DescribeGroups
    answers NOT_COORDINATOR for the group for ~0.6 s, then GROUP_ID_NOT_FOUND ("Dead")."""
    not_found = "[Error 69] GroupIdNotFoundError: Group g not found."
    admin._inner.group_answers = [
        {"g": {"error": NOT_COORDINATOR, "group_state": ""}},
        {"g": {"error": not_found, "group_state": "Dead"}},
    ]
    with pytest.raises(labkit.errors.GroupIdNotFoundError):
        admin.describe_consumer_groups(["g"])
    assert admin._inner.calls == [("describe_groups", ["g"])] * 2


def test_delete_tries_again_only_the_groups_answered_not_coordinator(admin):
    admin._inner.group_answers = [
        {"a": "OK", "b": NOT_COORDINATOR},
        {"b": "OK"},
    ]
    assert admin.delete_consumer_groups(["a", "b"]) == [
        ("a", labkit.errors.NoError),
        ("b", labkit.errors.NoError),
    ]
    assert admin._inner.calls == [("delete_groups", ["a", "b"]), ("delete_groups", ["b"])]
