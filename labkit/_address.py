"""Where the broker is: the one bootstrap resolver of labkit.

The client (``bootstrap_servers=None``), the console tools (no ``--bootstrap-server``) and
the notebook helpers (``nb.bootstrap_servers()``) all resolve the broker's address here:
what was given, else ``$LABKIT_BOOTSTRAP``, else ``localhost:9092``. A module of its own,
importing nothing, so ``labkit --help`` and ``import labkit.nb`` stay light.
"""

from __future__ import annotations

import os

DEFAULT_BOOTSTRAP = "localhost:9092"
BOOTSTRAP_ENV = "LABKIT_BOOTSTRAP"


def bootstrap_list(servers: str | list[str] | tuple[str, ...] | None = None) -> list[str]:
    """``servers`` (``"h:p,h:p"`` or a list) as a list of ``"host:port"`` strings; None or
    empty -> ``$LABKIT_BOOTSTRAP``, else localhost:9092.

    Addresses are not validated here (the client's ``parse_bootstrap`` does that).
    """
    if isinstance(servers, list | tuple):
        items = [part for item in servers for part in str(item).split(",")]
    else:
        items = (servers or "").split(",")
    found = [item.strip() for item in items if item.strip()]
    if found:
        return found
    default = os.environ.get(BOOTSTRAP_ENV, "").strip() or DEFAULT_BOOTSTRAP
    return [item.strip() for item in default.split(",") if item.strip()] or [DEFAULT_BOOTSTRAP]
