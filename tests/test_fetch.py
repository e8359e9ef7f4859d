"""``fetch()``: upgrades to an end that must be accepted, and plain HTTP (RULES K9–K11, E6)."""

from __future__ import annotations

import ssl
import threading
import time

import pytest

from cfws_sync import ConnectError, WebSocket, fetch
from cfws_sync.errors import SEND_BEFORE_ACCEPT
from tests.test_client import (CLOSE, ECHO, TEXT, TIMEOUT, Recorder, Seen, closed_port,
                               make_cert, server_process, ws_server)
from tests.test_client import backend  # noqa: F401  (a fixture)


def http(url: str) -> str:
    return "http" + url[2:]


def upgrade_in_background(backend, **accept):
    """Answer the next upgrade from a thread (fetch() blocks until the answer)."""
    result = {}

    def serve():
        result["conn"] = backend.upgrade(**accept)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return thread, result


def fetched(backend, **options):
    thread, result = upgrade_in_background(backend)
    response = fetch(http(backend.url()), headers={"Upgrade": "websocket"}, **options)
    thread.join(TIMEOUT)
    return response, result["conn"]


# -- K9: the upgraded end -----------------------------------------------------------------


def test_K9_socket_before_accept(backend):
    response, conn = fetched(backend)
    assert response.status == 101
    assert conn.headers["upgrade"] == "websocket" and conn.headers["connection"] == "Upgrade"
    assert conn.headers["sec-websocket-version"] == "13"
    assert "sec-websocket-extensions" not in conn.headers  # K9: none unless asked
    assert response.headers.get("sec-websocket-extensions") is None
    ws = response.web_socket
    assert ws is response.webSocket and isinstance(ws, WebSocket)
    assert (ws.ready_state, ws.url, ws.protocol, ws.extensions) == (1, None, "", "")
    with pytest.raises(TypeError) as info:
        ws.send("too early")
    assert str(info.value) == SEND_BEFORE_ACCEPT
    with pytest.raises(TypeError) as info:
        ws.close(1000)  # A2: close() before accept() too
    assert str(info.value) == SEND_BEFORE_ACCEPT
    with pytest.raises(TypeError):
        ws.receive(timeout=0.1)  # nothing can arrive before accept()
    conn.expect_silence(0.2)


@pytest.mark.parametrize("date, rs, reply", [(None, 3, True), ("2025-06-01", 2, False)])
def test_K9_plain_accept_follows_the_date(backend, date, rs, reply):
    options = {"compatibility_date": date} if date else {}
    response, conn = fetched(backend, **options)
    ws = response.web_socket
    rec = Recorder(ws)
    ws.accept()
    ws.send("hello from worker")
    frame = conn.recv()
    assert (frame.opcode, frame.text, frame.masked) == (TEXT, "hello from worker", True)
    conn.text("hello from backend")
    conn.close(1000, "backend bye")
    close = rec.wait_type("close")
    assert close == Seen("close", rs, (1000, "backend bye", True))
    assert rec.seen[0] == Seen("message", 1, "hello from backend")
    if reply:
        echo_frame = conn.recv()
        assert echo_frame.close == (1000, "backend bye") and echo_frame.masked
        conn.expect_eof()
    else:
        conn.expect_silence(0.3)
        ws.close()


def test_K9_half_open(backend):
    response, conn = fetched(backend)
    ws = response.web_socket
    rec = Recorder(ws)
    ws.accept(allow_half_open=True)
    conn.close(1000, "backend bye")
    assert rec.wait_type("close") == Seen("close", 2, (1000, "backend bye", True))
    conn.expect_silence(0.2)
    assert ws.ready_state == 2
    ws.send("final")
    ws.close(1000, "done")
    assert ws.ready_state == 3
    final, close = conn.recv(), conn.recv()
    assert (final.text, final.masked) == ("final", True)
    assert (close.opcode, close.close, close.masked) == (CLOSE, (1000, "done"), True)
    conn.expect_eof()
    assert rec.types() == ["close"]


def test_K9_messages_before_accept_wait_for_it(backend):
    response, conn = fetched(backend)
    conn.text("early")  # I3: it waits, and is delivered at accept()
    conn.close(4000, "early close")
    ws = response.web_socket
    conn.expect_silence(0.2)
    rec = Recorder(ws)
    ws.accept()
    seen = rec.wait(lambda s: len(s) >= 2)
    assert seen == [Seen("message", 1, "early"), Seen("close", 3, (4000, "early close", True))]
    assert conn.recv().close == (4000, "early close")


def test_K9_compression_when_the_caller_asks():
    with ws_server(ECHO) as url:
        response = fetch(http(url), headers={"Upgrade": "websocket",
                                             "Sec-WebSocket-Extensions": "permessage-deflate"})
        assert response.status == 101
        assert response.headers["Sec-WebSocket-Extensions"].startswith("permessage-deflate")
        ws = response.web_socket
        ws.accept()
        ws.binary_type = "arraybuffer"
        ws.send("x" * 5000)
        ws.send(b"\x01" * 5000)
        assert ws.receive(timeout=TIMEOUT) == "x" * 5000
        assert ws.receive(timeout=TIMEOUT) == b"\x01" * 5000
        ws.close(1000)
        assert ws.wait_closed(timeout=TIMEOUT).code == 1000


