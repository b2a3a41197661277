"""Kafka's ``listeners`` and ``advertised.listeners``: where the broker listens for Kafka
clients, and what address Metadata gives each of them (docs/broker.md, "Listeners").

Kafka's syntax: ``NAME://host:port,NAME://host:port``; ``[::1]`` for IPv6 hosts; an
empty host or ``0.0.0.0`` listens on every interface; port 0 is any free port. A
listener's security protocol is its name's entry in ``listener.security.protocol.map``,
else its name when that is a protocol (PLAINTEXT), else PLAINTEXT (labkit speaks only
PLAINTEXT, so it does not make a custom name such as INTERNAL need a map entry, as
Kafka does). SSL and SASL are refused with a clear error.

Kafka's rule for Metadata: a client is told the advertised address of the listener it
came in on. A listener without an ``advertised.listeners`` entry advertises its own
host (a wildcard host: ``advertised.host.name``, else ``localhost``) and port. Pure: no
sockets; errors are ``KafkaConfigurationError`` saying what to write instead.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from labkit.errors import KafkaConfigurationError

DEFAULT_NAME = "PLAINTEXT"
WILDCARD_HOSTS = ("", "0.0.0.0", "::", "*")
_UNSUPPORTED = ("SSL", "SASL_PLAINTEXT", "SASL_SSL")
_NAME = re.compile(r"[A-Za-z0-9_]+\Z")
_ENTRY = re.compile(r"(?P<name>[^:/]*)://(?P<host>\[[^\]]*\]|[^:\[\]]*):(?P<port>[^:]*)\Z")


class Endpoint(NamedTuple):
    """One ``NAME://host:port`` entry as written (host without IPv6 brackets)."""

    name: str
    host: str
    port: int


class Listener(NamedTuple):
    """A listener to bind and what it advertises. ``advertised_port`` 0: the bound port.
    ``explicit``: the advertised host was configured (advertised.listeners or
    advertised.host.name), so a labkit client must use it, not the host it dialled."""

    name: str
    bind_host: str
    port: int
    advertised_host: str
    advertised_port: int
    explicit: bool


def parse(key: str, text: str, allow_wildcard: bool = True) -> tuple[Endpoint, ...]:
    """``NAME://host:port,...`` -> endpoints. Raises KafkaConfigurationError."""
    entries = [part.strip() for part in str(text).split(",") if part.strip()]
    if not entries:
        raise KafkaConfigurationError(
            f"{key} is empty; write it as NAME://host:port, e.g. {key}=PLAINTEXT://localhost:9092"
        )
    found: list[Endpoint] = []
    for entry in entries:
        match = _ENTRY.match(entry)
        if match is None or not _NAME.match(match["name"]):
            raise KafkaConfigurationError(
                f"{key}: {entry!r} is not NAME://host:port (e.g. PLAINTEXT://localhost:9092, "
                "PLAINTEXT://0.0.0.0:9092, PLAINTEXT://[::1]:9092)"
            )
        try:
            port = int(match["port"])
        except ValueError:
            port = -1
        if not 0 <= port <= 65535:
            raise KafkaConfigurationError(
                f"{key}: {entry!r} has no TCP port (use 1-65535, or 0 for any free port)"
            )
        host = match["host"].strip("[]")
        if not allow_wildcard and (host in WILDCARD_HOSTS or port == 0):
            raise KafkaConfigurationError(
                f"{key}: {entry!r} cannot be advertised (clients cannot connect to "
                "a wildcard address or port 0); name the host and port clients should use"
            )
        name = match["name"].upper()
        if any(e.name == name for e in found):
            raise KafkaConfigurationError(f"{key}: the listener name {name} appears twice")
        found.append(Endpoint(name, host, port))
    return tuple(found)


def parse_protocol_map(text: str) -> dict[str, str]:
    """``listener.security.protocol.map``: ``NAME:PROTOCOL,...``. Only PLAINTEXT."""
    out: dict[str, str] = {}
    for part in str(text).split(","):
        if not part.strip():
            continue
        name, sep, protocol = part.strip().partition(":")
        if not sep or not _NAME.match(name.strip()) or not protocol.strip():
            raise KafkaConfigurationError(
                f"listener.security.protocol.map: {part.strip()!r} is not NAME:PROTOCOL "
                "(e.g. INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT)"
            )
        out[name.strip().upper()] = _plaintext_only(name.strip().upper(), protocol.strip().upper())
    return out


def _plaintext_only(name: str, protocol: str) -> str:
    if protocol in _UNSUPPORTED:
        raise KafkaConfigurationError(
            f"listener {name} uses {protocol}: labkit speaks only PLAINTEXT (no TLS, no SASL; "
            "it is a lab broker). Use PLAINTEXT, e.g. PLAINTEXT://localhost:9092 or map the "
            f"name with listener.security.protocol.map={name}:PLAINTEXT"
        )
    if protocol != DEFAULT_NAME:
        raise KafkaConfigurationError(
            f"listener {name}: unknown security protocol {protocol!r}; labkit speaks only PLAINTEXT"
        )
    return protocol


def resolve(
    listeners: tuple[Endpoint, ...],
    advertised: tuple[Endpoint, ...],
    protocol_map: dict[str, str],
    advertised_host_name: str | None,
) -> tuple[Listener, ...]:
    """Bind addresses and what each listener advertises (see the module docstring)."""
    names = {endpoint.name for endpoint in listeners}
    for endpoint in advertised:
        if endpoint.name not in names:
            raise KafkaConfigurationError(
                f"advertised.listeners names {endpoint.name}, which is not in listeners "
                f"({', '.join(sorted(names))}); every advertised name must be a listener"
            )
    for name in protocol_map:
        if name not in names and protocol_map[name] != DEFAULT_NAME:
            raise KafkaConfigurationError(f"listener.security.protocol.map: unknown name {name}")
    ports = [e.port for e in listeners if e.port]
    if len(ports) != len(set(ports)):
        raise KafkaConfigurationError(
            "listeners: two listeners on the same port; give each its own port"
        )
    by_name = {endpoint.name: endpoint for endpoint in advertised}
    out = []
    for endpoint in listeners:
        protocol = protocol_map.get(endpoint.name)
        if protocol is None:
            # a name that is a protocol is that protocol (Kafka); any other name: PLAINTEXT
            protocol = endpoint.name if endpoint.name in _UNSUPPORTED else DEFAULT_NAME
        _plaintext_only(endpoint.name, protocol)
        wildcard = endpoint.host in WILDCARD_HOSTS
        bind = {"": "0.0.0.0", "*": "0.0.0.0", "localhost": "127.0.0.1"}.get(
            endpoint.host, endpoint.host
        )
        chosen = by_name.get(endpoint.name)
        if chosen is not None:
            out.append(Listener(endpoint.name, bind, endpoint.port, chosen.host, chosen.port, True))
            continue
        if advertised_host_name:
            host, explicit = advertised_host_name, True
        else:
            host, explicit = ("localhost" if wildcard else endpoint.host), False
        out.append(Listener(endpoint.name, bind, endpoint.port, host, 0, explicit))
    return tuple(out)


def describe(listener: Listener, bound_port: int) -> str:
    """``NAME://host:port`` for the startup line, with what it advertises when that differs."""
    host = f"[{listener.bind_host}]" if ":" in listener.bind_host else listener.bind_host
    text = f"{listener.name}://{host}:{bound_port}"
    advertised = f"{listener.advertised_host}:{listener.advertised_port or bound_port}"
    if advertised != f"{listener.bind_host}:{bound_port}":
        text += f" (advertised as {advertised})"
    return text
