"""The Worker's plain-HTTP behaviours (``/plain/<behaviour>``), ported line by line.

They finish before responding, as the ``PLAIN_BEHAVIOURS`` of
``shared/oracle/workers/worker.js`` do.  Where the Worker probes something JavaScript-only,
the Python counterpart is logged under the same label (each case says which).
"""

from __future__ import annotations

import json
from typing import Any, Callable

import cfws_sync
from cfws_sync import (
    CloseEvent, ErrorEvent, MessageEvent, Response, WebSocket, WebSocketPair,
)

from .jsport import (
    Deferred, Log, Scope, attempt, err_info, fmt_call, js_json, js_number, js_typeof,
    parse_code_reason, sleep,
)
from .worker_ws import Behaviour, Url, _half_open_options, _split_delay, instrument


def fresh() -> tuple[WebSocket, WebSocket]:
    client, server = WebSocketPair()
    return client, server


def api(request: Any, url: Url, log: Log, scope: Scope) -> str:
    """Synchronous API probing on fresh pairs (async in the Worker, with no await).

    Python counterparts: ``Object.keys(pair)`` lists the indices the pair yields;
    ``instanceof EventTarget`` asks for ``add_event_listener``; ``close(1000.9)``,
    ``close("1000")``, ``close(NaN)`` pass the float or str itself (SPEC §8.5), ``null``
    and ``undefined`` are None; the ``CloseEvent`` init dict is passed as keywords.
    """
    client, server = fresh()
    log.append({
        "note": "fresh pair",
        "rs": server.ready_state,
        "url": server.url,
        "protocol": server.protocol,
        "extensions": server.extensions,
        "binaryType": server.binary_type,
        "pairKeys": [str(i) for i, _ in enumerate(WebSocketPair())],
        "isWebSocket": isinstance(server, WebSocket),
        "isEventTarget": callable(getattr(server, "add_event_listener", None)),
    })
    log.append({
        "note": "constants",
        "CONNECTING": WebSocket.CONNECTING,
        "OPEN": WebSocket.OPEN,
        "CLOSING": WebSocket.CLOSING,
        "CLOSED": WebSocket.CLOSED,
        "READY_STATE_OPEN": WebSocket.READY_STATE_OPEN,
        "instOPEN": server.OPEN,
    })
    attempt(log, 'server.send("x") before accept', lambda: server.send("x"))
    attempt(log, "server.close(1000) before accept", lambda: server.close(1000))
    log.append({"note": "rs after failed close", "rs": server.ready_state})
    attempt(log, "server.accept()", lambda: server.accept())
    attempt(log, "server.accept() again", lambda: server.accept())
    attempt(log, "server.accept({allowHalfOpen:true}) third time",
            lambda: server.accept({"allowHalfOpen": True}))
    for value in ("foo", "arraybuffer", "BLOB", "blob"):
        attempt(log, "server.binaryType = %s" % js_json(value),
                lambda: setattr(server, "binary_type", value))
        log.append({"note": "binaryType after %s" % js_json(value), "value": server.binary_type})

    # Close code validation (a fresh accepted pair each time so state doesn't interfere).
    codes = [999, 1000, 1001, 1003, 1004, 1005, 1006, 1007, 1011, 1012, 1014, 1015, 1016,
             2999, 3000, 4999, 5000, 0, -1, 65536 + 1000]
    for code in codes:
        client, server = fresh()
        server.accept()
        attempt(log, "close(%d)" % code, lambda: server.close(code))
    # Close code validation happens before the accept() check?
    client, server = fresh()
    attempt(log, "close(999) before accept", lambda: server.close(999))
    # Non-integer / odd codes.
    odd: list[tuple[str, list[Any]]] = [
        ("close(1000.9)", [1000.9]),
        ('close("1000")', ["1000"]),
        ('close("abc")', ["abc"]),
        ("close(NaN)", [float("nan")]),
        ("close(null)", [None]),
        ("close(undefined)", [None]),
        ("close()", []),
        ('close(undefined, "why")', [None, "why"]),
        ("close(1000, undefined)", [1000, None]),
        ("close(1000, null)", [1000, None]),
        ("close(1000, 123)", [1000, 123]),
        ('close(1000, "x".repeat(123))', [1000, "x" * 123]),
        ('close(1000, "x".repeat(124))', [1000, "x" * 124]),
        ('close(1000, "é".repeat(61)) (122 bytes)', [1000, "é" * 61]),
        ('close(1000, "é".repeat(62)) (124 bytes)', [1000, "é" * 62]),
        ('close(4000, "\\uD800") (lone surrogate)', [4000, "\ud800"]),
    ]
    for label, args in odd:
        client, server = fresh()
        server.accept()
        attempt(log, label, lambda: server.close(*args))
    # close() twice, send() after close.
    client, server = fresh()
    server.accept()
    attempt(log, 'close(1000,"a")', lambda: server.close(1000, "a"))
    log.append({"note": "rs after close()", "rs": server.ready_state})
    attempt(log, 'close(1000,"b") second', lambda: server.close(1000, "b"))
    attempt(log, "close(999) after close (validation before state?)", lambda: server.close(999))
    attempt(log, 'send("x") after close()', lambda: server.send("x"))
    # Accept the client end after the server end closed (internal pair).
    attempt(log, "client.accept() after server.close()", lambda: client.accept())

    # Response constructor rules.
    client, server = fresh()
    attempt(log, "new Response(null, {status:101})", lambda: Response(None, status=101).status)
    attempt(log, "new Response(null, {status:200, webSocket: client})",
            lambda: Response(None, status=200, web_socket=client).status)
    attempt(log, "new Response(null, {status:101, webSocket: client}).webSocket === client",
            lambda: Response(None, status=101, web_socket=client).web_socket is client)
    attempt(log, "new Response(null, {status:101, webSocket: null}).status",
            lambda: Response(None, status=101, web_socket=None).status)
    attempt(log, "Response.clone() of a 101",
            lambda: Response(None, status=101, web_socket=client).clone())

    # `new WebSocket()` URL/protocol validation (synchronous parts).
    for label, make in [
        ('new WebSocket("http://127.0.0.1:1/")', lambda: WebSocket("http://127.0.0.1:1/")),
        ('new WebSocket("ws://127.0.0.1:1/#frag")', lambda: WebSocket("ws://127.0.0.1:1/#frag")),
        ('new WebSocket("not a url")', lambda: WebSocket("not a url")),
        ('new WebSocket("/relative")', lambda: WebSocket("/relative")),
        ('new WebSocket("ws://127.0.0.1:1/", "bad proto")',
         lambda: WebSocket("ws://127.0.0.1:1/", "bad proto")),
        ('new WebSocket("ws://127.0.0.1:1/", ["a","a"])',
         lambda: WebSocket("ws://127.0.0.1:1/", ["a", "a"])),
        ('new WebSocket("ws://127.0.0.1:1/", [])', lambda: WebSocket("ws://127.0.0.1:1/", [])),
        ('new WebSocket("ws://127.0.0.1:1/", "")', lambda: WebSocket("ws://127.0.0.1:1/", "")),
        ('new WebSocket("ws://127.0.0.1:1/", ["a", ""])',
         lambda: WebSocket("ws://127.0.0.1:1/", ["a", ""])),
    ]:
        attempt(log, label, _probe_new_websocket(make))
    # CloseEvent constructor.
    attempt(log, 'new CloseEvent("close")', lambda: _close_fields(CloseEvent("close")))
    attempt(log, 'new CloseEvent("close", {code:4000, reason:"r", wasClean:true})',
            lambda: _close_fields(CloseEvent("close", code=4000, reason="r", wasClean=True)))
    attempt(log, "typeof MessageEvent / ErrorEvent",
            lambda: [js_typeof(MessageEvent), js_typeof(ErrorEvent)])
    return "api done"


