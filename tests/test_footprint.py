"""An idle connection keeps only what it needs.

A server may hold thousands of idle WebSockets, so what a served connection keeps
alive matters: gevent pywsgi's request reader and its 8 KiB buffer are closed once
their read-ahead is taken, the request, the 101 response and the pair end returned in
it are freed as soon as the handshake is done (by reference counting, not at some
later garbage collection), and a socket whose blocking helpers are never called makes
no condition variable for them.  The app is called as a WSGI server calls it, over a
``socket.socketpair()`` (see ``test_wsgi.py``); the real servers are in
``test_matrix.py``.
"""

from __future__ import annotations

import contextlib
import gc
import weakref

import pytest

from cfws_sync import Response, WebSocketPair, websocket_app
from cfws_sync._inbox import inbox_of
from tests.rawclient import TEXT, make_frame
from tests.test_wsgi import UPGRADE, environ_for, finish, pair, serve_in_thread  # noqa: F401

HEAD = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def echo(request):
    client, server = WebSocketPair()
    server.accept()
    server.add_event_listener("message", lambda event: server.send(event.data))
    return Response(None, status=101, web_socket=client)


def read_head_as_pywsgi(ours):
    """gevent's pywsgi reads the request through a buffered reader of the socket, which
    may read past the head; an upgrade request gets that reader as ``wsgi.input``."""
    rfile = ours.makefile("rb", -1)
    while rfile.readline() not in (b"\r\n", b""):
        pass
    return rfile


def test_pywsgi_reader_is_closed_and_its_read_ahead_still_read(pair):
    ours, peer = pair
    peer.send_raw(HEAD + make_frame(TEXT, b"early"))  # lands in the reader's buffer
    rfile = read_head_as_pywsgi(ours)
    thread, _ = serve_in_thread(websocket_app(echo), environ_for(UPGRADE, **{"wsgi.input": rfile}))
    assert peer.read_handshake().status == 101
    assert peer.recv().text == "early"
    assert rfile.closed  # its buffer is freed; the socket it read stays open
    peer.text("later")
    assert peer.recv().text == "later"
    finish(peer, thread)


@pytest.mark.parametrize("extra", [
    {"CONTENT_LENGTH": "5"},  # a body the handler could still read through it
    {"HTTP_TRANSFER_ENCODING": "chunked"},
    {"werkzeug.socket": "ours"},  # Werkzeug reads its reader after the result
])
def test_reader_kept_where_it_may_still_be_read(pair, extra):
    ours, peer = pair
    peer.send_raw(HEAD)
    rfile = read_head_as_pywsgi(ours)
    extra = {k: (ours if v == "ours" else v) for k, v in extra.items()}
    environ = environ_for(UPGRADE, **dict(extra, **{"wsgi.input": rfile}))
    thread, _ = serve_in_thread(websocket_app(echo), environ)
    assert peer.read_handshake().status == 101
    peer.text("x")
    assert peer.recv().text == "x"
    assert not rfile.closed
    finish(peer, thread)


@contextlib.contextmanager
def no_cycle_collection():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def test_handshake_objects_are_freed_while_the_connection_is_served(pair):
    ours, peer = pair
    refs = {}

    def handler(request):
        client, server = WebSocketPair()
        server.accept()
        server.add_event_listener("message", lambda event: server.send(event.data))
        response = Response(None, status=101, web_socket=client)
        refs.update(request=weakref.ref(request), response=weakref.ref(response),
                    returned_end=weakref.ref(client))
        return response

    environ = environ_for(UPGRADE, **{"werkzeug.socket": ours,
                                      "wsgi.input": ours.makefile("rb", -1)})
    with no_cycle_collection():  # freed by reference counting, at once
        thread, _ = serve_in_thread(websocket_app(handler), environ)
        assert peer.read_handshake().status == 101
        peer.text("x")
        assert peer.recv().text == "x"  # served, and idle now
        alive = sorted(name for name, ref in refs.items() if ref() is not None)
        assert alive == []
        finish(peer, thread)


def test_a_socket_whose_helpers_are_never_called_makes_no_condition():
    client, server = WebSocketPair()
    server.accept()
    client.accept()
    client.close(1000, "bye")
    closed = server.wait_closed(timeout=5)  # the first helper call, after the close
    assert (closed.code, closed.reason) == (1000, "bye")
    assert inbox_of(client)._cond is None  # its close event made none
    assert client.wait_closed(timeout=5).code == 1000


def test_an_idle_connection_keeps_no_queue_and_no_general_decoder(pair):
    # After traffic, an idle served connection holds no mailbox, no write queue and no
    # wsproto decoder: each costs hundreds of bytes, times thousands of connections.
    ours, peer = pair
    ends = []

    def handler(request):
        client, server = WebSocketPair()
        server.accept()
        server.add_event_listener("message", lambda event: server.send(event.data))
        ends.append(server)
        return Response(None, status=101, web_socket=client)

    environ = environ_for(UPGRADE, **{"werkzeug.socket": ours,
                                      "wsgi.input": ours.makefile("rb", -1)})
    thread, _ = serve_in_thread(websocket_app(handler), environ)
    assert peer.read_handshake().status == 101
    for size in (5, 300):
        peer.text("x" * size)
        assert peer.recv().text == "x" * size
    peer.binary(b"y" * 70000)  # 64-bit length (RFC 6455 §5.2), likely read in pieces
    assert peer.recv().payload == b"y" * 70000
    server = ends[0]
    connection = server._machine.link
    assert server._mailbox is None
    assert connection._queue is None
    assert connection.codec._decoder is None  # whole frames never needed wsproto
    peer.send_raw(make_frame(TEXT, b"frag", fin=False) + make_frame(0, b"ment"))
    assert peer.recv().text == "fragment"
    assert connection.codec._decoder is not None  # a fragment did
    finish(peer, thread)
