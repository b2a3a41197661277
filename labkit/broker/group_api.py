"""Consumer-group requests (placeholder until the group coordinator lands).

Contract with broker/server.py: the server builds one ``GroupService`` at start,
passes every request whose API is in ``GROUP_APIS`` to ``handle`` (which never
raises and returns the response header), calls ``tick()`` about every 100 ms,
and ``close()`` at shutdown.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from labkit._clock import Clock

GROUP_APIS = frozenset({
    "join_group", "heartbeat", "leave_group", "offset_commit", "offset_fetch",
    "list_groups", "describe_groups", "delete_groups",
})


class GroupService:
    def __init__(self, data_dir: Path, clock: Clock,
                 partitions_of: Callable[[str], int | None],
                 log_end_offset: Callable[[str, int], int | None]):
        self._clock = clock

    def handle(self, api: str, header: dict[str, Any]) -> dict[str, Any]:
        return {"error": 35, "message": "consumer groups are not supported by this broker yet"}

    def tick(self) -> None:
        pass

    def close(self) -> None:
        pass
