"""The znodes of cluster mode: Kafka's ZooKeeper layout, paths and JSON. Pure.

Kafka 2.x/3.x in ZooKeeper mode wrote these nodes (under ``zookeeper.connect``'s chroot);
labkit writes the same paths with the same JSON, so a student who reads them with
``zkCli.sh`` sees what Kafka's documentation shows:

    /cluster/id                                  {"version":"1","id":"<cluster id>"}
    /brokers/ids/<id>              (ephemeral)   {"version":5,"host":..,"port":..,
                                                  "endpoints":["PLAINTEXT://host:port"],
                                                  "listener_security_protocol_map":{..},
                                                  "jmx_port":-1,"features":{},
                                                  "timestamp":"<ms>",
                                                  "labkit_zmq_endpoint":"host:port"}
    /controller                    (ephemeral)   {"version":1,"brokerid":N,"timestamp":"<ms>"}
    /controller_epoch                            "<epoch>" (a plain number)
    /brokers/topics/<t>                          {"version":3,"topic_id":..,
                                                  "partitions":{"0":[1,2,3],..},
                                                  "adding_replicas":{},"removing_replicas":{}}
    /brokers/topics/<t>/partitions/<p>/state     {"controller_epoch":E,"leader":L,"version":1,
                                                  "leader_epoch":N,"isr":[..]}
    /config/topics/<t>                           {"version":1,"config":{"k":"v",..}}
    /admin/delete_topics/<t>                     (empty: the controller deletes the topic)
    /latest_producer_id_block                    {"version":1,"broker":N,
                                                  "block_start":"<first id>",
                                                  "block_end":"<last id, inclusive>"}

``labkit_zmq_endpoint`` is labkit's one addition: where the broker's ZeroMQ protocol
listens. Decoders accept what Kafka itself wrote (they read only the fields labkit uses)
and raise ``ValueError`` on a node that is not such JSON.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from typing import Any

NO_LEADER = -1

CLUSTER_ID = "/cluster/id"
BROKER_IDS = "/brokers/ids"
TOPICS = "/brokers/topics"
CONTROLLER = "/controller"
CONTROLLER_EPOCH = "/controller_epoch"
TOPIC_CONFIGS = "/config/topics"
DELETE_TOPICS = "/admin/delete_topics"
PRODUCER_ID_BLOCK = "/latest_producer_id_block"
# what every broker makes sure exists before it registers (Kafka's persistent paths)
PERSISTENT_PATHS = (BROKER_IDS, TOPICS, TOPIC_CONFIGS, DELETE_TOPICS, "/cluster")


def broker_path(broker_id: int) -> str:
    return f"{BROKER_IDS}/{broker_id}"


def topic_path(topic: str) -> str:
    return f"{TOPICS}/{topic}"


def partitions_path(topic: str) -> str:
    return f"{TOPICS}/{topic}/partitions"


def state_path(topic: str, partition: int) -> str:
    return f"{TOPICS}/{topic}/partitions/{partition}/state"


def config_path(topic: str) -> str:
    return f"{TOPIC_CONFIGS}/{topic}"


def delete_path(topic: str) -> str:
    return f"{DELETE_TOPICS}/{topic}"


def _dump(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def _load(data: bytes | None, what: str) -> dict:
    try:
        value = json.loads((data or b"").decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ValueError(f"{what} is not JSON: {data[:80] if data else data!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a JSON object: {value!r}")
    return value


def _int(value: Any, what: str) -> int:
    if type(value) is not int:
        raise ValueError(f"{what} is not a whole number: {value!r}")
    return value


def _ids(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{what} is not a list of broker ids: {value!r}")
    return tuple(_int(item, what) for item in value)


# -- /brokers/ids/<id> -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BrokerInfo:
    """A live broker: its id, the Kafka address clients use, labkit's ZeroMQ address."""

    broker_id: int
    host: str
    port: int
    zmq_host: str | None = None
    zmq_port: int | None = None


def encode_broker(info: BrokerInfo, timestamp_ms: int) -> bytes:
    node: dict[str, Any] = {
        "features": {},
        "listener_security_protocol_map": {"PLAINTEXT": "PLAINTEXT"},
        "endpoints": [f"PLAINTEXT://{info.host}:{info.port}"],
        "jmx_port": -1,
        "port": info.port,
        "host": info.host,
        "version": 5,
        "timestamp": str(timestamp_ms),
    }
    if info.zmq_port is not None:
        node["labkit_zmq_endpoint"] = f"{info.zmq_host or info.host}:{info.zmq_port}"
    return _dump(node)


def decode_broker(broker_id: int, data: bytes | None) -> BrokerInfo:
    node = _load(data, f"broker {broker_id}'s registration")
    host, port = node.get("host"), node.get("port")
    endpoints = node.get("endpoints") or []
    if (not host or not isinstance(port, int) or port < 0) and endpoints:
        # Kafka leaves host/port empty when PLAINTEXT is not the first listener
        _scheme, _, address = str(endpoints[0]).partition("://")
        host, _, text = address.rpartition(":")
        port = int(text) if text.isdigit() else -1
    zmq_host = zmq_port = None
    zmq = node.get("labkit_zmq_endpoint")
    if isinstance(zmq, str) and ":" in zmq:
        zmq_host, _, text = zmq.rpartition(":")
        zmq_port = int(text) if text.isdigit() else None
    return BrokerInfo(broker_id, str(host or ""), _int(port, "port"), zmq_host, zmq_port)


