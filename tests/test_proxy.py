"""``examples/proxy.py`` end to end: raw client <-> proxy (a real server) <-> raw backend.

RULES K12: both legs half-open, closes forwarded each way so the handshake runs end to
end, and a drop (1006) on one side goes on to the other as 1011.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any, Iterator

import pytest

from cfws_sync import fetch
from tests.servers import SERVER_KINDS
from tests.test_client import (BINARY, CLOSE, TEXT, TIMEOUT, BackendConn, RawBackend,
                               closed_port, raw_client, server_process)


@contextlib.contextmanager
def proxied(kind: str) -> Iterator[tuple[BackendConn, BackendConn]]:
    """A client connected through the proxy on server ``kind``, and the backend's side."""
    backend = RawBackend()
    try:
        with server_process(kind, "examples.proxy:app",
                            env={"CFWS_PROXY_BACKEND": backend.url("/backend")}) as proxy:
            accepted: dict[str, Any] = {}
            thread = threading.Thread(
                target=lambda: accepted.setdefault("conn", backend.upgrade()), daemon=True)
            thread.start()
            client = raw_client(proxy.port, "/ws")
            thread.join(TIMEOUT)
            upstream = accepted["conn"]
            assert upstream.headers["upgrade"] == "websocket"
            assert "sec-websocket-extensions" not in upstream.headers  # K9
            try:
                yield client, upstream
            finally:
                client.drop()
    finally:
        backend.close()


def forward_both_ways(client: BackendConn, upstream: BackendConn) -> None:
    client.send(TEXT, b"through the proxy")
    frame = upstream.recv()
    assert (frame.opcode, frame.text, frame.masked) == (TEXT, "through the proxy", True)
    upstream.send(BINARY, b"\x00\x01\x02")
    frame = client.recv()
    assert (frame.opcode, frame.payload, frame.masked) == (BINARY, b"\x00\x01\x02", False)


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_K12_close_from_the_client(kind):
    with proxied(kind) as (client, upstream):
        forward_both_ways(client, upstream)
        client.close(1000, "peer bye")
        frame = upstream.recv()  # the proxy passes the Close on, and does not answer it
        assert (frame.opcode, frame.close, frame.masked) == (CLOSE, (1000, "peer bye"), True)
        client.expect_silence(0.2)
        upstream.close(1000, "peer bye")  # the backend answers
        assert client.recv().close == (1000, "peer bye")  # the answer comes through
        client.expect_eof()
        upstream.expect_eof()


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_K12_close_from_the_backend(kind):
    with proxied(kind) as (client, upstream):
        forward_both_ways(client, upstream)
        upstream.close(4000, "backend bye")
        assert client.recv().close == (4000, "backend bye")
        upstream.expect_silence(0.2)
        client.close(4000, "backend bye")  # the client answers
        frame = upstream.recv()
        assert frame.close == (4000, "backend bye") and frame.masked
        upstream.expect_eof()
        client.expect_eof()


@pytest.mark.parametrize("kind", ["gevent", "gunicorn-gthread"])
def test_K12_empty_close_stays_empty(kind):
    with proxied(kind) as (client, upstream):
        client.close()
        assert upstream.recv().close == (None, "")  # 1005 is not sent as a code
        upstream.close()
        assert client.recv().close == (None, "")


@pytest.mark.parametrize("kind", ["gevent", "gunicorn-gthread"])
def test_K12_client_drop_becomes_1011(kind):
    with proxied(kind) as (client, upstream):
        forward_both_ways(client, upstream)
        client.sock.shutdown(socket.SHUT_RDWR)  # gone, without a Close
        frame = upstream.recv()
        assert frame.close == (1011, "peer gone") and frame.masked
        upstream.close(1011, "peer gone")
        upstream.expect_eof()


@pytest.mark.parametrize("kind", ["gevent", "gunicorn-gthread"])
def test_K12_backend_drop_becomes_1011(kind):
    with proxied(kind) as (client, upstream):
        forward_both_ways(client, upstream)
        upstream.drop()
        assert client.recv().close == (1011, "peer gone")
        client.close(1011, "peer gone")
        client.expect_eof()


def test_backend_down_gives_502_and_plain_requests_426():
    with server_process("gevent", "examples.proxy:app", env={
            "CFWS_PROXY_BACKEND": "ws://127.0.0.1:%d/" % closed_port()}) as proxy:
        response = fetch(proxy.http_url("/ws"), headers={"Upgrade": "websocket"})
        assert response.status == 502 and response.web_socket is None
        assert response.text().startswith("Bad Gateway: cannot connect to http://127.0.0.1:")
        assert "refused" in response.text()
        response = fetch(proxy.http_url("/"))
        assert (response.status, response.text()) == (426, "Expected Upgrade: websocket")
