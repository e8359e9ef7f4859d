"""The core over real sockets: ``socket.socketpair()``, real bytes, both ends.

First the wire codec alone, a client-side ``WireCodec`` on one end of the socket and a
server-side one on the other (RULES B4, E1–E3, L1, M1, M4, N1; SPEC §8.1).  Then a pair
end bound to a ``Connection`` on the socket as the serving layer binds it, with a raw
peer on the other side (RULES B2–B8, C1–C3, E4, H1, L1, M5; SPEC §2, §8.3, §8.6).
"""

import contextlib
import socket
import struct
import threading
import time
import zlib

import pytest
from wsproto.extensions import PerMessageDeflate

from cfws_sync import Blob
from cfws_sync._connection import ConnectionOptions
from cfws_sync._deflate import negotiate_deflate
from cfws_sync._frames import Failure, Message, PeerClose, Ping, WireCodec
from tests.corekit import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    TIMEOUT,
    Recorder,
    build_frame,
    close_payload,
    served_pair,
    settle,
)

MiB = 1 << 20


# -- the codec on both ends of a socketpair --------------------------------------------------


class End:
    """One side of the socketpair with its codec."""

    def __init__(self, sock, codec):
        self.sock = sock
        self.codec = codec

    def write(self, data):
        self.sock.sendall(data)

    def events(self, count=1, timeout=TIMEOUT):
        """Read until ``count`` events (pongs are not events) or the codec finished."""
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < count and not self.codec.finished:
            left = deadline - time.monotonic()
            assert left > 0, "timed out; got %r" % (got,)
            self.sock.settimeout(left)
            data = self.sock.recv(1 << 20)
            assert data, "EOF; got %r" % (got,)
            got += self.codec.receive(data)
        return got

    def raw(self, timeout=TIMEOUT):
        """The next frame as ``(first byte, payload)``, read without the codec."""
        self.sock.settimeout(timeout)
        head = self._exactly(2)
        n = head[1] & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._exactly(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._exactly(8))[0]
        assert not head[1] & 0x80, "a server frame must not be masked"
        return head[0], self._exactly(n)

    def _exactly(self, n):
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            assert chunk, "EOF"
            data += chunk
        return data


@pytest.fixture
def wire():
    """``(server, client)``: codecs on the two ends of a socketpair."""
    a, b = socket.socketpair()
    try:
        yield End(a, WireCodec(False)), End(b, WireCodec(True))
    finally:
        a.close()
        b.close()


@contextlib.contextmanager
def writing(end, data):
    """Write ``data`` from a background thread (a big write blocks until it is read)."""
    failed = []

    def run():
        try:
            end.write(data)
        except OSError as exc:
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        yield failed
    finally:
        with contextlib.suppress(OSError):
            end.sock.shutdown(socket.SHUT_WR)
        thread.join(TIMEOUT)
        assert not thread.is_alive()


def fail_and_reply(server, client, frames):
    """Send ``frames`` to the server; it fails, answers with the Close its codec words;
    return what the client's codec makes of that Close."""
    client.write(b"".join(frames))
    (failure,) = server.events()
    assert isinstance(failure, Failure)
    server.write(server.codec.close(failure.code, failure.reason))
    return client.events()


def test_messages_both_ways(wire):
    server, client = wire
    client.write(client.codec.message("to server") + client.codec.message(b"\0\1"))
    assert server.events(2) == [Message("to server"), Message(b"\0\1")]
    server.write(server.codec.message("to client") + server.codec.message(b""))
    assert client.events(2) == [Message("to client"), Message(b"")]


def test_M1_fragments_through_a_socket(wire):
    server, client = wire
    client.write(build_frame(TEXT, b"hel", fin=False))
    client.write(build_frame(CONT, b"lo ", fin=False))
    client.write(build_frame(CONT, b"world"))
    client.write(build_frame(BINARY, b"\1", fin=False) + build_frame(CONT, b"\2"))
    assert server.events(2) == [Message("hello world"), Message(b"\1\2")]