# -- /controller, /controller_epoch, /cluster/id -------------------------------------------


def encode_controller(broker_id: int, timestamp_ms: int) -> bytes:
    return _dump({"version": 1, "brokerid": broker_id, "timestamp": str(timestamp_ms)})


def decode_controller(data: bytes | None) -> int:
    """The controller's broker id."""
    return _int(_load(data, "/controller").get("brokerid"), "/controller's brokerid")


def encode_epoch(epoch: int) -> bytes:
    return str(epoch).encode("ascii")


def decode_epoch(data: bytes | None) -> int:
    text = (data or b"").decode("ascii", "replace").strip()
    if not text.isdigit():
        raise ValueError(f"/controller_epoch is not a number: {text!r}")
    return int(text)


def new_cluster_id() -> str:
    """A Kafka-style id: 16 random bytes, URL-safe base64 without padding (22 characters)."""
    return base64.urlsafe_b64encode(os.urandom(16)).decode("ascii").rstrip("=")


def encode_cluster_id(cluster_id: str) -> bytes:
    return _dump({"version": "1", "id": cluster_id})


def decode_cluster_id(data: bytes | None) -> str:
    value = _load(data, CLUSTER_ID).get("id")
    if not isinstance(value, str) or not value:
        raise ValueError(f"{CLUSTER_ID} has no id: {data!r}")
    return value


# -- /brokers/topics/<t> and its partitions' states -------------------------------------------


Assignment = dict[int, tuple[int, ...]]  # partition -> replicas (the first is preferred)


def encode_topic(assignment: Assignment, topic_id: str) -> bytes:
    return _dump(
        {
            "version": 3,
            "topic_id": topic_id,
            "partitions": {str(p): list(replicas) for p, replicas in sorted(assignment.items())},
            "adding_replicas": {},
            "removing_replicas": {},
        }
    )


def decode_topic(topic: str, data: bytes | None) -> Assignment:
    node = _load(data, f"topic {topic!r}'s assignment")
    partitions = node.get("partitions")
    if not isinstance(partitions, dict):
        raise ValueError(f"topic {topic!r}'s assignment has no partitions: {node!r}")
    out: Assignment = {}
    for key, replicas in partitions.items():
        if not str(key).isdigit():
            raise ValueError(f"topic {topic!r} names partition {key!r}")
        out[int(key)] = _ids(replicas, f"the replicas of {topic}-{key}")
    return dict(sorted(out.items()))


@dataclasses.dataclass(frozen=True)
class PartitionState:
    """Kafka's LeaderAndIsr as the controller wrote it (``leader`` -1: none)."""

    leader: int
    leader_epoch: int
    isr: tuple[int, ...]
    controller_epoch: int


def encode_state(state: PartitionState) -> bytes:
    return _dump(
        {
            "controller_epoch": state.controller_epoch,
            "leader": state.leader,
            "version": 1,
            "leader_epoch": state.leader_epoch,
            "isr": list(state.isr),
        }
    )


def decode_state(what: str, data: bytes | None) -> PartitionState:
    node = _load(data, f"the state of {what}")
    return PartitionState(
        _int(node.get("leader"), f"{what}'s leader"),
        _int(node.get("leader_epoch"), f"{what}'s leader_epoch"),
        _ids(node.get("isr"), f"{what}'s isr"),
        _int(node.get("controller_epoch"), f"{what}'s controller_epoch"),
    )


# -- /config/topics/<t> -------------------------------------------------------------------------


def encode_config(config: dict[str, str]) -> bytes:
    return _dump({"version": 1, "config": {k: str(v) for k, v in sorted(config.items())}})


def decode_config(topic: str, data: bytes | None) -> dict[str, str]:
    config = _load(data, f"topic {topic!r}'s config").get("config") or {}
    if not isinstance(config, dict):
        raise ValueError(f"topic {topic!r}'s config is not an object: {config!r}")
    return {str(k): str(v) for k, v in config.items()}


# -- /latest_producer_id_block ------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ProducerIdBlock:
    """The block of producer ids a broker claimed last: ``[first, last]`` (both included,
    as Kafka's ProducerIdsBlock writes them)."""

    broker_id: int
    first: int
    last: int


def encode_producer_id_block(block: ProducerIdBlock) -> bytes:
    return _dump(
        {
            "version": 1,
            "broker": block.broker_id,
            "block_start": str(block.first),
            "block_end": str(block.last),
        }
    )


def decode_producer_id_block(data: bytes | None) -> ProducerIdBlock | None:
    """None for an empty node (Kafka creates it empty); raises ValueError otherwise."""
    if not data:
        return None
    node = _load(data, PRODUCER_ID_BLOCK)
    bounds = []
    for key in ("block_start", "block_end"):
        text = str(node.get(key))
        if not text.isdigit():
            raise ValueError(f"{PRODUCER_ID_BLOCK}'s {key} is not a producer id: {text!r}")
        bounds.append(int(text))
    first, last = bounds
    if last < first:
        raise ValueError(f"{PRODUCER_ID_BLOCK} ends before it starts: {node!r}")
    return ProducerIdBlock(_int(node.get("broker"), f"{PRODUCER_ID_BLOCK}'s broker"), first, last)
