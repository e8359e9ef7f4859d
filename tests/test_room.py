"""``Room`` (SPEC §9): membership, tags, handlers, auto-response, attachments, broadcast.

In-process pairs check the API one call at a time; real servers with the ``websockets``
client check the same behaviour over the network, including a slow reader.
"""

from __future__ import annotations

import gc
import json
import queue
import socket
import time
import weakref
from typing import Any

import pytest
from websockets.sync.client import connect

from cfws_sync import RangeError, Room, WebSocket, WebSocketPair, signals
from tests.servers import SERVER_KINDS, running_server

TIMEOUT = 5.0


class Events:
    """Every event of one end, in order, for blocking reads."""

    def __init__(self, ws: Any) -> None:
        self.queue: queue.Queue = queue.Queue()
        for kind in ("message", "close", "error"):
            ws.add_event_listener(kind, self.queue.put)

    def next(self, timeout: float = TIMEOUT) -> Any:
        return self.queue.get(timeout=timeout)

    def message(self, timeout: float = TIMEOUT) -> Any:
        event = self.next(timeout)
        assert event.type == "message", event
        return event.data

    def empty_for(self, seconds: float) -> bool:
        try:
            event = self.queue.get(timeout=seconds)
        except queue.Empty:
            return True
        raise AssertionError("unexpected event %r" % (event,))


class Recording(Room):
    """Records each handler call as ``(name, args)``."""

    def __init__(self, name: str = "rec") -> None:
        super().__init__(name)
        self.calls: queue.Queue = queue.Queue()

    def web_socket_message(self, ws, message):
        self.calls.put(("message", ws, message))

    def web_socket_close(self, ws, code, reason, was_clean):
        self.calls.put(("close", ws, code, reason, was_clean, ws in self, self.get_tags(ws)))

    def web_socket_error(self, ws, error):
        self.calls.put(("error", ws, error, ws in self))

    def call(self, timeout: float = TIMEOUT) -> tuple:
        return self.calls.get(timeout=timeout)


def joined(room: Room, tags=()) -> tuple[Any, Any, Events]:
    """A pair whose server end is in ``room``; the client end accepted and recorded."""
    client, server = WebSocketPair()
    client.binary_type = "arraybuffer"
    events = Events(client)
    client.accept()
    room.accept_web_socket(server, tags=tags)
    return client, server, events


# -- membership and tags --------------------------------------------------------------------


def test_accept_web_socket_accepts_and_adds():
    room = Room("members")
    client, server, events = joined(room, ["a", "b"])
    assert room.get_web_sockets() == [server]
    assert server in room and len(room) == 1
    assert room.get_tags(server) == ["a", "b"]
    server.send("accepted")  # would raise TypeError (A2) if not accepted
    assert events.message() == "accepted"
    assert room.acceptWebSocket == room.accept_web_socket
    assert room.getWebSockets("a") == [server]
    assert room.getTags(server) == ["a", "b"]


def test_accept_web_socket_takes_an_accepted_socket():
    room = Room("accepted")
    client, server = WebSocketPair()
    server.accept()
    room.accept_web_socket(server)
    assert room.get_web_sockets() == [server] and room.get_tags(server) == []


def test_get_web_sockets_by_tag_in_join_order():
    room = Room("tags")
    ends = [joined(room, tags)[1] for tags in (["x"], ["y"], ["x", "y"], [])]
    assert room.get_web_sockets() == ends
    assert room.get_web_sockets("x") == [ends[0], ends[2]]
    assert room.get_web_sockets("y") == [ends[1], ends[2]]
    assert room.get_web_sockets("z") == []


