"""Run one benchmark operation in this process: ``python worker.py '<json spec>'``.

The spec names a driver module (``"driver": "kafka" | "confluent" | "redis" |
"zmq"``) and an operation (``"op"``: produce, consume, sync, lat_produce,
lat_consume, group_member, push, pull); the operation prints JSON lines and
ends with ``{"result": {...}}`` (see common.py). Any failure ends with
``{"result": {"error": "..."}}`` and exit status 1.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import emit

DRIVERS = {
    "kafka": "drv_kafka",
    "confluent": "drv_confluent",
    "redis": "drv_redis",
    "zmq": "drv_zmq",
}


def main(argv: list[str]) -> int:
    spec = json.loads(argv[1])
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    if spec.get("profile"):
        return _profiled(spec)
    try:
        module = importlib.import_module(DRIVERS[spec["driver"]])
        getattr(module, spec["op"])(spec)
    except Exception as exc:  # noqa: BLE001 - report any failure as data: the table says what broke
        traceback.print_exc()
        emit({"result": {"error": f"{type(exc).__name__}: {exc}"}})
        return 1
    return 0


def _profiled(spec: dict) -> int:
    """Run under pyinstrument (``"profile": "<output.html>"``) for NOTES.md."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    module = importlib.import_module(DRIVERS[spec["driver"]])
    profiler.start()
    getattr(module, spec["op"])(spec)
    profiler.stop()
    with open(spec["profile"], "w") as f:
        f.write(profiler.output_html())
    sys.stderr.write(profiler.output_text(unicode=False, color=False, show_all=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
