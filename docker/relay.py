#!/usr/bin/env python3
"""Make the broker service reachable as localhost:9092 inside the lab container.

    labkit-relay LISTEN_PORT TARGET_HOST:TARGET_PORT      e.g. labkit-relay 9092 broker:9092

Course code written for a local Kafka says ``bootstrap_servers=['localhost:9092']``;
in docker-compose's lab the broker is another container (``broker:9092``). This
relay listens on 127.0.0.1:LISTEN_PORT inside the lab container only and copies
bytes both ways to the target, opening one upstream connection per client
connection and resolving the target's name each time, so it keeps working when the
broker container restarts (ZeroMQ clients reconnect by themselves). It never
listens on a published interface. Started by the entrypoint when LABKIT_RELAY is set.
"""

import asyncio
import sys

CHUNK = 1 << 16


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


def _handler(host: str, port: int):
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()  # broker not there (yet): the client retries
            return
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    return handle


async def _serve(listen_port: int, host: str, port: int) -> None:
    server = await asyncio.start_server(_handler(host, port), "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


def main(argv: list[str]) -> int:
    if len(argv) != 3 or ":" not in argv[2]:
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    host, _, port = argv[2].rpartition(":")
    try:
        asyncio.run(_serve(int(argv[1]), host, int(port)))
    except OSError as exc:
        print(
            f"labkit-relay: cannot listen on 127.0.0.1:{argv[1]} ({exc}); "
            f"localhost:{argv[1]} will not reach {argv[2]} in this container",
            file=sys.stderr,
        )
        return 1
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