def test_tag_limits_as_workerd():
    room = Room("limits")
    # Duplicates are ignored, so eleven names with one repeated are ten tags.
    many = ["t%d" % i for i in range(10)] + ["t0"]
    server = joined(room, many)[1]
    assert room.get_tags(server) == ["t%d" % i for i in range(10)]
    with pytest.raises(ValueError) as info:
        room.accept_web_socket(WebSocketPair().server, ["t%d" % i for i in range(11)])
    assert str(info.value) == "a Hibernatable WebSocket cannot have more than 10 tags"
    ok = "é" * 128  # 256 bytes of UTF-8
    assert room.get_tags(joined(room, [ok])[1]) == [ok]
    long = "a" * 257
    with pytest.raises(ValueError) as info:
        room.accept_web_socket(WebSocketPair().server, [long])
    assert str(info.value) == '"%s" is longer than the max tag length (256 characters).' % long
    with pytest.raises(TypeError):
        room.accept_web_socket(WebSocketPair().server, "abc")
    with pytest.raises(TypeError):
        room.accept_web_socket(WebSocketPair().server, [1])
    assert len(room) == 2  # the refused sockets were not added


def test_get_tags_of_a_stranger():
    with pytest.raises(ValueError) as info:
        Room("strangers").get_tags(WebSocketPair().server)
    assert "acceptWebSocket()" in str(info.value)


def test_a_socket_belongs_to_one_room():
    first, second = Room("first"), Room("second")
    server = joined(first)[1]
    with pytest.raises(ValueError):
        second.accept_web_socket(server)
    with pytest.raises(ValueError):
        first.accept_web_socket(server)
    assert second.get_web_sockets() == [] and first.get_web_sockets() == [server]


def test_the_end_returned_in_a_response_is_refused():
    room = Room("released")
    client, server = WebSocketPair()
    client._release()  # what returning it in a 101 Response does
    with pytest.raises(TypeError):
        room.accept_web_socket(client)
    assert room.get_web_sockets() == []
    with pytest.raises(TypeError):
        room.accept_web_socket("not a socket")


def test_room_name_is_checked():
    assert Room().name == "default"
    with pytest.raises(TypeError):
        Room("")


# -- handler methods --------------------------------------------------------------------------


def test_handlers_get_messages_and_close():
    room = Recording()
    client, server, events = joined(room, ["t"])
    server.binary_type = "blob"  # handlers get bytes whatever the binary_type
    client.send("text")
    client.send(b"\x00\x01")
    assert room.call() == ("message", server, "text")
    assert room.call() == ("message", server, b"\x00\x01")
    client.close(4000, "bye")
    # The socket has left the room before web_socket_close runs; its tags stay readable.
    assert room.call() == ("close", server, 4000, "bye", True, False, ["t"])
    assert room.get_web_sockets() == [] and room.get_web_sockets("t") == []


def test_js_handler_names_are_called():
    class JSRoom(Room):
        def __init__(self):
            super().__init__("js")
            self.calls: queue.Queue = queue.Queue()

        def webSocketMessage(self, ws, message):
            self.calls.put(("message", message))

        def webSocketClose(self, ws, code, reason, wasClean):
            self.calls.put(("close", code, reason, wasClean))

    room = JSRoom()
    client, server, events = joined(room)
    client.send("hi")
    assert room.calls.get(timeout=TIMEOUT) == ("message", "hi")
    client.close(1000)
    assert room.calls.get(timeout=TIMEOUT) == ("close", 1000, "", True)


def test_snake_case_handler_wins_over_js_name():
    class Both(Room):
        def __init__(self):
            super().__init__("both")
            self.calls: queue.Queue = queue.Queue()

        def web_socket_message(self, ws, message):
            self.calls.put("snake")

        def webSocketMessage(self, ws, message):
            self.calls.put("camel")

    room = Both()
    client, server, events = joined(room)
    client.send("x")
    assert room.calls.get(timeout=TIMEOUT) == "snake"
    with pytest.raises(queue.Empty):
        room.calls.get(timeout=0.2)


def test_a_handler_exception_removes_the_socket(caplog):
    class Failing(Recording):
        def web_socket_message(self, ws, message):
            raise RuntimeError("handler failed")

    room = Failing("failing")
    client, server, events = joined(room)
    client.send("boom")
    kind, ws, error, still_member = room.call()
    assert (kind, ws, still_member) == ("error", server, False)
    assert isinstance(error, RuntimeError) and str(error) == "handler failed"
    close = events.next()
    assert (close.type, close.code) == ("close", 1011)  # SPEC §8.6
    assert room.get_web_sockets() == []
    assert "handler failed" in caplog.text