def test_E6_protocol_error_from_the_backend(backend):
    response, conn = fetched(backend)
    ws = response.web_socket
    rec = Recorder(ws)
    ws.accept()
    ws.send("hello from worker")
    assert conn.recv().text == "hello from worker"
    conn.send(3, b"x")
    reply = conn.recv()
    assert reply.masked and reply.close == (1002, "Unknown opcode 3")
    seen = rec.wait_type("error")
    assert seen == Seen("error", 3, "Uncaught Error: WebSocket protocol error; "
                        "protocolError.statusCode = 1002; protocolError.description = "
                        "Unknown opcode 3")
    conn.expect_eof()
    assert rec.types() == ["error"]


def test_fetch_upgrade_to_websocket_app():
    with server_process("gevent", "tests.apps:echo") as server:
        response = fetch(server.http_url("/"), headers={"Upgrade": "websocket"})
        ws = response.web_socket
        ws.accept()
        ws.send("round trip")
        assert ws.receive(timeout=TIMEOUT) == "round trip"
        ws.close(1000, "bye")
        assert ws.wait_closed(timeout=TIMEOUT).reason == "bye"


# -- K10: no upgrade ----------------------------------------------------------------------------


def test_K10_upgrade_answered_with_200(backend):
    def serve():
        conn = backend.next()
        conn.read_request()
        conn.respond(200, b"not a websocket", ("Content-Type: text/plain",))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    response = fetch(http(backend.url()), headers={"Upgrade": "websocket"})
    thread.join(TIMEOUT)
    assert response.status == 200 and response.web_socket is None
    assert response.text() == "not a websocket"
    assert response.headers["content-type"] == "text/plain"


def test_plain_get_and_post_to_a_wsgi_app():
    with server_process("werkzeug", "tests.apps:echo") as server:
        response = fetch(server.http_url("/plain"))
        assert response.status == 426 and response.web_socket is None
        assert response.text() == "Expected Upgrade: websocket"
        assert not response.ok


def test_plain_fetch_sends_method_body_and_headers(backend):
    seen = {}

    def serve():
        conn = backend.next()
        seen["headers"] = conn.read_request()
        seen["method"], seen["path"] = conn.method, conn.path
        while len(conn.buf) < 5:
            conn._fill(time.monotonic() + TIMEOUT)
        seen["body"] = conn.buf
        conn.sock.sendall(b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n"
                          b"X-Multi: a\r\nX-Multi: b\r\n\r\n"
                          b"4\r\nhell\r\n1;ext=1\r\no\r\n0\r\n\r\n")
        conn.sock.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    response = fetch(http(backend.url("/submit?x=1")), headers={"X-Token": "t"},
                     method="post", body="hello")
    thread.join(TIMEOUT)
    assert (seen["method"], seen["path"], seen["body"]) == ("POST", "/submit?x=1", b"hello")
    assert seen["headers"]["x-token"] == "t" and seen["headers"]["content-length"] == "5"
    assert (response.status, response.text()) == (201, "hello")
    assert response.headers.get("x-multi") == "a, b"


def test_plain_fetch_reads_to_eof_without_length(backend):
    def serve():
        conn = backend.next()
        conn.read_request()
        conn.sock.sendall(b"HTTP/1.1 200 OK\r\n\r\nall of it")
        conn.sock.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    response = fetch(http(backend.url()))
    thread.join(TIMEOUT)
    assert response.bytes() == b"all of it"


def test_https_fetch(tmp_path):
    pem = make_cert(str(tmp_path))
    with ws_server(ECHO, pem=pem) as url:
        trusting = ssl.create_default_context(cafile=pem)
        response = fetch("https" + url[3:], headers={"Upgrade": "websocket"},
                         ssl_context=trusting)
        ws = response.web_socket
        ws.accept()
        ws.send("over tls")
        assert ws.receive(timeout=TIMEOUT) == "over tls"
        ws.close()
        assert ws.wait_closed(timeout=TIMEOUT).was_clean


# -- K11: schemes ---------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["ws://127.0.0.1:1/backend", "wss://127.0.0.1:1/backend",
                                 "ftp://127.0.0.1/x", "not a url"])
def test_K11_fetch_refuses_other_schemes(url):
    with pytest.raises(TypeError) as info:
        fetch(url, headers={"Upgrade": "websocket"})
    assert str(info.value) == "Fetch API cannot load: " + url


def test_fetch_refused():
    with pytest.raises(ConnectError):
        fetch("http://127.0.0.1:%d/" % closed_port(), timeout=TIMEOUT)
