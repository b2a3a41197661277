"""Client configuration: kafka-python's keyword names, checked once at construction.

Each client class declares its defaults (kafka-python's names and values, ``*_ms``
units). ``resolve`` merges the user's keywords into a copy, rejects unknown keys
with a "did you mean" hint (kafka-python raises too), and leaves the result in a
plain dict (``producer.config`` is a dict in kafka-python as well).

Keys that only matter to a real Kafka cluster (SSL, SASL, socket buffers, metrics
reporters, ``api_version``...) are accepted and ignored, so course code that sets
them runs unchanged; settings labkit cannot honour raise a clear error instead of
being silently ignored.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
from typing import Any

from labkit._address import BOOTSTRAP_ENV as BOOTSTRAP_ENV  # re-exported: transport names it
from labkit._address import DEFAULT_BOOTSTRAP as DEFAULT_BOOTSTRAP
from labkit._address import bootstrap_list
from labkit.errors import InvalidTopicError, KafkaConfigurationError

DEFAULT_PORT = 9092

# Accepted by every client and ignored: they configure TLS, SASL, sockets, metrics
# or version probing of a real Kafka cluster, none of which labkit's broker has.
IGNORED_COMMON: dict[str, Any] = {
    "api_version": None,
    "api_version_auto_timeout_ms": 2000,
    "bootstrap_timeout_ms": 30000,
    "client_dns_lookup": "use_all_dns_ips",
    "connections_max_idle_ms": 9 * 60 * 1000,
    "metadata_max_age_ms": 300000,
    "metric_reporters": [],
    "metrics_enabled": True,
    "metrics_num_samples": 2,
    "metrics_sample_window_ms": 30000,
    "receive_buffer_bytes": None,
    "receive_message_max_bytes": 100_000_000,
    "send_buffer_bytes": None,
    "socket_options": None,
    "sock_chunk_bytes": 4096,
    "sock_chunk_buffer_count": 1000,
    "selector": None,
    "kafka_client": None,
    "proxy_url": None,
    "socks5_proxy": None,
    "security_protocol": "PLAINTEXT",
    "ssl_context": None,
    "ssl_check_hostname": True,
    "ssl_cafile": None,
    "ssl_certfile": None,
    "ssl_keyfile": None,
    "ssl_crlfile": None,
    "ssl_password": None,
    "ssl_ciphers": None,
    "sasl_mechanism": None,
    "sasl_plain_username": None,
    "sasl_plain_password": None,
    "sasl_kerberos_name": None,
    "sasl_kerberos_service_name": "kafka",
    "sasl_kerberos_domain_name": None,
    "sasl_oauth_token_provider": None,
}

# Used by every client and honoured.
CONNECTION_DEFAULTS: dict[str, Any] = {
    "bootstrap_servers": None,  # None -> $LABKIT_BOOTSTRAP, else localhost:9092
    "client_id": None,
    "request_timeout_ms": 30000,
    "retry_backoff_ms": 100,
    "reconnect_backoff_ms": 50,
    "reconnect_backoff_max_ms": 1000,
    "max_in_flight_requests_per_connection": 5,
}


def refuse_unknown(kind: str, known: dict[str, Any], configs: dict[str, Any]) -> None:
    """Raise KafkaConfigurationError naming each key of ``configs`` not in ``known``, with
    the closest known name."""
    unknown = sorted(set(configs) - set(known))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key, list(known), n=1)
            hints.append(f"{key!r} (did you mean {close[0]!r}?)" if close else repr(key))
        raise KafkaConfigurationError(
            f"Unrecognized configs for {kind}: {', '.join(hints)}. Check the spelling: the "
            "keyword names are kafka-python's (bootstrap_servers, value_serializer, "
            "auto_offset_reset, ...)."
        )


def resolve(kind: str, defaults: dict[str, Any], configs: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` updated with ``configs``. Raises KafkaConfigurationError for unknown keys."""
    known = {**IGNORED_COMMON, **CONNECTION_DEFAULTS, **defaults}
    refuse_unknown(kind, known, configs)
    config = dict(known)
    config.update(configs)
    protocol = str(config.get("security_protocol") or "PLAINTEXT").upper()
    if protocol != "PLAINTEXT":
        raise KafkaConfigurationError(
            f"security_protocol={config['security_protocol']!r}: labkit's broker speaks "
            "plaintext only; remove security_protocol (and the ssl_*/sasl_* settings)."
        )
    for key in ("request_timeout_ms", "retry_backoff_ms"):
        _check_number(config, key, minimum=0)
    return config