# -- auto-response ------------------------------------------------------------------------------


def test_auto_response_runs_no_app_code():
    room = Recording("auto")
    room.set_web_socket_auto_response("ping", "pong")
    assert room.get_web_socket_auto_response() == ("ping", "pong")
    client, server, events = joined(room)
    seen = []
    server.add_event_listener("message", lambda event: seen.append(event.data))
    server.on_message = lambda event: seen.append(("on", event.data))
    signalled = []
    receiver = lambda ws, event: signalled.append(event.data)  # noqa: E731
    signals.message.connect(receiver)
    try:
        assert room.get_web_socket_auto_response_timestamp(server) is None
        client.send("ping")
        assert events.message() == "pong"
        assert room.get_web_socket_auto_response_timestamp(server) is not None
        client.send("other")
        assert room.call() == ("message", server, "other")
        assert seen == [("on", "other"), "other"]
        assert [d for d in signalled if d in ("ping", "other")] == ["other"]
        client.send(b"ping")  # binary never matches
        assert room.call() == ("message", server, b"ping")
        room.set_web_socket_auto_response(None)
        assert room.getWebSocketAutoResponse() is None
        client.send("ping")
        assert room.call() == ("message", server, "ping")
        assert events.empty_for(0.2)
    finally:
        signals.message.disconnect(receiver)


def test_auto_response_limits():
    room = Room("auto-limits")
    room.set_web_socket_auto_response("q" * 2048, "r" * 2048)
    with pytest.raises(RangeError) as info:
        room.set_web_socket_auto_response("q" * 2049, "r")
    assert str(info.value) == ("Request cannot be larger than 2048 bytes. "
                               "A request of size 2049 was provided.")
    with pytest.raises(RangeError) as info:
        room.setWebSocketAutoResponse("q", "é" * 1025)
    assert str(info.value) == ("Response cannot be larger than 2048 bytes. "
                               "A response of size 2050 was provided.")
    with pytest.raises(TypeError):
        room.set_web_socket_auto_response("q", None)
    assert room.get_web_socket_auto_response() == ("q" * 2048, "r" * 2048)


# -- attachments ------------------------------------------------------------------------------


def test_attachment_round_trip_is_a_copy():
    client, server = WebSocketPair()
    assert server.deserialize_attachment() is None
    value = {"user": "ada", "n": [1, 2.5, True, None]}
    server.serialize_attachment(value)
    value["user"] = "changed"
    got = server.deserialize_attachment()
    assert got == {"user": "ada", "n": [1, 2.5, True, None]}
    got["user"] = "changed too"
    assert server.deserializeAttachment()["user"] == "ada"
    server.serializeAttachment("plain")
    assert server.deserialize_attachment() == "plain"
    assert client.deserialize_attachment() is None  # per socket


def test_attachment_limits():
    client, server = WebSocketPair()
    fits = "x" * 2046  # 2,048 bytes with its quotes
    server.serialize_attachment(fits)
    with pytest.raises(RangeError) as info:
        server.serialize_attachment("x" * 2047)
    assert str(info.value) == ("A WebSocket 'attachment' cannot be larger than 2048 bytes."
                               "'attachment' was 2049 bytes.")
    for bad in (object(), {1, 2}, float("nan"), b"bytes"):
        with pytest.raises(TypeError):
            server.serialize_attachment(bad)
    assert server.deserialize_attachment() == fits  # failures kept the old value


def test_attachment_survives_close():
    room = Recording("attach-close")
    client, server, events = joined(room)
    server.serialize_attachment({"id": 7})
    client.close(1000)
    kind, ws, *rest = room.call()
    assert kind == "close" and ws.deserialize_attachment() == {"id": 7}


# -- broadcast --------------------------------------------------------------------------------


