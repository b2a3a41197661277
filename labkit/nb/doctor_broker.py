"""The doctor's broker checks: is a broker there, which kind, and does a record go round.

Theory of operation
-------------------
``broker_result`` asks the bootstrap servers who they are: a labkit broker answers with
its name and version (``api_versions``); a Kafka cluster that is not labkit (the lab's
switch, ``labkit.nb._connect.is_labkit_broker``) with its cluster id, its brokers and the
API version kafka-python infers, through labkit's admin client, which delegates to
kafka-python there. ``roundtrip_result`` creates a temporary topic, sends one record,
reads it back and deletes the topic, with labkit's client classes (on either broker).

When the broker does not answer, ``probe_address`` looks at the network one level down
-- does the name resolve, does anything accept a TCP connection on the port -- and
``unreachable_fix`` (pure) turns that into advice: start ``labkit broker``, use
``broker:9092`` inside Docker, free port 9092... The broker's main port speaks Kafka's
protocol and tells labkit's client where its ZeroMQ port is, so "TCP accepts but no
labkit answer" means some other program holds the port, and "the main port answers but
ZeroMQ does not" (``zeromq_unreachable``) means the ZeroMQ port is not reachable from here
(not published, a firewall). Every check returns a ``Result`` and never raises.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import labkit
from labkit._address import BOOTSTRAP_ENV
from labkit._clock import REAL_CLOCK, Clock
from labkit.i18n import _, ngettext
from labkit.nb._connect import explain
from labkit.nb.doctor_report import FAIL, OK, WARN, Result

# -- pure advice ---------------------------------------------------------------------

LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1", "0.0.0.0")


@dataclass(frozen=True)
class Probe:
    """What the network says about ``host:port`` (filled in by ``probe_address``)."""

    resolves: bool
    tcp: str
    """'open' (something accepts), 'refused' (nothing listens), 'timeout' or 'error'."""


def unreachable_fix(
    host: str, port: int, probe: Probe, *, in_compose: bool, env_set: bool
) -> tuple[str, str]:
    """(what is wrong, what to do) when no labkit broker answers at ``host:port``.

    ``in_compose``: this runs in a docker-compose container that can see the
    ``broker`` service.
    """
    addr = f"{host}:{port}"
    set_env = (
        _("set {variable}").format(variable=BOOTSTRAP_ENV)
        if not env_set
        else _("change {variable}").format(variable=BOOTSTRAP_ENV)
    )
    if not probe.resolves:
        if host == "broker" and not in_compose:
            return (
                _("the name 'broker' does not resolve here ({addr})").format(addr=addr),
                _(
                    "'broker:9092' is the address inside docker-compose only. Outside Docker use localhost:9092: unset {bootstrap_env} (or set it to localhost:9092)."
                ).format(bootstrap_env=BOOTSTRAP_ENV),
            )
        return (
            _("the host name {host!r} does not resolve").format(host=host),
            _(
                "Check the spelling of the address in bootstrap_servers / {bootstrap_env}; for a broker on this machine use localhost:9092."
            ).format(bootstrap_env=BOOTSTRAP_ENV),
        )
    if probe.tcp == "open":
        return (
            _("something is listening on port {port}, but it is not a labkit broker").format(
                port=port
            ),
            _(
                "Another program (Apache Kafka? an old broker?) holds {addr}. Stop it, or run the labkit broker on another port: `labkit broker --port 9093`, then {set_env}=localhost:9093.\nFind the program: `lsof -i :{port}` (macOS/Linux) or `netstat -ano | findstr {port}` (Windows). With Docker: LABKIT_BROKER_PORT=9093 docker-compose up."
            ).format(addr=addr, set_env=set_env, port=port),
        )
    if in_compose and host in LOCAL_HOSTS:
        return (
            _("nothing answers at {addr} inside this container").format(addr=addr),
            _(
                "Inside Docker the broker is another container: use broker:9092 ({set_env}=broker:9092; docker-compose sets it for the lab service). Check the broker is up: `docker-compose ps`, `docker-compose logs broker`."
            ).format(set_env=set_env),
        )
    if in_compose:
        return (
            _("the broker container does not answer at {addr}").format(addr=addr),
            _(
                "Start it: `docker-compose up -d broker`; see why it stopped: `docker-compose logs broker`."
            ),
        )
    if probe.tcp == "timeout":
        return (
            _("the connection to {addr} timed out").format(addr=addr),
            _(
                "A firewall or a wrong address. For a broker on this machine use localhost:9092; check that the broker is running (`labkit broker`)."
            ),
        )
    return (
        _("no broker is running at {addr}").format(addr=addr),
        _(
            "Start it in another terminal: `labkit broker` (or `make broker`); or start the whole lab with `docker-compose up`.\nIf your broker runs on another host or port, {set_env}=host:port."
        ).format(set_env=set_env),
    )


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.strip().rpartition(":")
    if not sep:
        return address.strip(), 9092
    host = host.strip("[]") or "localhost"
    return host, int(port)


# -- the checks that touch the network ---------------------------------------------


def in_compose() -> bool:
    """In a container (``/.dockerenv``) where the docker-compose ``broker`` service resolves."""
    if not (os.path.exists("/.dockerenv") or os.environ.get("LABKIT_IN_DOCKER") == "1"):
        return False
    try:
        socket.getaddrinfo("broker", 9092, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return False
    return True


def probe_address(host: str, port: int, timeout: float = 1.0) -> Probe:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return Probe(False, "error")
    state = "error"
    for family, kind, proto, _canonname, sockaddr in infos:
        try:
            with socket.socket(family, kind, proto) as s:
                s.settimeout(timeout)
                s.connect(sockaddr)
            return Probe(True, "open")
        except ConnectionRefusedError:
            state = "refused"
        except TimeoutError:
            state = "timeout" if state != "refused" else state
        except OSError:
            pass
    return Probe(True, state)


def _broker_info(servers: list[str], timeout_s: float) -> dict[str, Any]:
    """The broker's ``api_versions`` answer. Raises NoBrokersAvailable.

    A Kafka cluster that is not labkit answers through kafka-python instead (no
    ``api_versions`` of labkit's there): ``broker`` "Kafka", the version kafka-python
    infers from the broker's API versions, the cluster id and the number of brokers."""
    from labkit.nb._connect import is_labkit_broker

    if not is_labkit_broker(servers):
        return _kafka_info(servers, timeout_s)
    from labkit.client.probe import broker_info

    return broker_info(servers, timeout_s, client_id="labkit-doctor")


def _kafka_info(servers: list[str], timeout_s: float) -> dict[str, Any]:
    from labkit import KafkaAdminClient  # over kafka-python's on this broker

    wait_ms = int(max(timeout_s, 1.0) * 1000)
    with KafkaAdminClient(
        bootstrap_servers=servers, client_id="labkit-doctor", request_timeout_ms=wait_ms
    ) as admin:
        cluster = admin.describe_cluster()
        # the API versions kafka-python found, as its admin client keeps them
        data = getattr(getattr(admin, "_manager", None), "broker_version_data", None)
    inferred = getattr(data, "broker_version", None)
    return {
        "broker": "Kafka",
        "version": ".".join(map(str, inferred)) if inferred else "?",
        "cluster_id": cluster.get("cluster_id"),
        "brokers": len(cluster.get("brokers") or []),
    }


_ZMQ_FAILED = re.compile(
    r"(?P<main>\S+) answered labkit's bootstrap request \(ZeroMQ at (?P<zmq>\S+)\), but"
)


def zeromq_unreachable(message: str) -> tuple[str, str] | None:
    """(what, fix) when the broker's main port answered but its ZeroMQ port did not."""
    found = _ZMQ_FAILED.search(message)
    if found is None:
        return None
    main, zmq_address = found["main"], found["zmq"]
    return (
        _("the broker answers at {main}, but its ZeroMQ port {zmq} does not").format(
            main=main, zmq=zmq_address
        ),
        _(
            "labkit's client needs both of the broker's ports: the main one (Kafka's "
            "protocol, {main}) and its ZeroMQ port ({zmq}). With Docker, publish both "
            "(docker-compose.yml publishes 9192: LABKIT_ZMQ_PORT); check a firewall lets "
            "that port through; for a broker on another machine, its advertised listener "
            "must name a host this machine can reach (`labkit broker --advertised-listeners "
            "PLAINTEXT://its-name:9092`)."
        ).format(main=main, zmq=zmq_address),
    )


def broker_result(
    servers: list[str],
    timeout_s: float,
    info_fn: Callable[[list[str], float], dict[str, Any]] = _broker_info,
    compose: bool | None = None,
) -> Result:
    name = "broker"
    where = ",".join(servers)
    try:
        info = info_fn(servers, timeout_s)
    except Exception as exc:  # noqa: BLE001 - turned into advice below
        try:
            host, port = split_address(servers[0])
        except ValueError:
            return Result(
                name,
                FAIL,
                _("{where} is not a host:port address").format(where=where),
                _("Give the address as host:port, e.g. localhost:9092 ({bootstrap_env}).").format(
                    bootstrap_env=BOOTSTRAP_ENV
                ),
            )
        zeromq = zeromq_unreachable(str(exc))
        if zeromq is not None:
            return Result(name, FAIL, *zeromq)
        what, fix = unreachable_fix(
            host,
            port,
            probe_address(host, port),
            in_compose=in_compose() if compose is None else compose,
            env_set=bool(os.environ.get(BOOTSTRAP_ENV)),
        )
        if type(exc).__name__ not in (
            "NoBrokersAvailable",
            "KafkaTimeoutError",
            "KafkaConnectionError",
        ):
            what += f" ({explain(exc)})"
        return Result(name, FAIL, what, fix)
    kind = info.get("broker", "?")
    version = info.get("version", "?")
    detail = _("{kind} {version} answers at {where}").format(
        kind=kind, version=version, where=where
    )
    if info.get("zmq_address") and info["zmq_address"] not in servers:
        detail += _(" (ZeroMQ at {address})").format(address=info["zmq_address"])
    if kind == "Kafka":
        # a real Kafka cluster (README: "Running the lab on a real Kafka cluster")
        detail = ngettext(
            "a Kafka cluster (not labkit) answers at {where}: {count} broker, cluster id {cluster}, API of Kafka {version}+; the notebooks use kafka-python's clients there",
            "a Kafka cluster (not labkit) answers at {where}: {count} brokers, cluster id {cluster}, API of Kafka {version}+; the notebooks use kafka-python's clients there",
            info.get("brokers") or 0,
        ).format(
            where=where,
            count=info.get("brokers") or 0,
            cluster=info.get("cluster_id") or "?",
            version=version,
        )
        return Result(name, OK, detail)
    if kind != "labkit":
        return Result(name, FAIL, detail, _("This is not a labkit broker: start `labkit broker`."))
    if version != labkit.__version__:
        return Result(
            name,
            WARN,
            detail + _(" (this client is {version})").format(version=labkit.__version__),
            _(
                "Versions differ: update both (git pull, make venv) and restart the broker (with Docker: docker-compose build, then docker-compose up)."
            ),
        )
    return Result(name, OK, detail)


def roundtrip_result(servers: list[str], timeout_s: float, clock: Clock = REAL_CLOCK) -> Result:
    """Create a temporary topic, send one record, read it back, delete the topic."""
    from labkit import KafkaAdminClient, KafkaConsumer, KafkaProducer, NewTopic, TopicPartition

    name = "round trip"
    topic = f"labkit-doctor-{uuid.uuid4().hex[:10]}"
    payload = f"doctor {uuid.uuid4().hex}".encode()
    admin = producer = consumer = None
    started = clock.monotonic()
    try:
        admin = KafkaAdminClient(bootstrap_servers=servers, client_id="labkit-doctor")
        admin.create_topics([NewTopic(topic, 1, 1)])
        producer = KafkaProducer(bootstrap_servers=servers, client_id="labkit-doctor")
        meta = producer.send(topic, payload).get(timeout=timeout_s)
        producer.flush(timeout=timeout_s)
        consumer = KafkaConsumer(
            bootstrap_servers=servers,
            client_id="labkit-doctor",
            group_id=None,
            enable_auto_commit=False,
        )
        tp = TopicPartition(topic, meta.partition)
        consumer.assign([tp])
        consumer.seek(tp, meta.offset)
        deadline = clock.monotonic() + timeout_s
        got = None
        while got is None and clock.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=200).values():
                got = next((r for r in records if r.value == payload), got)
        if got is None:
            return Result(
                name,
                FAIL,
                _(
                    "sent one record to {topic} but could not read it back within {timeout_s:g} s"
                ).format(topic=topic, timeout_s=timeout_s),
                _(
                    "The broker accepts writes but fetches fail: look at the broker's output for errors, restart it (`labkit broker`) and try again."
                ),
            )
        ms = (clock.monotonic() - started) * 1000
        return Result(
            name,
            OK,
            _("sent and read back one record via a temporary topic ({ms:.0f} ms)").format(ms=ms),
        )
    except Exception as exc:  # noqa: BLE001 - reported as a failed check with advice
        return Result(
            name,
            FAIL,
            _("failed: {explain_exc}").format(explain_exc=explain(exc)),
            _(
                "Look at the broker's output for errors; check the data directory is writable and the disk is not full; restart the broker and try again."
            ),
        )
    finally:
        for client in (consumer, producer):
            _close(client)
        if admin is not None:
            try:
                admin.delete_topics([topic])
            except Exception:  # noqa: BLE001 - a leftover temporary topic is harmless
                pass
            _close(admin)


def _close(client: Any) -> None:
    if client is not None:
        try:
            client.close()
        except Exception:  # noqa: BLE001 - closing must not hide the check's result
            pass
