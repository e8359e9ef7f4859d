"""``websocket_app`` called directly, as a WSGI server would call it.

The environ imitates each server's way of exposing the connection (Werkzeug's
``werkzeug.socket``, gevent pywsgi's raw reader, gunicorn's ``gunicorn.socket`` and
parser), over a ``socket.socketpair()`` whose other end is the raw-frame peer.  The same
app on the real servers is tested by ``test_matrix.py``.
"""

from __future__ import annotations

import logging
import socket
import threading

import pytest

from cfws_sync import Response, WebSocketPair, websocket_app
from cfws_sync.wsgi import ServedUpgrade, accept_key, take_socket
from tests.rawclient import TEXT, RawClient, make_frame

KEY = "dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 §1.3


def echo_handler(request):
    client, server = WebSocketPair()
    server.accept()
    server.add_event_listener("message", lambda event: server.send(event.data))
    return Response(None, status=101, web_socket=client,
                    headers={"Set-Cookie": "a=1", "Connection": "keep-alive"})


def environ_for(headers: dict, **extra) -> dict:
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/ws", "QUERY_STRING": "",
               "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "80", "wsgi.url_scheme": "http",
               "HTTP_HOST": "127.0.0.1"}
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    environ.update(extra)
    return environ


UPGRADE = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": KEY,
           "Sec-WebSocket-Version": "13"}


class StartResponse:
    def __init__(self) -> None:
        self.calls = []

    def __call__(self, status, headers, exc_info=None):
        self.calls.append((status, headers))
        return lambda data: None

    @property
    def status(self) -> str:
        return self.calls[-1][0]

    @property
    def headers(self) -> dict:
        return dict(self.calls[-1][1])


def call(app, environ):
    start = StartResponse()
    body = b"".join(app(environ, start))
    return start, body


def serve_in_thread(app, environ):
    """Run the app on an upgrade; returns (thread, result holder)."""
    result = {}

    def run():
        start = StartResponse()
        result["iterable"] = app(environ, start)
        result["start"] = start

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def close_cleanly(peer):
    """Close from the peer, and see the echo and our EOF."""
    peer.close(1000)
    assert peer.recv().close_code == 1000
    peer.expect_eof()


def finish(peer, thread):
    """Close from the peer, see the echo and our EOF, and wait for the app to return."""
    close_cleanly(peer)
    peer.abort()
    thread.join(5)
    assert not thread.is_alive()


@pytest.fixture
def pair():
    ours, theirs = socket.socketpair()
    yield ours, RawClient(theirs)
    ours.close()
    theirs.close()


def test_accept_key_rfc_example():
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@pytest.mark.parametrize("headers, status, body", [
    ({"Sec-WebSocket-Version": "8"}, "426 Upgrade Required",
     b"ERROR: The requested WebSocket version is not supported."),
    ({"Sec-WebSocket-Version": None}, "426 Upgrade Required",
     b"ERROR: The requested WebSocket version is not supported."),
    ({"Sec-WebSocket-Key": None}, "400 Bad Request", b"ERROR: Missing Sec-WebSocket-Key"),
    ({"Sec-WebSocket-Key": "c2hvcnQ="}, "400 Bad Request", b"ERROR: Invalid Sec-WebSocket-Key"),
])
def test_J6_refused_when_the_handler_answers_101(headers, status, body):
    # As workerd (trace j_bad_handshake): the handler runs, and the handshake is checked
    # when it returns a 101 with a socket.
    called = []

    def handler(request):
        called.append(request)
        return echo_handler(request)

    app = websocket_app(handler)
    fields = {k: v for k, v in dict(UPGRADE, **headers).items() if v is not None}
    start, answer = call(app, environ_for(fields))
    assert (start.status, answer, len(called)) == (status, body, 1)
    assert start.headers["Content-Type"] == "text/plain"
    if status.startswith("426"):
        assert start.headers["Sec-WebSocket-Version"] == "13"


def test_J6_a_plain_answer_to_a_bad_upgrade_request_is_sent_as_is():
    app = websocket_app(lambda request: Response("no socket for you", status=409))
    start, body = call(app, environ_for(dict(UPGRADE, **{"Sec-WebSocket-Version": "8"})))
    assert (start.status, body) == ("409 Conflict", b"no socket for you")