def test_broadcast_tag_and_exclude():
    room = Room("bcast")
    a, b, c = (joined(room, tags) for tags in (["red"], ["red", "blue"], ["blue"]))
    assert room.broadcast("all") == 3
    assert [x[2].message() for x in (a, b, c)] == ["all"] * 3
    assert room.broadcast(b"red", tag="red") == 2
    assert [x[2].message() for x in (a, b)] == [b"red"] * 2
    assert room.broadcast(42, exclude=a[1]) == 2
    assert [x[2].message() for x in (b, c)] == ["42"] * 2
    assert room.broadcast(True, tag="blue", exclude=[b[1], c[1]]) == 0
    assert room.broadcast("none", tag="green") == 0
    with pytest.raises(TypeError):
        room.broadcast({"not": "sendable"})
    with pytest.raises(TypeError):
        room.broadcast("x", tag=1)
    assert all(x[2].empty_for(0.1) for x in (a, b, c))


def test_broadcast_removes_a_socket_whose_send_raises():
    room = Room("closing")
    kept, gone = joined(room), joined(room)
    gone[1].close(1000)  # closing: send() now raises (C2)
    assert room.broadcast("still here") == 1
    assert room.get_web_sockets() == [kept[1]]
    assert kept[2].message() == "still here"


def test_a_closed_socket_is_not_added():
    room = Room("late")
    client, server = WebSocketPair()
    server.accept()
    events = Events(server)
    client.accept()
    client.close(1000)
    assert events.next().type == "close"
    room.accept_web_socket(server)
    assert room.get_web_sockets() == []


def test_1000_sockets_join_receive_and_leave_without_leaks():
    room = Room("thousand")
    pairs = [joined(room, ["even" if i % 2 == 0 else "odd"]) for i in range(1000)]
    assert len(room) == 1000 and len(room.get_web_sockets("odd")) == 500
    assert room.broadcast("hello all") == 1000
    assert room.broadcast("hello odd", tag="odd") == 500
    for i, (client, server, events) in enumerate(pairs):
        assert events.message() == "hello all"
        if i % 2:
            assert events.message() == "hello odd"
    refs = [weakref.ref(pair[1]) for pair in pairs]
    for pair in pairs:
        pair[0].close(1000)
    deadline = time.monotonic() + 20
    while len(room) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(room) == 0 and room.get_web_sockets("odd") == []
    assert room._by_tag == {}
    del pairs, pair, client, server, events
    while time.monotonic() < deadline:
        gc.collect()
        if all(ref() is None for ref in refs):
            break
        time.sleep(0.05)
    assert sum(ref() is not None for ref in refs) == 0


# -- over the network ---------------------------------------------------------------------------


def test_a_client_socket_in_a_room():
    with running_server("gevent", "tests.apps:echo") as echo:
        room = Recording("clients")
        ws = WebSocket(echo.ws_url("/"))
        room.accept_web_socket(ws, ["outbound"])
        assert room.broadcast("too early") == 0  # still connecting: skipped, kept
        assert room.get_web_sockets() == [ws]
        deadline = time.monotonic() + TIMEOUT
        while ws.ready_state == WebSocket.CONNECTING:
            assert time.monotonic() < deadline, "the client did not open"
            time.sleep(0.01)
        assert room.broadcast("echo me", tag="outbound") == 1
        assert room.call() == ("message", ws, "echo me")  # the echo server's answer
        ws.close(1000)
        assert room.call()[:5] == ("close", ws, 1000, "", True)
        assert room.get_web_sockets() == []


def open_client(server, ident: str, tags: str = "", path: str = "/room") -> Any:
    # max_queue=None: a client that does not read the room's notices must still be able
    # to read the Close reply (websockets stops reading at its queue's high-water mark).
    # Entered as a context manager (websockets asks for it); each test closes it.
    ws = connect(server.ws_url("%s?id=%s&tags=%s" % (path, ident, tags)),
                 open_timeout=TIMEOUT, close_timeout=TIMEOUT, max_queue=None).__enter__()
    hello = json.loads(ws.recv(timeout=TIMEOUT))
    assert hello["hello"] == ident
    return ws