def _probe_new_websocket(make: Callable[[], WebSocket]) -> Callable[[], dict[str, Any]]:
    def probe() -> dict[str, Any]:
        ws = make()
        result: dict[str, Any] = {"rs": ws.ready_state, "url": ws.url, "protocol": ws.protocol,
                                  "extensions": ws.extensions, "binaryType": ws.binary_type}
        try:
            ws.close()
        except Exception as exc:
            result["closeThrew"] = err_info(exc)
        return result
    return probe


def _close_fields(event: CloseEvent) -> dict[str, Any]:
    return {"code": event.code, "reason": event.reason, "wasClean": event.was_clean}


def internal(request: Any, url: Url, log: Log, scope: Scope) -> str:
    """Both ends of a WebSocketPair inside the Worker (async)."""
    q = url.search_params
    mode = q.get("mode") or "both"
    client, server = WebSocketPair()
    instrument(client, log, "client")
    instrument(server, log, "server")
    if mode == "both":
        server.accept()
        client.accept()
        server.send("s->c text")
        server.send(bytearray([1, 2, 3]))
        client.send("c->s text")
        sleep(100)
        attempt(log, 'client.close(4001, "client bye")', lambda: client.close(4001, "client bye"))
        log.append({"note": "rs right after client.close()", "client": client.ready_state,
                    "server": server.ready_state})
        sleep(200)
        log.append({"note": "final rs", "client": client.ready_state,
                    "server": server.ready_state})
    elif mode == "half":
        server.accept({"allowHalfOpen": True})
        client.accept()
        client.close(1000, "c")
        sleep(100)
        log.append({"note": "rs after client close, server half-open",
                    "client": client.ready_state, "server": server.ready_state})
        attempt(log, 'server.send("after peer close")', lambda: server.send("after peer close"))
        attempt(log, 'server.close(1000, "s")', lambda: server.close(1000, "s"))
        sleep(100)
        log.append({"note": "final rs", "client": client.ready_state,
                    "server": server.ready_state})
    elif mode == "noclientaccept":
        server.accept()
        attempt(log, 'server.send("queued") (client not accepted)',
                lambda: server.send("queued"))
        sleep(300)
        log.append({"note": "after 300ms without client.accept()",
                    "client": client.ready_state, "server": server.ready_state})
        attempt(log, "client.accept() (late)", lambda: client.accept())
        sleep(200)
        log.append({"note": "final rs", "client": client.ready_state,
                    "server": server.ready_state})
    elif mode == "neitheraccepted":
        attempt(log, 'server.send("x")', lambda: server.send("x"))
        attempt(log, 'client.send("x")', lambda: client.send("x"))
    elif mode == "closebeforepeeraccept":
        server.accept()
        attempt(log, 'server.close(1000, "early")', lambda: server.close(1000, "early"))
        sleep(100)
        attempt(log, "client.accept() (late)", lambda: client.accept())
        sleep(200)
        log.append({"note": "final rs", "client": client.ready_state,
                    "server": server.ready_state})
    return "internal done"


