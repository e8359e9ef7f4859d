"""websockets (asyncio) echo and broadcast server: ``python websockets_server.py PORT``."""

import asyncio
import sys

from websockets.asyncio.server import broadcast, serve

room = set()


async def handler(ws):
    if ws.request.path == "/broadcast":
        room.add(ws)
        try:
            async for message in ws:
                broadcast(room, message)
        finally:
            room.discard(ws)
    else:
        async for message in ws:
            await ws.send(message)


async def main(port):
    async with serve(handler, "127.0.0.1", port, compression=None, max_size=None):
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
