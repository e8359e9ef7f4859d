"""A chat room: many browsers, one room.  ``python examples/chat.py [--port 8787]
[--redis URL]``, then open http://127.0.0.1:8787/ in a few tabs.

With ``--redis redis://127.0.0.1:6379/0``, several processes (other ports) share the room.
A slow client never holds the others up: ``send()`` only queues, per socket; a socket
whose ``send()`` raises (closed, or dropped for a full queue) leaves the room.
"""

import argparse
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cfws_sync import RedisBackplane, Response, Room, WebSocketPair, websocket_app
from cfws_sync.cli import run

PAGE = (Path(__file__).parent / "chat.html").read_text(encoding="utf-8")


class Chat(Room):
    def web_socket_message(self, ws, message):
        if isinstance(message, str):
            self.announce("message", ws, text=message[:2000])

    def web_socket_close(self, ws, *close_details):
        self.announce("leave", ws)

    def announce(self, kind, ws, **fields):
        name, count = ws.deserialize_attachment()["name"], len(self.get_web_sockets())
        self.broadcast(json.dumps(dict(type=kind, name=name, count=count, **fields)))


chat = Chat("chat")


def handle(request):
    url = urlsplit(request.url)
    if url.path == "/":
        return Response(PAGE, headers={"Content-Type": "text/html; charset=utf-8"})
    if request.headers.get("Upgrade") != "websocket":
        return Response("Expected Upgrade: websocket", status=426)
    name = (parse_qs(url.query).get("name") or [""])[0].strip()[:32] or "anonymous"
    client, server = WebSocketPair()
    server.serialize_attachment({"name": name})
    chat.accept_web_socket(server)
    chat.announce("join", server)
    return Response(None, status=101, web_socket=client)


app = websocket_app(handle)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--redis", metavar="URL")
    options, rest = parser.parse_known_args()
    if options.redis:
        chat = Chat("chat", backplane=RedisBackplane(options.redis))
    run(app, "examples/chat.py", rest)