def test_origin_allow_list():
    app = websocket_app(echo_handler, allowed_origins=["https://a.example"])
    start, body = call(app, environ_for(dict(UPGRADE, Origin="https://b.example")))
    assert (start.status, body) == ("403 Forbidden", b"ERROR: Origin not allowed")


def test_plain_response(caplog):
    app = websocket_app(lambda request: Response("hi %s" % request.url, status=201,
                                                 headers={"X-A": "b"}))
    start, body = call(app, environ_for({}, QUERY_STRING="q=1"))
    assert (start.status, body) == ("201 Created", b"hi http://127.0.0.1/ws?q=1")
    assert start.headers["X-A"] == "b" and start.headers["Content-Length"] == str(len(body))


def test_handler_exception_is_500_and_logged(caplog):
    def boom(request):
        raise RuntimeError("kaboom")

    with caplog.at_level(logging.ERROR, "cfws_sync"):
        start, body = call(websocket_app(boom), environ_for({}))
    assert (start.status, body) == ("500 Internal Server Error", b"Internal Server Error")
    assert "kaboom" in caplog.text


def test_handler_returning_something_else_is_500(caplog):
    with caplog.at_level(logging.ERROR, "cfws_sync"):
        start, _ = call(websocket_app(lambda request: "text"), environ_for({}))
    assert start.status == "500 Internal Server Error"
    assert "not a cfws_sync.Response" in caplog.text


def test_J2_socket_for_a_plain_request_is_500_and_logged(caplog):
    with caplog.at_level(logging.ERROR, "cfws_sync"):
        start, body = call(websocket_app(echo_handler), environ_for({}))
    assert (start.status, body) == ("500 Internal Server Error", b"Internal Server Error")
    assert ('TypeError: Worker tried to return a WebSocket in a response to a request which '
            'did not contain the header "Upgrade: websocket".') in caplog.text


def test_no_socket_exposed_is_500(caplog):
    with caplog.at_level(logging.ERROR, "cfws_sync"):
        start, _ = call(websocket_app(echo_handler), environ_for(UPGRADE))
    assert start.status == "500 Internal Server Error"
    assert "does not expose its socket" in caplog.text


def test_upgrade_writes_101_serves_and_leaves_nothing_to_write(pair):
    ours, peer = pair
    app = websocket_app(echo_handler)
    rfile = ours.makefile("rb", -1)
    thread, result = serve_in_thread(app, environ_for(UPGRADE, **{
        "werkzeug.socket": ours, "wsgi.input": rfile}))
    answer = peer.read_handshake()
    assert answer.status == 101
    assert answer.headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert answer.headers["upgrade"] == "websocket"
    assert answer.headers["connection"] == "Upgrade"  # the handler's keep-alive dropped
    assert answer.headers["set-cookie"] == "a=1"  # the handler's other headers kept
    assert "sec-websocket-extensions" not in answer.headers
    peer.text("hi")
    assert peer.recv().text == "hi"
    finish(peer, thread)
    assert isinstance(result["iterable"], ServedUpgrade)
    assert result["start"].status == "101 Switching Protocols"  # for the access log
    with pytest.raises(BrokenPipeError):
        next(iter(result["iterable"]))  # the server stops here, writing nothing


