"""Small WSGI apps the server tests run (imported by server processes).

``echo`` is the plainest echo server (``echo_apart`` the same, ending the request at the
handshake); ``context_echo`` answers from a context variable its handler set.
``matrix`` serves every behaviour the matrix and leak tests need, selected by path, in
the manner of a test Worker:

* ``/ws/<behaviour>?id=<id>&...`` upgrades (``echo``, ``wsclose``, ``flood``,
  ``ret_accepted``, ``ret_server``, ``ret_newws``); ``/plain/<behaviour>`` answers plain
  HTTP (``ret_ws``, ``hello``).
* A path prefix picks the app options: ``/legacy`` (compatibility date 2025-06-01),
  ``/short`` (close_timeout 0.5 s), ``/origin`` (allowed_origins), ``/nocomp``
  (compression off), ``/subp`` (subprotocols), ``/ka`` (keepalive pings), ``/mq``
  (a small max_queue), ``/small`` (max_message_size 1 KiB).
* What the listeners saw is logged per ``id`` and served as JSON at ``/__log?id=``;
  ``/__stats`` reports the process's pid, threads, live greenlets and open fds.
"""

from __future__ import annotations

import contextvars
import gc
import json
import os
import threading
from typing import Any, Callable, Optional
from urllib.parse import parse_qs, urlsplit

from cfws_sync import Blob, Response, WebSocketPair, websocket_app

# -- the plain echo -------------------------------------------------------------------------


def echo_handler(request):
    if request.headers.get("Upgrade") != "websocket":
        return Response("Expected Upgrade: websocket", status=426)
    client, server = WebSocketPair()
    server.accept()
    server.add_event_listener("message", lambda event: server.send(event.data))
    return Response(None, status=101, web_socket=client)


echo = websocket_app(echo_handler)
#: The same, ending the WSGI request at the handshake where the server allows it.
echo_apart = websocket_app(echo_handler, end_request_at_handshake=True)

#: Set by the handler; the listeners answer with what they see of it.
REQUEST_PATH: "contextvars.ContextVar[str]" = contextvars.ContextVar("request_path")


def context_echo_handler(request):
    """Echo each message behind the request path the handler put in a context variable."""
    REQUEST_PATH.set(urlsplit(request.url).path)
    client, server = WebSocketPair()
    server.accept()
    server.add_event_listener(
        "message", lambda event: server.send(REQUEST_PATH.get("unset") + " " + event.data))
    return Response(None, status=101, web_socket=client)


context_echo = websocket_app(context_echo_handler, end_request_at_handshake=True)

# -- the matrix app -------------------------------------------------------------------------

LOGS: dict[str, list[dict[str, Any]]] = {}
_logs_lock = threading.Lock()


def log_for(scenario: str) -> list[dict[str, Any]]:
    with _logs_lock:
        return LOGS.setdefault(scenario, [])


def attempt(log: list, label: str, fn: Callable[[], Any]) -> Any:
    """Call ``fn``; log whether it returned or raised (type and message)."""
    try:
        result = fn()
    except Exception as exc:  # recorded for the test to assert on
        log.append({"call": label, "threw": type(exc).__name__, "message": str(exc)})
        return None
    log.append({"call": label, "ok": True})
    return result


def describe(data: Any) -> dict[str, Any]:
    if isinstance(data, str):
        entry: dict[str, Any] = {"type": "str", "len": len(data)}
        if len(data) <= 200:
            entry["text"] = data
        return entry
    if isinstance(data, Blob):
        return {"type": "Blob", "size": data.size}
    entry = {"type": type(data).__name__, "len": len(data)}
    if len(data) <= 64:
        entry["hex"] = bytes(data).hex()
    return entry


def code_reason(spec: Optional[str]) -> tuple:
    """``"1000:bye"`` -> ``(1000, "bye")``; ``"1000"`` -> ``(1000,)``; ``"none"`` -> ``()``."""
    if not spec or spec == "none":
        return ()
    code, colon, reason = spec.partition(":")
    return (int(code), reason) if colon else (int(code),)


def later(seconds: float, fn: Callable[[], Any]) -> None:
    timer = threading.Timer(seconds, fn)
    timer.daemon = True
    timer.start()