def test_M1_utf8_split_across_fragments_through_a_socket(wire):
    server, client = wire
    raw = "café!".encode()
    client.write(build_frame(TEXT, raw[:4], fin=False))
    client.write(build_frame(CONT, raw[4:]))
    assert server.events() == [Message("café!")]


def test_L1_pings_between_fragments_are_answered(wire):
    server, client = wire
    client.write(build_frame(TEXT, b"ab", fin=False) + build_frame(PING, b"p1"))
    client.write(build_frame(CONT, b"cd", fin=False) + build_frame(PING, b""))
    client.write(build_frame(PONG, b"unsolicited") + build_frame(CONT, b"ef"))
    events = server.events(3)
    assert events == [Ping(b"p1"), Ping(b""), Message("abcdef")]
    for event in events[:2]:
        server.write(server.codec.pong(event.payload))
    assert client.raw() == (0x8A, b"p1")
    assert client.raw() == (0x8A, b"")


def test_L1_client_answers_a_servers_ping_masked(wire):
    server, client = wire
    server.write(server.codec.ping(b"keepalive"))
    (ping,) = client.events()
    assert ping == Ping(b"keepalive")
    server_side = WireCodec(False)
    reply = client.codec.pong(ping.payload)
    assert reply[1] & 0x80  # masked (K7)
    assert server_side.receive(reply) == []  # a pong is no event


@pytest.mark.parametrize("frame,reason", [
    (build_frame(PING, b"y" * 200), "Received control frame longer than 125 bytes"),
    (build_frame(CLOSE, close_payload(1000, b"r" * 198)),
     "Received control frame longer than 125 bytes"),
    (build_frame(TEXT, b"x", mask=False), "Received unmasked frame from client"),
], ids=["ping_200", "close_reason_200", "unmasked"])
def test_SPEC_8_1_rfc_violations_get_close_1002(wire, frame, reason):
    server, client = wire
    assert fail_and_reply(server, client, [frame]) == [PeerClose(1002, reason)]


@pytest.mark.parametrize("frame,reason", [
    (build_frame(TEXT, b"ok\xff\xfeok"), "Invalid UTF-8 in text message"),
    (build_frame(TEXT, b"\xc0\xafx"), "Invalid UTF-8 in text message"),
    (build_frame(CLOSE, close_payload(1000, b"\xff\xfe")), "Invalid UTF-8 in Close reason"),
], ids=["text", "overlong", "close_reason"])
def test_SPEC_8_1_invalid_utf8_gets_close_1007(wire, frame, reason):
    server, client = wire
    assert fail_and_reply(server, client, [frame]) == [PeerClose(1007, reason)]


@pytest.mark.parametrize("frames,reason", [
    ([build_frame(3, b"x")], "Unknown opcode 3"),
    ([build_frame(11, b"x")], "Unknown opcode 11"),
    ([build_frame(TEXT, b"x", rsv=2)], "Received frame had RSV bits 2 or 3 set"),
    ([build_frame(TEXT, b"x", rsv=1)], "Received frame had RSV bits 2 or 3 set"),
    ([build_frame(TEXT, b"x", rsv=4)],
     "Received a WebSocket frame whose compression bit was set, but the compression "
     "extension was not negotiated for this connection."),
    ([build_frame(CONT, b"x")], "Unexpected continuation frame"),
    ([build_frame(TEXT, b"a", fin=False), build_frame(TEXT, b"b")],
     "Missing continuation frame"),
    ([build_frame(PING, b"p", fin=False)], "Received fragmented control frame"),
], ids=["opcode_3", "opcode_11", "rsv2", "rsv3", "rsv1", "unexpected_continuation",
        "missing_continuation", "fragmented_ping"])
def test_M4_kj_reasons_reach_the_peer_in_a_close_1002(wire, frames, reason):
    server, client = wire
    # RFC 6455 §5.5: a Close carries at most 123 bytes of reason.  workerd sends the
    # 127-byte RSV1 text whole (a 129-byte control frame); it is cut here.
    on_the_wire = reason.encode()[:123].decode()
    assert fail_and_reply(server, client, frames) == [PeerClose(1002, on_the_wire)]


