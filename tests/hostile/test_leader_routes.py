"""Hostile metadata answers for labkit's client in cluster mode: the routing table
(client/routing.py) skips rows of the wrong shape instead of raising on the transport's
I/O thread (which would take the client's connection down)."""

from __future__ import annotations

from labkit.client.routing import ANY_BROKER, Routes


def metadata(leaders: dict[int, int]) -> dict:
    brokers = [
        {"node_id": b, "host": "h", "zmq_host": "z", "zmq_port": 9100 + b} for b in (1, 2, 3)
    ]
    rows = [{"partition": p, "leader": leader} for p, leader in leaders.items()]
    return {"brokers": brokers, "topics": [{"name": "t", "error": 0, "partitions": rows}]}


def test_a_broken_metadata_answer_is_skipped_not_raised():
    routes = Routes(bootstrap_node=1)
    routes.update(metadata({0: 1, 1: 2}))
    routes.update({"brokers": "x", "topics": 7})
    routes.update(
        {
            "brokers": [{"node_id": "2", "zmq_port": "x"}, None, {"node_id": 3}],
            "topics": [{"name": "t", "partitions": [{"partition": "0", "leader": "1"}, 5]}],
        }
    )
    assert routes.endpoint(2) == "z:9102"  # kept: no usable endpoint in the broken rows
    assert routes.leader("t", 0) is ANY_BROKER  # the topic's rows were unusable
