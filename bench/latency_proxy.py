"""A TCP proxy that adds a round trip of latency, for the sync benchmark.

``python bench/latency_proxy.py LISTEN_PORT TARGET_PORT RTT_MS`` listens on
127.0.0.1:LISTEN_PORT and forwards each connection to 127.0.0.1:TARGET_PORT,
holding every chunk half the round trip in each direction. Each direction is
a queue of (arrival, bytes): a chunk is written at its arrival plus the delay,
in order, so the delay adds latency without capping throughput (as a long
link does, not a slow one). A new connection costs one round trip before any
byte passes (TCP's handshake). For machines without ``tc netem``.
"""

from __future__ import annotations

import asyncio
import sys
import time

CHUNK = 1 << 16


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               delay: float) -> None:
    """Copy ``reader`` to ``writer``, each chunk ``delay`` seconds after it came."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        try:
            while data := await reader.read(CHUNK):
                queue.put_nowait((time.monotonic() + delay, data))
        except (ConnectionError, OSError):
            pass
        queue.put_nowait((time.monotonic() + delay, b""))

    async def write() -> None:
        try:
            while True:
                due, data = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    await asyncio.gather(read(), write())


def main() -> None:
    listen, target, rtt_ms = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    half = rtt_ms / 2000

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(2 * half)  # the handshake's round trip
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pump(reader, up_writer, half), pump(up_reader, writer, half))

    async def serve() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", listen, backlog=1024)
        print("ready", flush=True)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


if __name__ == "__main__":
    main()
