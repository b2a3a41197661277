"""labkit/kafka/group_apis.py without sockets: every advertised version of every group
API turns into a labkit request and back into a response that encodes, for answers
with and without errors."""

from __future__ import annotations

import base64

import pytest
from kio.index import load_request_schema
from test_kafka_codec import filled_entity

from labkit.kafka import apis, bridges, codec, group_apis
from labkit.kafka.consumer_protocol import decode_assignment, decode_subscription

CONTEXT = apis.Context("broker.example", 19092, 1)
META = base64.b64encode(b"\0\0\0\0\0\1\0\1t\xff\xff\xff\xff").decode()
# a plausible successful labkit answer for each labkit API the group APIs use
ANSWERS = {
    "api_versions": {"error": 0},
    "find_coordinator": {"error": 0, "node_id": 2, "host": "b2", "port": 9093},
    "classic_join": {
        "error": 0,
        "generation": 3,
        "protocol_type": "consumer",
        "protocol_name": "range",
        "leader": "m1",
        "member_id": "m1",
        "members": [{"member_id": "m1", "group_instance_id": None, "metadata": META}],
    },
    "classic_sync": {
        "error": 0,
        "protocol_type": "consumer",
        "protocol_name": "range",
        "assignment": META,
    },
    "classic_heartbeat": {"error": 0},
    "classic_leave": {"error": 0, "members": [["g", 25]]},
    "offset_commit": {"error": 0},
    "offset_fetch": {"error": 0, "partitions": [["t", 0, 5, "", 0, 9]]},
    "list_groups": {
        "error": 0,
        "groups": [{"group_id": "g", "protocol_type": "consumer", "state": "Stable"}],
    },
    "describe_groups": {
        "error": 0,
        "groups": [
            {
                "group_id": "g",
                "error": 0,
                "state": "Stable",
                "protocol_type": "consumer",
                "assignor": "range",
                "members": [
                    {
                        "member_id": "m1",
                        "client_id": "c",
                        "client_host": "/h",
                        "topics": ["t"],
                        "assignment": [["t", 0], ["t", 1]],
                    }
                ],
            }
        ],
    },
    "delete_groups": {"error": 0, "groups": [{"group_id": "g", "error": 0}]},
    "offset_delete": {"error": 0, "partitions": [["t", 0, 0, None], ["t", 1, 86, "busy"]]},
}
CASES = [
    (key, version)
    for key in sorted(group_apis.PAIRS)
    for version in range(codec.SUPPORTED[key][0], codec.SUPPORTED[key][1] + 1)
]


@pytest.mark.parametrize(("key", "version"), CASES)
@pytest.mark.parametrize("failed", [False, True])
def test_every_version_bridges_both_ways(key, version, failed):
    request = filled_entity(load_request_schema(key, version))
    api = bridges.BRIDGED[key]
    name, header = api.to_labkit(request, version)
    assert isinstance(header, dict)
    reply = {"error": 16, "message": "no"} if failed else ANSWERS[name]
    response = api.to_kafka(reply, request, version, CONTEXT)
    frame = codec.encode_response(7, response)
    assert len(frame) > 4


def test_a_labkit_group_is_described_in_kafkas_consumer_protocol():
    request = filled_entity(load_request_schema(15, 5))
    response = group_apis.describe_groups_to_kafka(ANSWERS["describe_groups"], request, 5, CONTEXT)
    member = response.groups[0].members[0]
    assert decode_subscription(member.member_metadata) == ["t"]
    assert decode_assignment(member.member_assignment) == [("t", 0), ("t", 1)]


def test_find_coordinator_names_the_listener_and_refuses_transactions():
    schema = load_request_schema(10, 3)
    found = group_apis.find_coordinator_to_kafka(
        {"error": 0}, schema(key="g", key_type=0), 3, CONTEXT
    )
    assert (found.error_code, found.host, found.port, found.node_id) == (
        0,
        "broker.example",
        19092,
        0,
    )
    refused = group_apis.find_coordinator_to_kafka(
        {"error": 0}, schema(key="tx", key_type=1), 3, CONTEXT
    )
    assert refused.error_code == 35  # UNSUPPORTED_VERSION, as InitProducerId answers
    assert "transaction" in refused.error_message


def test_offset_delete_groups_partitions_by_topic_and_keeps_a_group_error_on_top():
    schema = load_request_schema(47, 0)
    request = filled_entity(schema)
    name, header = group_apis.offset_delete_to_labkit(request, 0)
    assert name == "offset_delete"
    assert header["group_id"] == request.group_id
    assert len(header["partitions"]) == sum(len(t.partitions) for t in request.topics)
    reply = {"error": 0, "partitions": [["t", 0, 0, None], ["u", 1, 86, "x"], ["t", 2, 3, "y"]]}
    response = group_apis.offset_delete_to_kafka(reply, request, 0, CONTEXT)
    assert response.error_code == 0
    assert [
        (t.name, [(p.partition_index, p.error_code) for p in t.partitions]) for t in response.topics
    ] == [("t", [(0, 0), (2, 3)]), ("u", [(1, 86)])]
    missing = group_apis.offset_delete_to_kafka(
        {"error": 69, "message": "no such group"}, request, 0, CONTEXT
    )
    assert (missing.error_code, missing.topics) == (69, ())
