"""The same scenarios on every WSGI server of the matrix, over real sockets.

Each server kind runs ``tests.apps:matrix`` once for the whole module.  The peer is the
raw-frame client of ``tests/rawclient.py`` (it sends what RFC 6455 forbids, and sees TCP
EOF and resets), or an independent library client (``websockets``, simple-websocket).
What the app's listeners saw is read back from the server's ``/__log?id=`` endpoint.
Test names carry the RULES.md rule (or SPEC section) they check.
"""

from __future__ import annotations

import itertools
import json
import struct
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from tests.rawclient import (BINARY, CLOSE, CONT, PING, PONG, TEXT, Closed, RawClient, Reset,
                             make_frame)
from tests.servers import SERVER_KINDS, running_server

DROPPED = "WebSocket disconnected without sending Close frame."
_ids = itertools.count()


@pytest.fixture(scope="module", params=SERVER_KINDS)
def server(request, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("logs") / ("%s.log" % request.param)
    with running_server(request.param, "tests.apps:matrix", log_path=log_path) as running:
        yield running


def new_id() -> str:
    return "t%d" % next(_ids)


def ws(server, path: str, headers=None, **query) -> RawClient:
    """Open ``path`` (e.g. ``/ws/echo``) with ``query``; returns the connected client."""
    return RawClient.open(server.port, url(path, **query), headers)


def url(path: str, **query) -> str:
    if not query:
        return path
    return path + "?" + urllib.parse.urlencode(query)


def get(server, path: str, headers=None):
    """A plain GET: ``(status, headers, body)``."""
    request = urllib.request.Request(server.http_url(path), headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


def app_log(server, id: str, until=None, timeout: float = 5.0) -> list:
    """The app's log for ``id``, once ``until(log)`` holds (else the last one read)."""
    deadline = time.monotonic() + timeout
    while True:
        entries = json.loads(get(server, "/__log?id=" + id)[2])
        if until is None or until(entries) or time.monotonic() > deadline:
            return entries
        time.sleep(0.02)


def events(entries: list) -> list:
    """The ``ev`` entries (message/close/error), without fields that vary."""
    return [e for e in entries if "ev" in e]


def has(kind: str):
    return lambda entries: any(e.get("ev") == kind for e in entries)


def settled(server, id: str, kind: str = "close") -> list:
    """The log once an event of ``kind`` is in it, and a moment later (to see extras)."""
    app_log(server, id, has(kind))
    time.sleep(0.1)
    return app_log(server, id)


def wait_for_log(server, predicate, timeout: float = 5.0) -> None:
    """Wait until ``predicate(text)`` holds for the server's output."""
    deadline = time.monotonic() + timeout
    while not predicate(server.log_path.read_text()):
        assert time.monotonic() < deadline, "not in the server's log"
        time.sleep(0.05)


def assert_close(frame, code, reason: bytes = b"") -> None:
    assert frame.opcode == CLOSE, frame
    assert (frame.close_code, frame.close_reason) == (code, reason)


# -- A: echo and order ---------------------------------------------------------------------


def test_A4_echo_text_binary_empty_non_bmp(server):
    id = new_id()
    with ws(server, "/ws/echo", id=id) as c:
        c.text("hello")
        assert c.recv() == (TEXT, b"hello", True, 0, False, False)
        c.binary(bytes([0, 1, 2, 255]))
        assert c.recv()[:2] == (BINARY, bytes([0, 1, 2, 255]))
        c.text("")
        assert c.recv()[:2] == (TEXT, b"")
        c.binary(b"")
        assert c.recv()[:2] == (BINARY, b"")
        c.text("héllo ✓ 😀")
        assert c.recv().text == "héllo ✓ 😀"
        c.close(1000, "bye")
        assert_close(c.recv(), 1000, b"bye")
        c.expect_eof()
    log = events(settled(server, id))
    assert [(e["ev"], e.get("type"), e.get("len", e.get("size"))) for e in log] == [
        ("message", "str", 5), ("message", "Blob", 4), ("message", "str", 0),
        ("message", "Blob", 0), ("message", "str", 9), ("close", None, None)]


def test_A4_binary_echo_is_byte_exact(server):
    payload = bytes(range(256)) * 300  # over 64 KiB: a 64-bit length on the wire
    with ws(server, "/ws/echo", id=new_id(), bt="arraybuffer") as c:
        c.binary(payload)
        frame = c.recv()
        assert (frame.opcode, frame.payload) == (BINARY, payload)


def test_A5_order_of_a_burst(server):
    messages = [("t%d" % i) if i % 3 else bytes([i % 256]) * (i + 1) for i in range(200)]
    with ws(server, "/ws/echo", id=new_id()) as c:
        c.send_raw(b"".join(make_frame(TEXT, m.encode()) if isinstance(m, str)
                            else make_frame(BINARY, m) for m in messages))
        for m in messages:
            frame = c.recv()
            assert frame.payload == (m.encode() if isinstance(m, str) else m)


def test_early_frames_behind_the_request_are_not_lost(server):
    # A pipelining client: frames in the same write as the upgrade request land in the
    # server's read-ahead buffer; they must reach the app all the same.
    with RawClient.open(server.port, "/ws/echo?id=" + new_id(),
                        extra=make_frame(TEXT, b"early") + make_frame(TEXT, b"bird")) as c:
        assert c.recv().text == "early"
        assert c.recv().text == "bird"


# -- B: the peer closes --------------------------------------------------------------------


@pytest.mark.parametrize("code, reason", [(1000, b"bye"), (1001, b"going away")])
def test_B2_peer_close_is_echoed_and_tcp_closes(server, code, reason):
    id = new_id()
    with ws(server, "/ws/echo", id=id) as c:
        c.text("hi")
        assert c.recv().text == "hi"
        c.close(code, reason)
        assert_close(c.recv(), code, reason)
        c.expect_eof()
    log = events(settled(server, id))
    assert log[-1] == {"ev": "close", "rs": 3, "code": code, "reason": reason.decode(),
                       "wasClean": True}
    assert [e["ev"] for e in log] == ["message", "close"]


@pytest.mark.parametrize("payload, echo, event_code", [
    (struct.pack("!H", 3000), struct.pack("!H", 3000), 3000),
    (struct.pack("!H", 1014) + b"x", struct.pack("!H", 1014) + b"x", 1014),
    (struct.pack("!H", 4321) + b"why", struct.pack("!H", 4321) + b"why", 4321),
    (b"", b"", 1005),
    (b"\x03", b"", 1005),
    (struct.pack("!H", 1005), b"", 1005),
], ids=["3000", "1014", "4321", "empty", "one-byte", "1005"])
def test_B4_close_payload_echoed_as_received(server, payload, echo, event_code):
    id = new_id()
    with ws(server, "/ws/echo", id=id) as c:
        c.send(CLOSE, payload)
        frame = c.recv()
        assert (frame.opcode, frame.payload) == (CLOSE, echo)
        c.expect_eof()
    close = [e for e in events(settled(server, id)) if e["ev"] == "close"]
    assert [(e["code"], e["rs"], e["wasClean"]) for e in close] == [(event_code, 3, True)]


def test_B3_close_in_handler_ignored_under_auto_reply(server):
    id = new_id()
    with ws(server, "/ws/echo", id=id, closeInHandler="4000:from handler") as c:
        c.close(1000, "bye")
        assert_close(c.recv(), 1000, b"bye")
        c.expect_eof()
    log = app_log(server, id, lambda log: any("note" in e and "rs" in e for e in log))
    assert {"call": "close(4000, 'from handler') in handler", "ok": True} in log


def test_B6_half_open_reply_later(server):
    id = new_id()
    with ws(server, "/ws/echo", id=id, half="1", closeLater="300;1000:done",
            sendLater="last") as c:
        c.text("hi")
        assert c.recv().text == "hi"
        c.close(1000, "bye")
        assert c.recv().text == "last"
        assert_close(c.recv(), 1000, b"done")
        c.expect_eof()
    log = app_log(server, id, lambda log: {"note": "rs after close later", "rs": 3} in log)
    assert [e for e in events(log) if e["ev"] == "close"] == [
        {"ev": "close", "rs": 2, "code": 1000, "reason": "bye", "wasClean": True}]
    assert {"note": "rs after close later", "rs": 3} in log


def test_B7_B13_legacy_send_after_peer_close(server):
    id = new_id()
    with ws(server, "/legacy/ws/echo", id=id, sendAfter="1", echo="0") as c:
        c.close(1000, "bye")
        assert c.recv().text == "late"  # B13: delivered, and no Close follows (B7)
        c.expect_silence(0.3)
    log = app_log(server, id, lambda log: any(e.get("call") == "send after close event"
                                              for e in log))
    assert {"call": "send after close event", "ok": True} in log
    assert [e for e in events(log) if e["ev"] == "close"][0]["rs"] == 2


def test_B8_legacy_close_in_handler(server):
    id = new_id()
    with ws(server, "/legacy/ws/echo", id=id, closeInHandler="4000:from handler") as c:
        c.close(1000, "bye")
        assert_close(c.recv(), 4000, b"from handler")
        c.expect_eof()
    log = app_log(server, id, lambda log: any("note" in e and "rs" in e for e in log))
    assert {"note": "rs after close in handler", "rs": 3} in log
    assert [e["rs"] for e in events(log) if e["ev"] == "close"] == [2]


def test_B9_frames_after_close_are_not_delivered(server):
    id = new_id()
    with ws(server, "/ws/echo", id=id) as c:
        c.send_raw(make_frame(CLOSE, struct.pack("!H", 1000)) + make_frame(TEXT, b"after")
                   + make_frame(PING, b"p"))
        assert_close(c.recv(), 1000)
        c.expect_eof()  # L2: the ping after the Close gets no pong either
    assert [e["ev"] for e in events(settled(server, id))] == ["close"]


# -- C: the app closes ---------------------------------------------------------------------


def test_C1_C2_C3_app_close_then_peer_answers(server):
    id = new_id()
    with ws(server, "/ws/wsclose", id=id, close="none", before="first") as c:
        assert c.recv().text == "first"
        assert c.recv()[:2] == (CLOSE, b"")  # C1: an empty Close
        c.text("between")  # C3: still delivered, rs 2
        c.close(4999, "different")
        c.expect_eof()
    log = settled(server, id)
    assert {"note": "rs after close", "rs": 2} in log
    assert {"call": "send after close", "threw": "TypeError",
            "message": "Can't call WebSocket send() after close()."} in log
    assert {"call": "second close", "ok": True} in log
    assert events(log) == [
        {"ev": "message", "rs": 2, "type": "str", "len": 7, "text": "between"},
        {"ev": "close", "rs": 3, "code": 4999, "reason": "different", "wasClean": True}]


@pytest.mark.parametrize("spec, payload", [("1000", b"\x03\xe8"),
                                           ("4000:bye", b"\x0f\xa0bye")])
def test_C1_close_frame_payload(server, spec, payload):
    with ws(server, "/ws/wsclose", id=new_id(), close=spec) as c:
        assert c.recv()[:2] == (CLOSE, payload)
        c.close(1000)
        c.expect_eof()


def test_close_timeout_drops_a_silent_peer(server):
    # SPEC §8.4: our Close unanswered within close_timeout (0.5 s here) -> 1006.
    id = new_id()
    with ws(server, "/short/ws/wsclose", id=id, close="4000:bye") as c:
        assert_close(c.recv(), 4000, b"bye")
        c.expect_eof(timeout=5)
    close = [e for e in events(settled(server, id)) if e["ev"] == "close"]
    assert [(e["code"], e["wasClean"]) for e in close] == [(1006, False)]


# -- E: size limit -------------------------------------------------------------------------


def test_E1_exactly_32MiB_is_delivered(server):
    size = 32 << 20
    with ws(server, "/ws/echo", id=new_id(), sizeOnly="1") as c:
        c.send_raw(make_frame(BINARY, bytes(size), key=b"\0\0\0\0"))
        assert c.recv(timeout=30).text == "size:%d" % size


def test_E1_exactly_32MiB_in_fragments(server):
    part = 8 << 20
    with ws(server, "/ws/echo", id=new_id(), sizeOnly="1") as c:
        for i in range(4):
            c.send_raw(make_frame(BINARY if i == 0 else CONT, bytes(part), fin=i == 3,
                                  key=b"\0\0\0\0"))
        assert c.recv(timeout=30).text == "size:%d" % (4 * part)


def test_E2_E4_one_byte_over_refused_from_the_header(server):
    id = new_id()
    with ws(server, "/ws/echo", id=id) as c:
        c.send_raw(make_frame(BINARY, bytes(16), length=(32 << 20) + 1))
        assert_close(c.recv(), 1009, b"Message is too large: 33554433 > 33554432")
        c.expect_eof()
    log = events(settled(server, id, "error"))
    assert log == [{"ev": "error", "rs": 3, "message": (
        "Uncaught Error: WebSocket protocol error; protocolError.statusCode = 1009; "
        "protocolError.description = Message is too large: 33554433 > 33554432")}]


# -- H: the peer disappears ----------------------------------------------------------------


@pytest.mark.parametrize("how", ["fin", "rst", "mid-frame", "half-close"])
def test_H1_H4_drop_gives_one_close_1006(server, how):
    id = new_id()
    c = ws(server, "/ws/echo", id=id)
    try:
        c.text("hi")
        assert c.recv().text == "hi"
        if how == "rst":
            c.reset()
        elif how == "fin":
            c.abort()  # close(): FIN, and nothing read any more
        elif how == "mid-frame":
            c.send_raw(make_frame(TEXT, b"0123456789")[:8])
            c.half_close()
        else:
            c.half_close()
        if how in ("half-close", "mid-frame"):
            c.expect_eof()  # H4: the server closes TCP, without a Close frame
    finally:
        c.abort()
    log = events(settled(server, id))
    assert log[1:] == [{"ev": "close", "rs": 3, "code": 1006, "reason": DROPPED,
                        "wasClean": False}]


def test_H1_send_and_close_after_a_drop_reach_no_one(server):
    # As workerd (a_end_drop_then_send_and_close in tests/compat/extra): its outgoing
    # side stays open, so send() and close() in the close handler do not raise.
    id = new_id()
    c = ws(server, "/ws/echo", id=id, sendInHandler="in handler", closeInHandler="1000:bye")
    try:
        c.text("hi")
        assert c.recv().text == "hi"
        c.half_close()
        c.expect_eof()  # nothing sent after the drop: neither the message nor a Close
    finally:
        c.abort()
    calls = [e for e in settled(server, id) if "call" in e]
    assert calls == [{"call": "send(echo)", "ok": True},
                     {"call": "send('in handler') in handler", "ok": True},
                     {"call": "close(1000, 'bye') in handler", "ok": True}]


# -- L: pings ------------------------------------------------------------------------------


def test_L1_pings_answered_without_events(server):
    id = new_id()
    with ws(server, "/ws/echo", id=id) as c:
        for payload in (b"", b"ab", b"x" * 125):
            c.ping(payload)
            assert c.recv()[:2] == (PONG, payload)
        c.send(PONG, b"unsolicited")
        c.text("hel", fin=False)
        c.ping(b"between")
        assert c.recv()[:2] == (PONG, b"between")
        c.send(CONT, b"lo")
        assert c.recv().text == "hello"
        c.close(1000)
        assert_close(c.recv(), 1000)
        c.expect_eof()
    assert [e["ev"] for e in events(settled(server, id))] == ["message", "close"]


# -- M: protocol errors --------------------------------------------------------------------

RSV1_TEXT = ("Received a WebSocket frame whose compression bit was set, but the compression "
             "extension was not negotiated for this connection.")


@pytest.mark.parametrize("frames, code, reason", [
    ([make_frame(3, b"x")], 1002, "Unknown opcode 3"),
    ([make_frame(11, b"x")], 1002, "Unknown opcode 11"),
    ([make_frame(TEXT, b"x", rsv=2)], 1002, "Received frame had RSV bits 2 or 3 set"),
    ([make_frame(TEXT, b"x", rsv=1)], 1002, "Received frame had RSV bits 2 or 3 set"),
    ([make_frame(TEXT, b"x", rsv=4)], 1002, RSV1_TEXT),
    ([make_frame(CONT, b"x")], 1002, "Unexpected continuation frame"),
    ([make_frame(TEXT, b"a", fin=False), make_frame(TEXT, b"b")], 1002,
     "Missing continuation frame"),
    ([make_frame(PING, b"p", fin=False)], 1002, "Received fragmented control frame"),
    ([make_frame(CLOSE, b"\x03\xe8", rsv=4)], 1002, RSV1_TEXT),
    # A frame with several faults is worded as kj checks them: RSV2/3, then the
    # fragmentation, then RSV1, then the opcode (workerd's differential-fuzz traces).
    ([make_frame(11, b"x", rsv=2)], 1002, "Received frame had RSV bits 2 or 3 set"),
    ([make_frame(11, b"x", fin=False, rsv=4)], 1002, "Received fragmented control frame"),
    ([make_frame(11, b"x", rsv=4)], 1002, RSV1_TEXT),
    ([make_frame(TEXT, b"a", fin=False), make_frame(3, b"b")], 1002,
     "Missing continuation frame"),
    ([make_frame(CONT, b"", rsv=4)], 1002, "Unexpected continuation frame"),
], ids=["op3", "op11", "rsv2", "rsv3", "rsv1", "unexpected-cont", "missing-cont",
        "fragmented-ping", "rsv1-close", "op11-rsv2", "op11-fragmented-rsv1", "op11-rsv1",
        "op3-inside-a-message", "rsv1-unexpected-cont"])
def test_M4_M5_protocol_errors(server, frames, code, reason):
    id = new_id()
    with ws(server, "/ws/echo", id=id) as c:
        c.send_raw(b"".join(frames))
        # RFC 6455 §5.5: a control frame carries at most 125 bytes, so the reason is cut
        # to 123 bytes on the wire (workerd sends RSV1_TEXT whole); the app sees it all.
        assert_close(c.recv(), code, reason.encode()[:123])
        c.expect_eof()
    assert events(settled(server, id, "error")) == [{"ev": "error", "rs": 3, "message": (
        "Uncaught Error: WebSocket protocol error; protocolError.statusCode = %d; "
        "protocolError.description = %s" % (code, reason))}]


def test_M4_a_compression_bit_on_a_ping_or_pong_is_ignored(server):
    # workerd answers such a ping (appending four stray bytes to the pong: README
    # difference 14) and ignores such a pong, compression negotiated or not.
    id = new_id()
    with ws(server, "/nocomp/ws/echo", id=id) as c:
        c.ping(b"flagged", rsv=4)
        assert c.recv()[:2] == (PONG, b"flagged")
        c.send(PONG, b"flagged", rsv=4)
        c.text("after")
        assert c.recv().text == "after"
        c.close(1000)
        assert_close(c.recv(), 1000)
        c.expect_eof()
    assert [e["ev"] for e in events(settled(server, id))] == ["message", "close"]


@pytest.mark.parametrize("frame, code", [
    (make_frame(TEXT, b"plain", mask=False), 1002),
    (make_frame(TEXT, b"ok\xff\xfeok"), 1007),
    (make_frame(CLOSE, b"\x03\xe8\xff"), 1007),
    (make_frame(PING, b"x" * 126), 1002),
    (make_frame(CLOSE, struct.pack("!H", 999)), 1002),
    (make_frame(CLOSE, struct.pack("!H", 5000) + b"x"), 1002),
], ids=["unmasked", "invalid-utf8", "invalid-utf8-reason", "long-ping", "close-code-999",
        "close-code-5000"])
def test_8_1_rfc6455_strictness(server, frame, code):
    id = new_id()
    with ws(server, "/ws/echo", id=id) as c:
        c.send_raw(frame)
        reply = c.recv()
        assert (reply.opcode, reply.close_code) == (CLOSE, code)
        c.expect_eof()
    log = events(settled(server, id, "error"))
    assert [e["ev"] for e in log] == ["error"]
    assert "protocolError.statusCode = %d;" % code in log[0]["message"]


# -- N: compression ------------------------------------------------------------------------


@pytest.mark.parametrize("offer, answer", [
    ("permessage-deflate; client_max_window_bits",
     "permessage-deflate; client_max_window_bits=15"),
    ("permessage-deflate; client_no_context_takeover; server_no_context_takeover",
     "permessage-deflate; client_no_context_takeover; server_no_context_takeover"),
    ("x-webkit-deflate-frame", None),
], ids=["window-bits", "no-context-takeover", "unknown"])
def test_N1_deflate_negotiation(server, offer, answer):
    with ws(server, "/ws/echo", {"Sec-WebSocket-Extensions": offer}, id=new_id()) as c:
        assert c.handshake.headers.get("sec-websocket-extensions") == answer


def test_N1_compressed_echo(server):
    id = new_id()
    offer = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}
    with ws(server, "/ws/echo", offer, id=id) as c:
        c.compressed(TEXT, b"hello hello hello hello")
        reply = c.recv()
        assert (reply.text, reply.rsv, reply.inflated) == ("hello hello hello hello", 4, True)
        c.text("plain " * 10)
        reply = c.recv()
        assert (reply.text, reply.rsv) == ("plain " * 10, 4)  # N1: ours are compressed
        c.compressed(BINARY, bytes(100000))
        reply = c.recv()
        assert (reply.opcode, reply.payload, reply.rsv) == (BINARY, bytes(100000), 4)
    log = events(app_log(server, id, lambda log: len(events(log)) >= 3))
    assert [e.get("len", e.get("size")) for e in log][:3] == [23, 60, 100000]


def test_N1_compression_option_off(server):
    offer = {"Sec-WebSocket-Extensions": "permessage-deflate"}
    with ws(server, "/nocomp/ws/echo", offer, id=new_id()) as c:
        assert "sec-websocket-extensions" not in c.handshake.headers
        c.text("plain " * 10)
        assert c.recv().rsv == 0


def test_N1_control_frames_leave_a_compressed_message_alone(server):
    # As workerd (the n_deflate_fragmented_with_ping and n_deflate_rsv1_* traces of
    # tests/compat/extra), but the pongs and the Close carry their payloads exactly.
    id = new_id()
    with ws(server, "/ws/echo", {"Sec-WebSocket-Extensions": "permessage-deflate"}, id=id) as c:
        text = b"fragmented and compressed, " * 4
        body = c.deflate(text)
        c.send(TEXT, body[:16], fin=False, rsv=4)
        c.ping(b"mid")  # L1: answered between fragments
        assert c.recv()[:2] == (PONG, b"mid")
        c.send(CONT, body[16:])
        reply = c.recv()
        assert (reply.text, reply.rsv) == (text.decode(), 4)
        c.ping(b"flagged", rsv=4)  # a compression bit on a control frame is ignored
        assert c.recv()[:2] == (PONG, b"flagged")
        c.send(PONG, b"flagged", rsv=4)
        c.close(1000, "bye", rsv=4)
        assert_close(c.recv(), 1000, b"bye")
        c.expect_eof()
    log = events(settled(server, id))
    assert [e["ev"] for e in log] == ["message", "close"]
    assert (log[1]["code"], log[1]["reason"]) == (1000, "bye")


@pytest.mark.parametrize("frames", [
    [make_frame(TEXT, b"\xff\xff\xff\xff\xfe\xfd garbage", rsv=4)],
    [make_frame(TEXT, b"abc", fin=False), make_frame(CONT, b"def", rsv=4)],
], ids=["does-not-inflate", "compressed-continuation"])
def test_N1_invalid_compressed_data_fails_with_1002(server, frames):
    # workerd's words (n_deflate_corrupt, n_deflate_rsv1_continuation in tests/compat/extra)
    id = new_id()
    with ws(server, "/ws/echo", {"Sec-WebSocket-Extensions": "permessage-deflate"}, id=id) as c:
        c.send_raw(b"".join(frames))
        assert_close(c.recv(), 1002, b"Invalid compressed data")
        c.expect_eof()
    assert events(settled(server, id, "error")) == [{"ev": "error", "rs": 3, "message": (
        "Uncaught Error: WebSocket protocol error; protocolError.statusCode = 1002; "
        "protocolError.description = Invalid compressed data")}]


# -- J: the upgrade response ---------------------------------------------------------------


@pytest.mark.parametrize("headers, status, body", [
    ({"Sec-WebSocket-Version": "8"}, 426,
     b"ERROR: The requested WebSocket version is not supported."),
    ({"Sec-WebSocket-Key": None}, 400, b"ERROR: Missing Sec-WebSocket-Key"),
], ids=["version-8", "no-key"])
def test_J6_bad_handshake_refused_when_the_handler_answers_101(server, headers, status, body):
    id = new_id()
    with RawClient.open(server.port, "/ws/echo?id=" + id, headers, expect=status) as c:
        assert c.handshake.body == body
        assert c.handshake.headers["content-type"] == "text/plain"


def test_J1_plain_request_to_an_upgrade_route(server):
    status, _, body = get(server, "/ws/echo?id=" + new_id())
    assert (status, body) == (426, b"Expected Upgrade: websocket")


def test_plain_responses_pass_through(server):
    status, headers, body = get(server, "/plain/hello")
    assert (status, headers["X-Hello"], body) == (200, "1", b"hello")


def test_J2_socket_returned_to_a_plain_request(server):
    status, _, body = get(server, "/plain/ret_ws?id=" + new_id())
    assert (status, body) == (500, b"Internal Server Error")
    wait_for_log(server, lambda text: (
        'TypeError: Worker tried to return a WebSocket in a response to a request which did '
        'not contain the header "Upgrade: websocket".') in text)


@pytest.mark.parametrize("behaviour", ["ret_accepted", "ret_server"])
def test_J4_returning_an_accepted_end(server, behaviour):
    error = "Can't return WebSocket in a Response after calling accept()."
    before = server.log_path.read_text().count(error)
    with ws(server, "/ws/" + behaviour, id=new_id()) as c:
        c.expect_eof()  # 101, then EOF and no Close frame
    wait_for_log(server, lambda text: text.count(error) > before)


def test_J5_returning_a_client_socket(server):
    backend = "ws://127.0.0.1:%d/ws/echo?id=%s" % (server.port, new_id())
    with ws(server, "/ws/ret_newws", id=new_id(), backend=backend) as c:
        c.expect_eof()
    wait_for_log(server, lambda text: (
        "Can't return WebSocket in a Response if it was created with `new WebSocket()`") in text)


def test_K13_returning_a_fetched_socket_is_refused_clearly(server):
    # A documented difference: workerd pumps raw frames through; cfws_sync does not.
    backend = "http://127.0.0.1:%d/ws/echo?id=%s" % (server.port, new_id())
    with ws(server, "/ws/ret_fetched", id=new_id(), backend=backend) as c:
        c.expect_eof()
    wait_for_log(server, lambda text: "does not pass frames through" in text)


def test_J7_subprotocol_only_when_the_handler_sets_it(server):
    offer = {"Sec-WebSocket-Protocol": "chat, v2"}
    with ws(server, "/ws/echo", offer, id=new_id()) as c:
        assert "sec-websocket-protocol" not in c.handshake.headers
    with ws(server, "/ws/echo", offer, id=new_id(), proto="chat") as c:
        assert c.handshake.headers["sec-websocket-protocol"] == "chat"
    # The subprotocols option chooses the first offered one the app lists.
    with ws(server, "/subp/ws/echo", {"Sec-WebSocket-Protocol": "v2, chat"}, id=new_id()) as c:
        assert c.handshake.headers["sec-websocket-protocol"] == "chat"
    with ws(server, "/subp/ws/echo", {"Sec-WebSocket-Protocol": "other"}, id=new_id()) as c:
        assert "sec-websocket-protocol" not in c.handshake.headers


@pytest.mark.parametrize("origin, status", [("https://good.example", 101),
                                            ("https://evil.example", 403), (None, 403)])
def test_allowed_origins(server, origin, status):
    id = new_id()
    with RawClient.open(server.port, "/origin/ws/echo?id=" + id, {"Origin": origin},
                        expect=status) as c:
        if status == 403:
            assert c.handshake.body == b"ERROR: Origin not allowed"
            assert app_log(server, id) == []
        else:
            c.text("hi")
            assert c.recv().text == "hi"


# -- options: keepalive and the send queue -------------------------------------------------


def test_keepalive_drops_a_peer_that_does_not_answer(server):
    id = new_id()
    with ws(server, "/ka/ws/echo", id=id) as c:
        assert c.recv()[:2] == (PING, b"cfws-keepalive")
        with pytest.raises((Closed, Reset)):
            while True:
                c.recv()  # more pings, never answered, then EOF
    close = [e for e in events(settled(server, id)) if e["ev"] == "close"]
    assert [(e["code"], e["reason"]) for e in close] == [
        (1006, "WebSocket keepalive ping timed out.")]


def test_keepalive_keeps_a_peer_that_answers(server):
    with ws(server, "/ka/ws/echo", id=new_id()) as c:
        deadline = time.monotonic() + 1.2  # several ping intervals
        while time.monotonic() < deadline:
            frame = c.recv()
            assert frame.opcode == PING
            c.send(PONG, frame.payload)
        c.text("still here")
        assert c.recv_data().text == "still here"


def test_max_queue_drops_a_slow_peer(server):
    # 64 MiB sent at once to a peer that reads nothing: past max_queue (256 KiB here)
    # the peer is dropped and the app's end gets close 1006.
    id = new_id()
    c = RawClient.open(server.port, url("/mq/ws/flood", id=id, size=1 << 20, n=64),
                       rcvbuf=32 << 10)
    try:
        c.text("go")
        close = [e for e in events(settled(server, id)) if e["ev"] == "close"]
        assert [(e["code"], e["wasClean"]) for e in close] == [(1006, False)]
        assert close[0]["reason"] == "WebSocket peer too slow: send queue over max_queue bytes."
        c.read_until_eof(timeout=10)
    finally:
        c.abort()


# -- interoperability ----------------------------------------------------------------------


def test_websockets_library_client(server):
    from websockets.sync.client import connect

    with connect(server.ws_url("/ws/echo?bt=arraybuffer"), open_timeout=5,
                 close_timeout=5) as client:
        client.send("héllo 😀")
        assert client.recv(timeout=5) == "héllo 😀"
        client.send(bytes(range(256)) * 1000)
        assert client.recv(timeout=5) == bytes(range(256)) * 1000
        client.ping(b"p").wait(5)
    assert (client.protocol.close_code, client.close_code) == (1000, 1000)


def test_simple_websocket_client(server):
    import simple_websocket

    client = simple_websocket.Client.connect(server.ws_url("/ws/echo?bt=arraybuffer"))
    try:
        client.send("hello")
        assert client.receive(timeout=5) == "hello"
        client.send(b"\x00\x01")
        assert client.receive(timeout=5) == b"\x00\x01"
    finally:
        client.close()


def test_server_log_has_no_traceback(server):
    # Last on purpose: nothing above made the server write a traceback, a stray
    # response head or a "000" status into its log.
    time.sleep(0.2)
    text = server.log_path.read_text()
    assert "Traceback" not in text
    assert '" 000 ' not in text
