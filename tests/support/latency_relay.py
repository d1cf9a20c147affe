"""A TCP relay that holds every chunk for a one-way delay with jitter, in order: a far link for the
network-fault suite, where this kernel has no netem. Run in the near host's namespace:

    python latency_relay.py LISTEN_PORT TARGET_HOST TARGET_PORT DELAY_MS JITTER_MS

It listens on 127.0.0.1:LISTEN_PORT; each direction of each connection is delayed by DELAY_MS ± JITTER_MS
(uniform), never reordered (a chunk leaves no earlier than the one before it, as TCP would deliver it).
"""

from __future__ import annotations

import asyncio
import random
import sys


async def pump(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float, jitter: float
) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            await asyncio.sleep(max(0.0, due - loop.time()))
            if not data:
                writer.close()
                return
            writer.write(data)
            await writer.drain()

    sender = asyncio.create_task(send())
    last = 0.0
    try:
        while True:
            data = await reader.read(65536)
            last = max(last, loop.time() + delay + random.uniform(-jitter, jitter))
            queue.put_nowait((last, data))
            if not data:
                break
        await sender
    except (ConnectionError, OSError):
        sender.cancel()
        writer.close()


async def main(listen_port: int, host: str, port: int, delay_ms: float, jitter_ms: float) -> None:
    delay, jitter = delay_ms / 1000, jitter_ms / 1000

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            upstream_r, upstream_w = await asyncio.open_connection(host, port)
        except OSError:
            client_w.close()
            return
        await asyncio.gather(
            pump(client_r, upstream_w, delay, jitter), pump(upstream_r, client_w, delay, jitter)
        )

    server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    args = sys.argv[1:]
    asyncio.run(main(int(args[0]), args[1], int(args[2]), float(args[3]), float(args[4])))
