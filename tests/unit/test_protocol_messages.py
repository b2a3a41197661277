"""labkit/protocol/messages.py: every API the envelope lists has a handler that answers it,
and the named rows are the same JSON arrays on the wire."""

from __future__ import annotations

import pytest

from labkit.broker.classic_api import handle_classic
from labkit.broker.config import BrokerConfig
from labkit.broker.group_api import GroupService
from labkit.broker.handlers import Handlers
from labkit.broker.quotas import ClientQuotas
from labkit.broker.topics import TopicRegistry
from labkit.errors import ProtocolError, UnknownTopicOrPartitionError, UnsupportedVersionError
from labkit.protocol import frames
from labkit.protocol.messages import (
    APIS,
    CLASSIC_GROUP_APIS,
    GROUP_APIS,
    QUOTA_APIS,
    TOPIC_APIS,
    CommittedOffset,
    DeletedRecords,
    committed_offsets,
    offset_fetch_request,
    rows,
)
from labkit.testing import FakeClock

# the smallest sensible request of each API (an unknown topic or group is fine: the
# point is that a handler answers, not that the request succeeds)
REQUESTS = {
    "api_versions": {},
    "metadata": {"topics": None},
    "produce": {"acks": 1, "targets": []},
    "fetch": {"max_wait_ms": 0, "partitions": [["t", 0, 0, 1024]]},
    "list_offsets": {"partitions": [["t", 0, -1]]},
    "create_topics": {"topics": [{"name": "t", "num_partitions": 1}], "validate_only": True},
    "delete_topics": {"topics": ["nope"]},
    "create_partitions": {"topics": {"nope": 2}},
    "describe_configs": {"topics": None},
    "alter_configs": {"topics": {"nope": {}}},
    "delete_records": {"partitions": [["nope", 0, -1]]},
    "init_producer_id": {"transactional_id": None},
    "offsets_for_leader_epoch": {"partitions": [["t", 0, -1, 0]]},
    "join_group": {"group_id": "g", "member_id": "", "topics": ["t"]},
    "heartbeat": {"group_id": "g", "member_id": "m", "generation": 1, "owned": []},
    "leave_group": {"group_id": "g", "member_id": "m"},
    "offset_commit": {"group_id": "g", "member_id": "", "generation": -1, "offsets": []},
    "offset_fetch": {"group_id": "g", "partitions": None},
    "list_groups": {},
    "describe_groups": {"group_ids": ["g"]},
    "delete_groups": {"group_ids": ["g"]},
    "offset_delete": {"group_id": "g", "partitions": [["t", 0]]},
    "find_coordinator": {"key": "g"},
    "classic_join": {
        "group_id": "g",
        "member_id": "",
        "session_timeout_ms": 10_000,
        "protocol_type": "consumer",
        "protocols": [["range", ""]],
    },
    "classic_sync": {"group_id": "g", "member_id": "m", "generation": 1, "assignments": []},
    "classic_heartbeat": {"group_id": "g", "member_id": "m", "generation": 1},
    "classic_leave": {"group_id": "g", "members": ["m"]},
    "describe_client_quotas": {"components": []},
    "alter_client_quotas": {"entries": []},
    "describe_client_throttles": {},
}


@pytest.fixture
def broker_parts(tmp_path):
    config = BrokerConfig.build(port=9092, data_dir=tmp_path, overrides={})
    clock = FakeClock()
    registry = TopicRegistry(config.data_dir, config.log_defaults, clock, 1).open()
    handlers = Handlers(registry, config, clock, GROUP_APIS | CLASSIC_GROUP_APIS | QUOTA_APIS)
    groups = GroupService(tmp_path, clock, lambda t: None, lambda t, p: None)
    quotas = ClientQuotas(tmp_path)
    yield handlers, groups, quotas
    groups.close()
    registry.close()


def answer(parts, api: str) -> dict:
    handlers, groups, quotas = parts
    header = REQUESTS[api]
    if api in GROUP_APIS:
        return groups.handle(api, header)
    if api in CLASSIC_GROUP_APIS:
        ((_waiter, reply),) = handle_classic(groups, "waiter", api, header)
        return reply
    if api in QUOTA_APIS:
        return quotas.handle(api, header, 0.0)
    return handlers.handle(api, header, []).header


def test_the_families_cover_the_envelope_once():
    assert TOPIC_APIS | GROUP_APIS | CLASSIC_GROUP_APIS | QUOTA_APIS == APIS == frames.APIS
    assert len(TOPIC_APIS) + len(GROUP_APIS) + len(CLASSIC_GROUP_APIS) + len(QUOTA_APIS) == len(
        APIS
    )
    assert not (TOPIC_APIS & GROUP_APIS)
    assert not (TOPIC_APIS & QUOTA_APIS)
    assert not (GROUP_APIS & QUOTA_APIS)
    assert set(REQUESTS) == APIS, "add a request for the new API to this test"


def test_api_versions_lists_exactly_the_envelope_apis(broker_parts):
    assert set(answer(broker_parts, "api_versions")["apis"]) == APIS


@pytest.mark.parametrize("api", sorted(APIS))
def test_every_listed_api_has_a_handler_that_answers(broker_parts, api):
    reply = answer(broker_parts, api)
    assert reply["error"] != UnsupportedVersionError.errno, reply
    assert "not a consumer-group API" not in str(reply.get("message"))


def test_named_rows_are_the_same_json_arrays():
    row = DeletedRecords("t", 0, 0, 42, None)
    assert frames.encode_header({"partitions": [row]}) == b'{"partitions":[["t",0,0,42,null]]}'
    assert row.low_watermark == 42


def test_offset_fetch_helpers_round_trip_and_refuse_a_bad_row():
    assert offset_fetch_request("g", [("t", 1), ("t", 0)]) == {
        "group_id": "g",
        "partitions": [["t", 0], ["t", 1]],
    }
    assert offset_fetch_request("g") == {"group_id": "g", "partitions": None}
    reply = {"error": 0, "partitions": [["t", 0, 5, "m", 0, 9]]}
    assert committed_offsets(reply) == [CommittedOffset("t", 0, 5, "m", 0, 9)]
    with pytest.raises(ProtocolError, match="6 fields"):
        committed_offsets({"error": 0, "partitions": [["t", 0, 5]]})
    with pytest.raises(UnknownTopicOrPartitionError):
        committed_offsets({"error": 3, "message": "no"})
    with pytest.raises(ProtocolError):
        rows(CommittedOffset, "nope")