def command(ws, **fields) -> Any:
    ws.send(json.dumps(fields))
    return json.loads(ws.recv(timeout=TIMEOUT))


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_room_over_every_server(kind):
    with running_server(kind, "tests.room_apps:app", env={"ROOM_NAME": "net"}) as server:
        a = open_client(server, "a", "red")
        b = open_client(server, "b", "red,blue")
        c = open_client(server, "c", "blue")
        try:
            assert command(a, op="count") == {"count": 3}
            assert command(b, op="tags") == {"tags": ["red", "blue"]}
            attachment = command(c, op="attachment")["attachment"]
            assert attachment["id"] == "c" and isinstance(attachment["pid"], int)
            a.send(json.dumps({"op": "broadcast", "data": "to all"}))
            assert [ws.recv(timeout=TIMEOUT) for ws in (a, b, c)] == ["to all"] * 3
            c.send(json.dumps({"op": "broadcast", "data": "blue", "tag": "blue", "notme": True}))
            assert b.recv(timeout=TIMEOUT) == "blue"
            b.send(json.dumps({"op": "broadcast", "data": "bin", "binary": True}))
            assert [ws.recv(timeout=TIMEOUT) for ws in (a, b, c)] == [b"bin"] * 3
            c.close(4001, "leaving")
            left = [json.loads(ws.recv(timeout=TIMEOUT)) for ws in (a, b)]
            assert left == [{"left": "c", "code": 4001}] * 2
            assert command(a, op="count") == {"count": 2}
            assert command(a, op="count", tag="blue") == {"count": 1}
        finally:
            for ws in (a, b, c):
                ws.close()


def test_auto_response_and_handler_error_over_the_network():
    with running_server("gevent", "tests.room_apps:app") as server:
        a, b = open_client(server, "a"), open_client(server, "b")
        try:
            before = command(a, op="stats")["handled"]
            for _ in range(3):
                a.send("ping")
                assert a.recv(timeout=TIMEOUT) == "pong"
            assert command(a, op="stats")["handled"] == before + 1  # only "stats" itself
            b.send(json.dumps({"op": "raise"}))
            with pytest.raises(Exception):
                b.recv(timeout=TIMEOUT)
            assert b.close_code == 1011
            assert json.loads(a.recv(timeout=TIMEOUT)) == {"left": "b", "code": 1011}
            assert command(a, op="count") == {"count": 1}
        finally:
            a.close()
            b.close()


def raw_upgrade(port: int, path: str) -> socket.socket:
    """Open a WebSocket by hand and then never read: the slowest possible peer."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    sock.settimeout(TIMEOUT)
    sock.connect(("127.0.0.1", port))
    sock.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n" % path).encode("ascii"))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101")
    return sock


def reply(ws, key: str) -> Any:
    """The next JSON object with ``key``, skipping broadcasts and notices."""
    while True:
        data = ws.recv(timeout=TIMEOUT)
        if isinstance(data, str) and data.startswith("{"):
            value = json.loads(data)
            if key in value:
                return value[key]


def test_a_slow_reader_never_delays_the_others():
    with running_server("gevent", "tests.room_apps:app") as server:
        slow = raw_upgrade(server.port, "/slow/room?id=slow")
        fast = [open_client(server, "f%d" % i, path="/slow/room") for i in range(3)]
        try:
            fast[0].send(json.dumps({"op": "count"}))
            assert reply(fast[0], "count") == 4
            chunk = "x" * 32768
            count = 200  # 6.5 MB: far past the slow peer's 64 KiB max_queue and its buffers
            for i in range(count):  # from one sender: its broadcasts keep their order
                fast[0].send(json.dumps({"op": "broadcast", "data": "%03d%s" % (i, chunk)}))
            for ws in fast:
                got = []
                while len(got) < count:
                    data = ws.recv(timeout=TIMEOUT)
                    if not data.startswith("{"):  # skip the slow one's "left" notice
                        got.append(data[:3])
                assert got == ["%03d" % i for i in range(count)]
            # The slow peer was dropped (close 1006) and left the room.
            deadline = time.monotonic() + TIMEOUT
            while True:
                fast[0].send(json.dumps({"op": "count"}))
                if reply(fast[0], "count") == 3:
                    break
                assert time.monotonic() < deadline, "the slow socket is still in the room"
                time.sleep(0.05)
        finally:
            slow.close()
            for ws in fast:
                ws.close()