def client_ws(request: Any, url: Url, log: Log, scope: Scope) -> str:
    """Worker as client via ``new WebSocket(url)`` (async)."""
    q = url.search_params
    backend = q.get("backend") or ""
    if q.has("protocols"):
        ws = WebSocket(backend, json.loads(q.get("protocols") or "null"))
    else:
        ws = WebSocket(backend)
    log.append({"note": "constructed", "rs": ws.ready_state, "url": ws.url,
                "protocol": ws.protocol, "extensions": ws.extensions,
                "binaryType": ws.binary_type})
    finished = Deferred()

    def on_message(event: Any, n: int) -> None:
        if q.has("closeOnMessage") and n == 1:
            args = parse_code_reason(q.get("closeOnMessage"))
            attempt(log, fmt_call("client.close", args), lambda: ws.close(*args))
            log.append({"note": "rs after close()", "rs": ws.ready_state})

    def on_close(event: Any) -> None:
        if q.has("closeInHandler"):
            args = parse_code_reason(q.get("closeInHandler"))
            attempt(log, fmt_call("client.close", args) + " in close handler",
                    lambda: ws.close(*args))
        scope.set_timeout(lambda: finished.done("close"), 300)

    def on_error(event: Any) -> None:
        scope.set_timeout(lambda: finished.done("error"), 300)

    instrument(ws, log, "client", on_message=on_message, on_close=on_close, on_error=on_error)

    def on_open(event: Any) -> None:
        log.append({"note": "on open", "protocol": ws.protocol, "extensions": ws.extensions,
                    "url": ws.url})
        attempt(log, "client.accept() after open", lambda: ws.accept())
        attempt(log, 'client.send("hello from worker")', lambda: ws.send("hello from worker"))
        if q.has("sendBinary"):
            attempt(log, "client.send(Uint8Array[9,8,7])", lambda: ws.send(bytearray([9, 8, 7])))

    ws.add_event_listener("open", on_open)
    if q.has("sendBeforeOpen"):
        attempt(log, 'client.send("early") before open', lambda: ws.send("early"))
    if q.has("acceptBeforeOpen"):
        attempt(log, "client.accept() before open", lambda: ws.accept())
    if q.has("closeBeforeOpen"):
        args = parse_code_reason(q.get("closeBeforeOpen"))
        attempt(log, fmt_call("client.close", args) + " before open", lambda: ws.close(*args))
        log.append({"note": "rs after close before open", "rs": ws.ready_state})
    how = finished.race(js_number(q.get("wait") or "4000"))
    log.append({"note": "client_ws finished", "how": how, "rs": ws.ready_state})
    return "client_ws done"