def test_B4_one_byte_close_is_1005_and_the_echo_is_empty(wire):
    server, client = wire
    client.write(build_frame(CLOSE, b"\x03"))
    (close,) = server.events()
    assert close == PeerClose(1005, "")
    server.write(server.codec.close(close.code, close.reason))
    assert client.raw() == (0x88, b"")


@pytest.mark.parametrize("code", [4321, 1014, 3000])
def test_B4_odd_codes_pass_through_and_are_echoed(wire, code):
    server, client = wire
    client.write(build_frame(CLOSE, close_payload(code, b"odd")))
    (close,) = server.events()
    assert close == PeerClose(code, "odd")
    server.write(server.codec.close(close.code, close.reason))
    assert client.raw() == (0x88, close_payload(code, b"odd"))


def test_E1_exactly_32_MiB_through_a_socket(wire):
    server, client = wire
    payload = bytes(range(256)) * (32 * MiB // 256)
    with writing(client, client.codec.message(payload)):
        (message,) = server.events(timeout=30)
    assert message == Message(payload)


def test_E1_exactly_32_MiB_in_fragments_through_a_socket(wire):
    server, client = wire
    part = b"\7" * (8 * MiB)
    frames = b"".join(build_frame(BINARY if i == 0 else CONT, part, fin=i == 3)
                      for i in range(4))
    with writing(client, frames):
        (message,) = server.events(timeout=30)
    assert len(message.data) == 32 * MiB


def test_E2_one_byte_over_fails_on_the_header_alone(wire):
    server, client = wire
    header = build_frame(BINARY, b"", length=32 * MiB + 1)
    assert fail_and_reply(server, client, [header]) == [
        PeerClose(1009, "Message is too large: 33554433 > 33554432")]


def test_E3_fragment_budget_through_a_socket(wire):
    server, client = wire
    part = b"\5" * (12 * MiB)
    frames = build_frame(BINARY, part, fin=False) + build_frame(CONT, part, fin=False)
    third = build_frame(CONT, part)
    with writing(client, frames + third):
        (failure,) = server.events(timeout=30)
    assert failure == Failure(1009, "Message is too large: 12582912 > 8388608")
    server.write(server.codec.close(failure.code, failure.reason))
    assert client.raw() == (0x88, close_payload(1009, b"Message is too large: 12582912 > 8388608"))


def deflate_wire(wire, offer):
    server, client = wire
    extension, response = negotiate_deflate(offer)
    client_extension = PerMessageDeflate()
    client_extension.finalize(response)
    server.codec = WireCodec(False, extension)
    client.codec = WireCodec(True, client_extension)
    return server, client


@pytest.mark.parametrize("offer", [
    "permessage-deflate; client_max_window_bits",
    "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
])
def test_N1_compressed_round_trips_through_a_socket(wire, offer):
    server, client = deflate_wire(wire, offer)
    messages = ["hello hello hello hello", "plain " * 10, b"\0" * 5000, "é" * 300]
    for message in messages:
        client.write(client.codec.message(message))
    assert server.events(len(messages)) == [Message(m) for m in messages]
    for message in messages:
        server.write(server.codec.message(message))
    first, payload = client.raw()
    assert first == 0xC1, "the server's messages are compressed (RSV1)"
    assert client.codec.receive(struct.pack("!BB", first, len(payload)) + payload) == [
        Message(messages[0])]
    assert client.events(len(messages) - 1) == [Message(m) for m in messages[1:]]


def test_E1_decompression_bomb_through_a_socket_gets_1009(wire):
    server, client = deflate_wire(wire, "permessage-deflate")
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = compressor.compress(b"\0" * (64 * MiB)) + compressor.flush(zlib.Z_SYNC_FLUSH)
    client.write(build_frame(BINARY, body[:-4], rsv=4))
    (failure,) = server.events()
    assert failure.code == 1009 and failure.reason.endswith(" > 33554432")
    server.write(server.codec.close(failure.code, failure.reason))
    (close,) = client.events()
    assert close.code == 1009


# -- a pair end served over the socketpair ---------------------------------------------------


def echo_setup(rec, half_open=None, extra=None, echo=True):
    def setup(server):
        server.accept(allow_half_open=half_open)
        rec.watch(server, "server")
        if echo:
            server.add_event_listener("message", lambda e: server.send(e.data))
        if extra:
            extra(server)
    return setup


def test_served_echo():
    rec = Recorder()
    with served_pair(echo_setup(rec)) as s:
        s.peer.sendall(build_frame(TEXT, b"hello") + build_frame(BINARY, b"\1\2"))
        assert s.reader.read()[2:] == (TEXT, False, b"hello")
        assert s.reader.read()[2:] == (BINARY, False, b"\1\2")
        s.peer.sendall(build_frame(CLOSE, close_payload(1000)))
        assert s.reader.read().payload == close_payload(1000)
        assert s.reader.read_eof()
    seen = rec.summary()
    assert [x[:3] for x in seen] == [("server", "message", 1)] * 2 + [("server", "close", 3)]
    assert isinstance(seen[1][3], Blob)


def test_sent_before_binding_is_replayed_first():
    with served_pair(lambda server: (server.accept(), server.send("early"),
                                     server.send(b"\1"))) as s:
        assert s.reader.read().payload == b"early"
        assert s.reader.read().payload == b"\1"


def test_B2_auto_reply_echoes_the_peers_code_and_reason_then_tcp_closes():
    rec = Recorder()
    with served_pair(echo_setup(rec)) as s:
        s.peer.sendall(build_frame(CLOSE, close_payload(1001, b"going away")))
        frame = s.reader.read()
        assert (frame.opcode, frame.close_code, frame.close_reason) == (
            CLOSE, 1001, b"going away")
        assert s.reader.read_eof()
    assert rec.summary() == [("server", "close", 3, (1001, "going away", True))]


@pytest.mark.parametrize("payload,echo,code", [
    (b"", b"", 1005), (b"\x03", b"", 1005), (close_payload(1005), b"", 1005),
    (close_payload(4321, b"x"), close_payload(4321, b"x"), 4321),
    (close_payload(1014), close_payload(1014), 1014),
])
def test_B4_echo_copies_the_payload_without_validation(payload, echo, code):
    rec = Recorder()
    with served_pair(echo_setup(rec)) as s:
        s.peer.sendall(build_frame(CLOSE, payload))
        assert s.reader.read().payload == echo
        assert s.reader.read_eof()
    assert rec.of("server", "close")[0].event.code == code


def test_B3_close_in_the_handler_is_ignored_under_auto_reply():
    rec = Recorder()
    calls = []

    def extra(server):
        server.add_event_listener("close", lambda e: calls.append(
            server.close(4000, "from handler")))

    with served_pair(echo_setup(rec, extra=extra)) as s:
        s.peer.sendall(build_frame(CLOSE, close_payload(1000, b"bye")))
        frame = s.reader.read()
        assert (frame.close_code, frame.close_reason) == (1000, b"bye")
        assert s.reader.read_eof()
    assert calls == [None]


@pytest.mark.parametrize("date,half_open", [("2025-06-01", None), (None, True)])
def test_B8_legacy_close_in_the_handler_sends_that_frame(date, half_open):
    rec = Recorder()

    def extra(server):
        server.add_event_listener("close", lambda e: server.close(4000, "from handler"))

    with served_pair(echo_setup(rec, half_open, extra), date=date) as s:
        s.peer.sendall(build_frame(CLOSE, close_payload(1000, b"bye")))
        frame = s.reader.read()
        assert (frame.close_code, frame.close_reason) == (4000, b"from handler")
        assert s.reader.read_eof()
    assert rec.summary() == [("server", "close", 2, (1000, "bye", True))]


def test_B6_half_open_send_then_close_later():
    rec = Recorder()
    with served_pair(echo_setup(rec, half_open=True)) as s:
        s.peer.sendall(build_frame(TEXT, b"hi"))
        assert s.reader.read().payload == b"hi"
        s.peer.sendall(build_frame(CLOSE, close_payload(1000, b"bye")))
        rec.wait_event("server", "close")
        assert not s.reader.read_eof(timeout=0.3)  # B7: nothing until the app closes
        assert s.server.ready_state == 2
        s.server.send("last")
        s.server.close(1000, "done")
        assert s.server.ready_state == 3
        assert s.reader.read().payload == b"last"
        frame = s.reader.read()
        assert (frame.close_code, frame.close_reason) == (1000, b"done")
        assert s.reader.read_eof()
    assert rec.summary() == [("server", "message", 1, "hi"),
                             ("server", "close", 2, (1000, "bye", True))]


def test_B9_frames_after_the_peers_close_are_not_delivered():
    rec = Recorder()
    with served_pair(echo_setup(rec, half_open=True)) as s:
        s.peer.sendall(build_frame(CLOSE, close_payload(1000, b"bye"))
                       + build_frame(TEXT, b"after") + build_frame(PING, b"still there?"))
        rec.wait_event("server", "close")
        assert not s.reader.read_eof(timeout=0.3)  # L2: no pong either
        s.server.close(1000, "done")
        assert s.reader.read().close_reason == b"done"
    assert [x[1] for x in rec.summary()] == ["close"]


def test_C1_C3_our_close_first_then_the_peers_reply():
    rec = Recorder()
    with served_pair(echo_setup(rec, echo=False)) as s:
        s.server.close()
        assert s.server.ready_state == 2
        assert s.reader.read().payload == b""  # C1: empty Close
        s.peer.sendall(build_frame(TEXT, b"between"))
        s.peer.sendall(build_frame(CLOSE, close_payload(4999, b"different")))
        assert s.reader.read_eof()
    assert rec.summary() == [("server", "message", 2, "between"),
                             ("server", "close", 3, (4999, "different", True))]


def test_C4_SPEC_8_4_unanswered_close_ends_with_1006_after_close_timeout():
    rec = Recorder()
    with served_pair(echo_setup(rec, echo=False),
                     options=ConnectionOptions(close_timeout=0.3)) as s:
        s.server.close(4000, "bye")
        frame = s.reader.read()
        assert (frame.close_code, frame.close_reason) == (4000, b"bye")
        rec.wait_event("server", "close")  # the peer never answers
        assert s.reader.read_eof()
        settle(s.server)
        assert rec.summary() == [
            ("server", "close", 3, (1006, "WebSocket closing handshake timed out.", False))]


def test_C_everything_sent_before_close_reaches_the_peer_first():
    with served_pair(lambda server: server.accept()) as s:
        for i in range(300):
            s.server.send("m%d " % i * 50)
        s.server.close(1000, "end")
        for i in range(300):
            assert s.reader.read().payload == ("m%d " % i * 50).encode()
        assert s.reader.read().close_reason == b"end"


def test_H1_SPEC_8_3_drop_is_one_close_1006_and_closed():
    rec = Recorder()
    with served_pair(echo_setup(rec)) as s:
        s.peer.sendall(build_frame(TEXT, b"x"))
        assert s.reader.read().payload == b"x"
        s.peer.shutdown(socket.SHUT_RDWR)
        rec.wait_event("server", "close")
        settle(s.server)
    assert rec.summary() == [
        ("server", "message", 1, "x"),
        ("server", "close", 3, (1006, "WebSocket disconnected without sending Close frame.",
                                False)),
    ]


def test_H1_drop_in_the_middle_of_a_frame():
    rec = Recorder()
    with served_pair(echo_setup(rec)) as s:
        s.peer.sendall(build_frame(TEXT, b"truncated")[:8])
        s.peer.shutdown(socket.SHUT_WR)
        rec.wait_event("server", "close")
    assert rec.summary()[0][3][0] == 1006


def test_M5_protocol_error_is_only_an_error_event():
    rec = Recorder()
    with served_pair(echo_setup(rec)) as s:
        s.peer.sendall(build_frame(3, b"x"))
        frame = s.reader.read()
        assert (frame.close_code, frame.close_reason) == (1002, b"Unknown opcode 3")
        assert s.reader.read_eof()
        settle(s.server)
    assert rec.summary() == [(
        "server", "error", 3,
        "Uncaught Error: WebSocket protocol error; protocolError.statusCode = 1002; "
        "protocolError.description = Unknown opcode 3")]


def test_E4_message_over_the_limit_is_only_an_error_event():
    rec = Recorder()
    with served_pair(echo_setup(rec)) as s:
        s.peer.sendall(build_frame(BINARY, b"", length=32 * MiB + 1) + b"\0" * 16)
        frame = s.reader.read()
        assert (frame.close_code, frame.close_reason) == (
            1009, b"Message is too large: 33554433 > 33554432")
        assert s.reader.read_eof()
        settle(s.server)
    ((tag, kind, rs, message),) = rec.summary()
    assert (kind, rs) == ("error", 3)
    assert message.endswith("statusCode = 1009; protocolError.description = "
                            "Message is too large: 33554433 > 33554432")


def test_E1_max_message_size_option_is_used():
    rec = Recorder()
    with served_pair(echo_setup(rec), max_message_size=100) as s:
        s.peer.sendall(build_frame(BINARY, b"x" * 100))
        assert len(s.reader.read().payload) == 100
        s.peer.sendall(build_frame(BINARY, b"x" * 101))
        assert s.reader.read().close_reason == b"Message is too large: 101 > 100"


def test_L1_pings_are_answered_without_events():
    rec = Recorder()
    with served_pair(echo_setup(rec)) as s:
        for payload in (b"p1", b"", b"z" * 125):
            s.peer.sendall(build_frame(PING, payload))
            frame = s.reader.read()
            assert (frame.opcode, frame.payload) == (PONG, payload)
        s.peer.sendall(build_frame(PONG, b"unsolicited") + build_frame(TEXT, b"after pings"))
        assert s.reader.read().payload == b"after pings"
        settle(s.server)
        assert rec.summary() == [("server", "message", 1, "after pings")]


def test_SPEC_8_6_listener_exception_error_event_then_close_1011(caplog):
    rec = Recorder()

    def extra(server):
        def raising(e):
            raise ValueError("boom from message listener")
        server.add_event_listener("message", raising)

    with caplog.at_level(50, logger="cfws_sync"):
        with served_pair(echo_setup(rec, extra=extra)) as s:
            s.peer.sendall(build_frame(TEXT, b"one"))
            assert s.reader.read().payload == b"one"  # the other listener still ran
            frame = s.reader.read()
            assert frame.close_code == 1011
            s.peer.sendall(build_frame(CLOSE, close_payload(1011)))
            assert s.reader.read_eof()
    kinds = [(x[1], x[2]) for x in rec.summary()]
    assert kinds == [("message", 1), ("error", 1), ("close", 3)]
    assert isinstance(rec.of("server", "error")[0].event.error, ValueError)


def test_SPEC_2_concurrent_close_and_peer_close_give_one_close_frame_and_one_event():
    for round in range(25):
        rec = Recorder()
        with served_pair(echo_setup(rec)) as s:
            start = threading.Barrier(3, timeout=TIMEOUT)

            def closer(code):
                start.wait()
                s.server.close(code, "ours")

            threads = [threading.Thread(target=closer, args=(4000 + n,)) for n in range(2)]
            for t in threads:
                t.start()
            start.wait()
            s.peer.sendall(build_frame(CLOSE, close_payload(1000, b"peer")))
            for t in threads:
                t.join(TIMEOUT)
            frames = []
            while True:
                frame = s.reader.read()
                if frame is None:
                    break
                frames.append(frame)
            rec.wait_event("server", "close")
            settle(s.server)
        assert len(frames) == 1 and frames[0].opcode == CLOSE, frames
        assert frames[0].close_code in (1000, 4000, 4001)
        closes = rec.of("server", "close")
        assert len(closes) == 1 and closes[0].rs == 3
        assert rec.of("server", "error") == []
