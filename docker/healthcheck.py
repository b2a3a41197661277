#!/usr/bin/env python3
"""Docker healthcheck: does a labkit broker answer an api_versions request?

    labkit-healthcheck [HOST:PORT]        (default 127.0.0.1:9092)

Exit status 0 when the broker answers without error within 3 s, else 1 with the
reason on stderr (Docker keeps it: `docker inspect --format '{{json .State.Health}}'`).
It speaks the wire envelope directly (one DEALER socket, docs/wire.md), so it
depends on nothing but pyzmq and labkit.protocol.
"""

import sys

import zmq

from labkit.errors import KafkaError
from labkit.protocol.frames import build_request, parse_response

TIMEOUT_MS = 3000


def main(argv: list[str]) -> int:
    address = argv[1] if len(argv) > 1 else "127.0.0.1:9092"
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect("tcp://" + address)
        sock.send_multipart(build_request(b"health", "api_versions", {}))
        if not sock.poll(TIMEOUT_MS):
            print(f"no answer from a broker at {address} within {TIMEOUT_MS} ms", file=sys.stderr)
            return 1
        _, header, _ = parse_response(sock.recv_multipart())
    except (zmq.ZMQError, KafkaError) as exc:
        print(f"broker at {address}: {exc}", file=sys.stderr)
        return 1
    finally:
        sock.close()
    if header.get("error") != 0:
        print(f"broker at {address} answered with an error: {header}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