@pytest.mark.parametrize("server", ["werkzeug", "gevent", "gunicorn"])
def test_take_socket_takes_the_read_ahead(pair, server):
    ours, peer = pair
    early = make_frame(TEXT, b"early")
    peer.send_raw(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n" + early)
    if server == "gunicorn":
        from gunicorn.http.body import Body, LengthReader
        from gunicorn.http.unreader import SocketUnreader

        unreader = SocketUnreader(ours)
        head = b""
        while b"\r\n\r\n" not in head:
            head += unreader.read()
        rest = head[head.index(b"\r\n\r\n") + 4:]
        unreader.unread(rest)
        environ = {"gunicorn.socket": ours, "wsgi.input": Body(LengthReader(unreader, 0))}
    else:
        rfile = ours.makefile("rb", -1)
        while rfile.readline() != b"\r\n":
            pass
        environ = {"wsgi.input": rfile}
        if server == "werkzeug":
            environ["werkzeug.socket"] = ours
    taken = take_socket(environ)
    assert taken is not None
    sock, read_ahead = taken
    assert sock is ours
    assert read_ahead == early
    assert take_socket(environ)[1] == b""  # taken once; nothing is waited for


@pytest.mark.parametrize("behaviour", ["accepted", "server-end"])
def test_J4_accepted_end_gets_101_then_eof(pair, behaviour, caplog):
    ours, peer = pair

    def handler(request):
        client, server = WebSocketPair()
        if behaviour == "accepted":
            client.accept()
            return Response(None, status=101, web_socket=client)
        server.accept()
        return Response(None, status=101, web_socket=server)

    app = websocket_app(handler, close_timeout=1)
    with caplog.at_level(logging.ERROR, "cfws_sync"):
        thread, result = serve_in_thread(app, environ_for(UPGRADE, **{
            "werkzeug.socket": ours, "wsgi.input": ours.makefile("rb", -1)}))
        assert peer.read_handshake().status == 101
        peer.expect_eof()
        peer.abort()
        thread.join(5)
    assert "Can't return WebSocket in a Response after calling accept()." in caplog.text


def test_J7_subprotocol_option(pair):
    ours, peer = pair
    app = websocket_app(echo_handler, subprotocols=["b", "a"])
    headers = dict(UPGRADE, **{"Sec-WebSocket-Protocol": "a, b"})
    thread, _ = serve_in_thread(app, environ_for(headers, **{
        "werkzeug.socket": ours, "wsgi.input": ours.makefile("rb", -1)}))
    assert peer.read_handshake().headers["sec-websocket-protocol"] == "b"
    peer.abort()
    thread.join(5)


def test_compression_follows_the_flags(pair):
    ours, peer = pair
    app = websocket_app(echo_handler, compatibility_flags=["no_web_socket_compression"])
    headers = dict(UPGRADE, **{"Sec-WebSocket-Extensions": "permessage-deflate"})
    thread, _ = serve_in_thread(app, environ_for(headers, **{
        "werkzeug.socket": ours, "wsgi.input": ours.makefile("rb", -1)}))
    assert "sec-websocket-extensions" not in peer.read_handshake().headers
    peer.abort()
    thread.join(5)


@pytest.mark.parametrize("options, error", [
    ({"max_message_size": 0}, ValueError), ({"max_message_size": True}, ValueError),
    ({"close_timeout": 0}, ValueError), ({"max_queue": -1}, ValueError),
    ({"ping_interval": "5"}, ValueError), ({"compatibility_date": "soon"}, ValueError),
    ({"compatibility_flags": ["no_such_flag"]}, ValueError), ({"bogus": 1}, TypeError),
])
def test_options_are_checked(options, error):
    with pytest.raises(error):
        websocket_app(echo_handler, **options)


def test_handler_must_be_callable():
    with pytest.raises(TypeError):
        websocket_app("not a function")


def test_handler_runs_under_the_apps_compatibility_whatever_the_caller_runs_under():
    from werkzeug.test import EnvironBuilder

    from cfws_sync.compat import Compatibility, compatibility, current_compatibility

    seen = []

    def handle(request):
        seen.append(current_compatibility())
        return Response("ok")

    newest = websocket_app(handle)
    legacy = websocket_app(handle, compatibility_date="2025-06-01")
    with compatibility(date="2025-06-01"):
        newest(EnvironBuilder("/").get_environ(), lambda *args: None)
    with compatibility(flags=["pedantic_wpt"]):
        legacy(EnvironBuilder("/").get_environ(), lambda *args: None)
    newest(EnvironBuilder("/").get_environ(), lambda *args: None)
    assert seen == [Compatibility.resolve(), Compatibility.resolve("2025-06-01"),
                    Compatibility.resolve()]
    assert current_compatibility() is Compatibility.resolve()  # nothing left set
