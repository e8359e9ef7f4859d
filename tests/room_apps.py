"""The WSGI app the room tests run in server processes: one ``Room`` named by the test.

``ROOM_REDIS_URL`` in the environment gives the room a :class:`RedisBackplane`.

* ``/room?tags=a,b&id=X`` upgrades and accepts the socket into the room with those tags,
  keeps ``{"id": X, "pid": ...}`` as its attachment and greets it with
  ``{"hello": X, "pid": ...}``.  ``/slow/room?...`` is the same with a 64 KiB
  ``max_queue``.
* Text messages are JSON commands, answered as JSON: ``broadcast`` (``data``, ``tag``,
  ``notme``), ``count`` (``tag``), ``tags``, ``attachment``, ``set_attachment``,
  ``stats``, ``raise`` (the handler raises).  The room auto-answers ``"ping"`` with
  ``"pong"`` without running a handler.
* ``/status`` answers ``{"pid", "connected", "sockets", "handled"}``.
"""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Optional
from urllib.parse import parse_qs

from cfws_sync import RedisBackplane, Response, Room, WebSocketPair, websocket_app

REDIS_URL = os.environ.get("ROOM_REDIS_URL")
ROOM_NAME = os.environ.get("ROOM_NAME", "tests")
PID = os.getpid()


class CommandRoom(Room):
    """Answers the commands above; announces who left."""

    def __init__(self, name: str, backplane: Optional[RedisBackplane]) -> None:
        super().__init__(name, backplane)
        self.handled = 0
        self._count_lock = threading.Lock()

    def web_socket_message(self, ws: Any, message: Any) -> None:
        with self._count_lock:
            self.handled += 1
        if not isinstance(message, str):
            ws.send(json.dumps({"binary": len(message)}))
            return
        command = json.loads(message)
        op = command["op"]
        if op == "broadcast":
            data = command["data"]
            if command.get("binary"):
                data = data.encode("utf-8")
            sent = self.broadcast(data, tag=command.get("tag"),
                                  exclude=ws if command.get("notme") else None)
            if command.get("ack"):
                ws.send(json.dumps({"sent": sent}))
        elif op == "count":
            ws.send(json.dumps({"count": len(self.get_web_sockets(command.get("tag")))}))
        elif op == "tags":
            ws.send(json.dumps({"tags": self.get_tags(ws)}))
        elif op == "set_attachment":
            ws.serialize_attachment(command["value"])
            ws.send(json.dumps({"ok": True}))
        elif op == "attachment":
            ws.send(json.dumps({"attachment": ws.deserialize_attachment()}))
        elif op == "stats":
            ws.send(json.dumps({"handled": self.handled}))
        elif op == "raise":
            raise RuntimeError("the handler failed on purpose")

    def web_socket_close(self, ws: Any, code: int, reason: str, was_clean: bool) -> None:
        self.broadcast(json.dumps({"left": ws.deserialize_attachment()["id"], "code": code}))


backplane = RedisBackplane(REDIS_URL, reconnect_delay=0.05, max_reconnect_delay=0.5) \
    if REDIS_URL else None
room = CommandRoom(ROOM_NAME, backplane)
room.set_web_socket_auto_response("ping", "pong")


def handle(request: Any) -> Response:
    query = {k: v[-1] for k, v in parse_qs(request.url.partition("?")[2]).items()}
    if request.url.split("?")[0].endswith("/status"):
        return Response(json.dumps({
            "pid": PID, "sockets": len(room.get_web_sockets()), "handled": room.handled,
            "connected": backplane.connected if backplane is not None else None,
        }), headers={"Content-Type": "application/json"})
    if request.headers.get("Upgrade") != "websocket":
        return Response("Expected Upgrade: websocket", status=426)
    client, server = WebSocketPair()
    tags = [t for t in query.get("tags", "").split(",") if t]
    ident = query.get("id", "")
    room.accept_web_socket(server, tags=tags)
    server.serialize_attachment({"id": ident, "pid": PID})
    server.send(json.dumps({"hello": ident, "pid": PID}))
    return Response(None, status=101, web_socket=client)


_normal = websocket_app(handle)
_slow = websocket_app(handle, max_queue=64 * 1024)


def app(environ: dict[str, Any], start_response: Any) -> Any:
    """Routes ``/slow/...`` to the app with the small send queue."""
    if environ.get("PATH_INFO", "").startswith("/slow/"):
        return _slow(environ, start_response)
    return _normal(environ, start_response)