def _check_number(config: dict[str, Any], key: str, minimum: float = 0) -> None:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or value < minimum:
        raise KafkaConfigurationError(f"{key} must be a number >= {minimum}, got {value!r}")


def check_numbers(config: dict[str, Any], keys: dict[str, float]) -> None:
    """Raise KafkaConfigurationError unless each ``config[key]`` is a number >= minimum."""
    for key, minimum in keys.items():
        _check_number(config, key, minimum)


def parse_bootstrap(servers: Any) -> list[tuple[str, int]]:
    """``"h:p,h2:p"`` or a list of ``"h[:p]"`` -> [(host, port)]; None -> env or localhost:9092.

    Raises KafkaConfigurationError for a malformed address.
    """
    if servers is None or servers == "" or servers == []:
        servers = bootstrap_list()
    if isinstance(servers, str):
        items = servers.split(",")
    elif isinstance(servers, list | tuple | set):
        items = [part for item in servers for part in str(item).split(",")]
    else:
        raise KafkaConfigurationError(
            "bootstrap_servers must be a string like 'localhost:9092' or a list of them, "
            f"got {servers!r}"
        )
    out = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        out.append(_parse_address(item))
    if not out:
        raise KafkaConfigurationError("bootstrap_servers is empty; use e.g. 'localhost:9092'")
    return out


def _parse_address(item: str) -> tuple[str, int]:
    text = re.sub(r"^[A-Za-z_]+://", "", item)  # tolerate PLAINTEXT://host:port
    if text.startswith("["):  # [::1]:9092
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    elif ":" in text:  # a bare IPv6 address
        host, port_text = text, ""
    else:
        host, port_text = text, ""
    if not host:
        raise KafkaConfigurationError(
            f"bootstrap server {item!r} has no host; use e.g. 'localhost:9092'"
        )
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise KafkaConfigurationError(
            f"bootstrap server {item!r} has an invalid port; use e.g. 'localhost:9092'"
        )
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def default_client_id(prefix: str) -> str:
    return f"{prefix}-{socket.gethostname()}-{os.getpid()}"


_TOPIC_CHARS = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_TOPIC_LENGTH = 249


def validate_topic(topic: Any) -> str:
    """Return ``topic`` if it is a legal Kafka topic name, else raise.

    Raises TypeError for a non-string, InvalidTopicError for a bad name.
    """
    if not isinstance(topic, str):
        raise TypeError(f"topic must be a str, got {type(topic).__name__}")
    if topic in ("", ".", ".."):
        raise InvalidTopicError(
            f"topic name {topic!r} is not allowed; use letters, digits, '.', '_' "
            "and '-', e.g. 'rta'"
        )
    if len(topic) > MAX_TOPIC_LENGTH:
        raise InvalidTopicError(
            f"topic name is {len(topic)} characters long; the limit is {MAX_TOPIC_LENGTH}"
        )
    if not _TOPIC_CHARS.match(topic):
        bad = sorted({c for c in topic if not re.match(r"[a-zA-Z0-9._-]", c)})
        shown = ", ".join(repr(c) for c in bad)
        raise InvalidTopicError(
            f"topic name {topic!r} contains {shown}; only letters, digits, "
            "'.', '_' and '-' are allowed"
        )
    return topic
