#!/usr/bin/env python3
"""Docker healthcheck: does a labkit broker answer an api_versions request?

    labkit-healthcheck [HOST:PORT]        (default 127.0.0.1:9092)

The address is the broker's main port (Kafka's protocol): the probe asks it where
ZeroMQ is, as every labkit client does, then asks over ZeroMQ; so a healthy broker
answers on both ports (a ZeroMQ port given directly works too).

Exit status 0 when the broker answers without error within 3 s, else 1 with the
reason on stderr (Docker keeps it: `docker inspect --format '{{json .State.Health}}'`).
It asks labkit's one probe (labkit/client/probe.py), as `labkit lab` and nb.doctor() do.
"""

import sys

from labkit.client.probe import broker_info, port_open
from labkit.errors import KafkaError

TIMEOUT_S = 3.0


def main(argv: list[str]) -> int:
    address = argv[1] if len(argv) > 1 else "127.0.0.1:9092"
    if not port_open(address, TIMEOUT_S):
        print(f"nothing listens at {address}", file=sys.stderr)
        return 1
    try:
        broker_info([address], TIMEOUT_S, client_id="labkit-healthcheck")
    except KafkaError as exc:
        print(f"no answer from a broker at {address}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