def instrument(ws, log: list, on_message=None, on_close=None) -> None:
    """Log every event ``ws`` dispatches, with its ready_state at dispatch."""

    def message(event):
        log.append(dict(ev="message", rs=ws.ready_state, **describe(event.data)))
        if on_message is not None:
            on_message(event)

    def close(event):
        log.append(dict(ev="close", rs=ws.ready_state, code=event.code, reason=event.reason,
                        wasClean=event.was_clean))
        if on_close is not None:
            on_close(event)

    def error(event):
        log.append(dict(ev="error", rs=ws.ready_state, message=event.message))

    ws.add_event_listener("message", message)
    ws.add_event_listener("close", close)
    ws.add_event_listener("error", error)


def ws_echo(request, q: dict, log: list) -> Response:
    """Echo, with the knobs the scenarios need (all optional)."""
    client, server = WebSocketPair()
    if "bt" in q:
        server.binary_type = q["bt"]

    def on_message(event):
        data = event.data
        if q.get("closeOnMessage"):
            args = code_reason(q["closeOnMessage"])
            attempt(log, "close%r" % (args,), lambda: server.close(*args))
            return
        if q.get("echo") == "0":
            return
        if q.get("sizeOnly") == "1":
            data = "size:%d" % (data.size if isinstance(data, Blob) else len(data))
        elif isinstance(data, Blob):
            data = data.bytes()
        attempt(log, "send(echo)", lambda: server.send(data))

    def on_close(event):
        if "sendInHandler" in q:
            attempt(log, "send(%r) in handler" % q["sendInHandler"],
                    lambda: server.send(q["sendInHandler"]))
        if "closeInHandler" in q:
            args = code_reason(q["closeInHandler"])
            attempt(log, "close%r in handler" % (args,), lambda: server.close(*args))
            log.append({"note": "rs after close in handler", "rs": server.ready_state})
        if "closeLater" in q:
            delay, _, spec = q["closeLater"].partition(";")

            def close_later():
                if "sendLater" in q:
                    attempt(log, "send later", lambda: server.send(q["sendLater"]))
                args = code_reason(spec)
                attempt(log, "close%r later" % (args,), lambda: server.close(*args))
                log.append({"note": "rs after close later", "rs": server.ready_state})

            later(int(delay) / 1000, close_later)
        if "sendAfter" in q:
            later(0.05, lambda: attempt(log, "send after close event",
                                        lambda: server.send("late")))

    instrument(server, log, on_message, on_close)
    if "half" in q:
        server.accept(allow_half_open=q["half"] == "1")
    else:
        server.accept()
    if "greet" in q:
        server.send(q["greet"])
    headers = {"Sec-WebSocket-Protocol": q["proto"]} if "proto" in q else None
    return Response(None, status=101, web_socket=client, headers=headers)


def ws_wsclose(request, q: dict, log: list) -> Response:
    """The app closes right after accept (RULES C1–C3)."""
    client, server = WebSocketPair()
    instrument(server, log)
    server.accept()
    if "before" in q:
        server.send(q["before"])
    args = code_reason(q.get("close"))
    attempt(log, "close%r" % (args,), lambda: server.close(*args))
    log.append({"note": "rs after close", "rs": server.ready_state})
    attempt(log, "send after close", lambda: server.send("after close"))
    attempt(log, "second close", lambda: server.close(1000, "second"))
    return Response(None, status=101, web_socket=client)


def ws_flood(request, q: dict, log: list) -> Response:
    """On any message, send ``n`` binary messages of ``size`` bytes at once."""
    client, server = WebSocketPair()
    size, count = int(q.get("size", 1 << 20)), int(q.get("n", 64))

    def on_message(event):
        chunk = b"\x00" * size
        for _ in range(count):
            if attempt(log, "flood send", lambda: server.send(chunk) or True) is None:
                break
        log.append({"note": "flood done"})

    instrument(server, log, on_message)
    server.accept()
    return Response(None, status=101, web_socket=client)


def ws_ret_accepted(request, q: dict, log: list) -> Response:
    """J4: return an end that was accept()ed."""
    client, server = WebSocketPair()
    client.accept()
    return Response(None, status=101, web_socket=client)