def client_fetch(request: Any, url: Url, log: Log, scope: Scope) -> str:
    """Worker as client via ``fetch(url, {headers: {Upgrade: 'websocket'}})`` (async)."""
    q = url.search_params
    headers = {"Upgrade": "websocket"}
    if q.has("ext"):
        headers["Sec-WebSocket-Extensions"] = q.get("ext") or ""
    try:
        resp = cfws_sync.fetch(q.get("backend") or "", headers=headers)
    except Exception as exc:
        log.append({"call": "fetch(backend, {Upgrade})", "threw": err_info(exc)})
        return "fetch failed"
    ws = resp.web_socket
    log.append({"note": "fetch resolved", "status": resp.status, "hasWebSocket": ws is not None,
                "ext": resp.headers.get("sec-websocket-extensions")})
    if not ws:
        log.append({"note": "body", "text": resp.text()})
        return "no websocket"
    log.append({"note": "before accept", "rs": ws.ready_state, "url": ws.url,
                "protocol": ws.protocol, "extensions": ws.extensions})
    attempt(log, 'ws.send("too early") before accept', lambda: ws.send("too early"))
    finished = Deferred()

    def on_close(event: Any) -> None:
        if q.has("replyAfter"):
            ms, spec = _split_delay(q.get("replyAfter") or "")

            def reply() -> None:
                log.append({"note": "rs before reply", "rs": ws.ready_state})
                attempt(log, 'ws.send("final") before reply', lambda: ws.send("final"))
                args = parse_code_reason(spec)
                attempt(log, fmt_call("ws.close", args) + " (reply)", lambda: ws.close(*args))
                log.append({"note": "rs after reply", "rs": ws.ready_state})
                scope.set_timeout(lambda: finished.done("close"), 300)

            scope.set_timeout(reply, js_number(ms))
        else:
            scope.set_timeout(lambda: finished.done("close"), 300)

    def on_error(event: Any) -> None:
        scope.set_timeout(lambda: finished.done("error"), 300)

    instrument(ws, log, "client", on_close=on_close, on_error=on_error)
    opts = _half_open_options(q)
    attempt(log, "ws.accept(%s)" % (js_json(opts) if opts else ""), lambda: ws.accept(opts))
    log.append({"note": "after accept", "rs": ws.ready_state})
    attempt(log, 'ws.send("hello from worker")', lambda: ws.send("hello from worker"))
    if q.has("closeFirst"):
        args = parse_code_reason(q.get("closeFirst"))
        attempt(log, fmt_call("ws.close", args), lambda: ws.close(*args))
    how = finished.race(js_number(q.get("wait") or "4000"))
    log.append({"note": "client_fetch finished", "how": how, "rs": ws.ready_state})
    return "client_fetch done"


def ret_ws(request: Any, url: Url, log: Log, scope: Scope) -> Response:
    """Return a WebSocket to a request that did not ask for an upgrade."""
    client, server = WebSocketPair()
    server.accept()
    return Response(None, status=101, web_socket=client)


#: name -> (behaviour, is it an ``async`` function in the Worker).
PLAIN_BEHAVIOURS: dict[str, tuple[Behaviour, bool]] = {
    "api": (api, True),
    "internal": (internal, True),
    "client_ws": (client_ws, True),
    "client_fetch": (client_fetch, True),
    "ret_ws": (ret_ws, False),
}
