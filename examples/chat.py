"""A chat room: many browsers, one room.  ``python examples/chat.py [--port 8787]``,
then open http://127.0.0.1:8787/ in a few tabs.

``Room`` is a stand-in with the part of ``cfws_sync.Room``'s API used here, so that
``class Chat(cfws_sync.Room)`` works the same.  A slow client never holds the others up:
``send()`` only queues, per socket; a socket whose ``send()`` raises (closed, or dropped
for a full queue) leaves the room.
"""

import json
import threading
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cfws_sync import Response, WebSocketPair, websocket_app
from cfws_sync.cli import run

PAGE = (Path(__file__).parent / "chat.html").read_text(encoding="utf-8")


class Room:
    def __init__(self):
        self._sockets, self._lock = set(), threading.Lock()

    def accept_web_socket(self, ws):
        ws.add_event_listener("message", lambda event: self.web_socket_message(ws, event.data))
        ws.add_event_listener("close", lambda event: self._leave(ws))
        ws.add_event_listener("error", lambda event: self._leave(ws))
        ws.accept()
        with self._lock:
            self._sockets.add(ws)

    def get_web_sockets(self):
        with self._lock:
            return list(self._sockets)

    def broadcast(self, data):
        for ws in self.get_web_sockets():
            try:
                ws.send(data)  # queues and returns at once
            except Exception:
                self._leave(ws)

    def _leave(self, ws):
        with self._lock:
            was_in = ws in self._sockets
            self._sockets.discard(ws)
        if was_in:
            self.web_socket_close(ws)


class Chat(Room):
    def web_socket_message(self, ws, message):
        if isinstance(message, str):
            self.announce("message", ws, text=message[:2000])

    def web_socket_close(self, ws, *close_details):
        self.announce("leave", ws)

    def announce(self, kind, ws, **fields):
        name, count = ws.deserialize_attachment()["name"], len(self.get_web_sockets())
        self.broadcast(json.dumps(dict(type=kind, name=name, count=count, **fields)))


chat = Chat()


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
    run(app, "examples/chat.py")