def ws_ret_server(request, q: dict, log: list) -> Response:
    """J4: accept the server end and return it."""
    client, server = WebSocketPair()
    server.accept()
    return Response(None, status=101, web_socket=server)


def ws_ret_newws(request, q: dict, log: list) -> Response:
    """J5: return a ``WebSocket(url)`` client."""
    from cfws_sync import WebSocket

    ws = WebSocket(q["backend"])
    instrument(ws, log)
    return Response(None, status=101, web_socket=ws)


def ws_ret_fetched(request, q: dict, log: list) -> Response:
    """K13 (not supported): return the socket of a fetch() upgrade."""
    from cfws_sync import fetch

    return Response(None, status=101,
                    web_socket=fetch(q["backend"], headers={"Upgrade": "websocket"}).web_socket)


def plain_ret_ws(request, q: dict, log: list) -> Response:
    """J2: a socket in answer to a request without Upgrade."""
    client, server = WebSocketPair()
    server.accept()
    return Response(None, status=101, web_socket=client)


def plain_hello(request, q: dict, log: list) -> Response:
    return Response("hello", headers={"X-Hello": "1"})


BEHAVIOURS = {
    ("ws", "echo"): ws_echo,
    ("ws", "wsclose"): ws_wsclose,
    ("ws", "flood"): ws_flood,
    ("ws", "ret_accepted"): ws_ret_accepted,
    ("ws", "ret_server"): ws_ret_server,
    ("ws", "ret_newws"): ws_ret_newws,
    ("ws", "ret_fetched"): ws_ret_fetched,
    ("plain", "ret_ws"): plain_ret_ws,
    ("plain", "hello"): plain_hello,
}


def matrix_handler(request) -> Response:
    url = urlsplit(request.url)
    q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
    log = log_for(q.get("id", "-"))
    parts = url.path.strip("/").split("/")
    log.append({"note": "request", "path": url.path,
                "upgrade": request.headers.get("Upgrade")})
    behaviour = BEHAVIOURS.get(tuple(parts[-2:]))  # type: ignore[arg-type]
    if behaviour is None:
        return Response("no such behaviour: %s" % url.path, status=404)
    if parts[-2] == "ws" and request.headers.get("Upgrade") != "websocket":
        return Response("Expected Upgrade: websocket", status=426)  # J1
    return behaviour(request, q, log)


OPTIONS: dict[str, dict[str, Any]] = {
    "": {},
    "legacy": {"compatibility_date": "2025-06-01"},
    "short": {"close_timeout": 0.5},
    "origin": {"allowed_origins": ["https://good.example"]},
    "nocomp": {"compression": False},
    "subp": {"subprotocols": ["chat", "v2"]},
    "ka": {"ping_interval": 0.2, "ping_timeout": 1.0},
    "mq": {"max_queue": 256 << 10},
    "small": {"max_message_size": 1024},
}
_APPS = {prefix: websocket_app(matrix_handler, **options) for prefix, options in OPTIONS.items()}


def stats() -> dict[str, Any]:
    """This process's pid, threads (and how many are a server's worker pool), live
    greenlets and open fds."""
    try:
        import greenlet

        live = sum(1 for obj in gc.get_objects()
                   if isinstance(obj, greenlet.greenlet) and not obj.dead)
    except ImportError:  # pragma: no cover
        live = 0
    pool = sum(1 for t in threading.enumerate() if t.name.startswith("ThreadPoolExecutor"))
    return {"pid": os.getpid(), "threads": len(os.listdir("/proc/self/task")),
            "pool_threads": pool, "greenlets": live, "fds": len(os.listdir("/proc/self/fd"))}


def _json(start_response, data: Any) -> list[bytes]:
    body = json.dumps(data).encode("utf-8")
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]


def matrix(environ, start_response):
    """Route by path: the log and stats endpoints, else the app of the path's prefix."""
    path = environ.get("PATH_INFO", "")
    if path == "/__log":
        q = parse_qs(environ.get("QUERY_STRING", ""))
        return _json(start_response, log_for(q.get("id", ["-"])[-1]))
    if path == "/__stats":
        return _json(start_response, stats())
    prefix = path.strip("/").split("/")[0]
    app = _APPS.get(prefix if prefix in _APPS else "")
    return app(environ, start_response)  # type: ignore[misc]
