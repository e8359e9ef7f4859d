"""``cfws_sync.flask``: ordinary Flask views returning cfws_sync Responses, on real servers.

The apps below are served by separate server processes (``tests.test_flask:app``) and
talked to with the ``websockets`` client and ``urllib``.
"""

import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from contextlib import contextmanager

import flask
import pytest
from websockets.sync.client import connect

from cfws_sync import Response, WebSocketPair
from cfws_sync.flask import WebSockets
from tests.servers import ROOT, SERVER_KINDS, Server, free_port, running_server, wait_for_port

# -- the apps ------------------------------------------------------------------------------

app = flask.Flask(__name__)
WebSockets(app)
_seen = {"views": 0, "close_states": []}


@app.after_request
def _mark(response):
    response.headers["X-After-Request"] = "yes"
    return response


@app.route("/ws")
def ws_echo():
    _seen["views"] += 1
    if flask.request.headers.get("Upgrade") != "websocket":
        return Response("Expected Upgrade: websocket", status=426)
    client, server = WebSocketPair()
    server.accept()
    server.add_event_listener("message", lambda event: server.send(event.data))
    return Response(None, status=101, web_socket=client)


@app.route("/probe")
def ws_probe():
    """Reports the compatibility the view ran under, and the state in the close event."""
    client, server = WebSocketPair()
    server.accept()
    server.send(server.binary_type)
    flask.g.user = "from-g"

    def on_message(event):
        if event.data == "g":
            server.send(flask.g.user)
        elif event.data == "path":
            server.send(flask.request.path)

    def on_close(event):
        _seen["close_states"].append(server.ready_state)
        server.close(event.code, event.reason)  # legacy pattern; ignored under auto-reply

    server.add_event_listener("message", on_message)
    server.add_event_listener("close", on_close)
    return Response(None, status=101, web_socket=client)


@app.route("/proto")
def ws_proto():
    client, server = WebSocketPair()
    server.accept()
    return Response(None, status=101, web_socket=client,
                    headers={"Sec-WebSocket-Protocol": "chat.v2"})


@app.route("/plain")
def plain():
    return Response("made by cfws_sync", status=201, headers={"X-Cfws": "1"})


@app.route("/bytes")
def plain_bytes():
    return Response(b"\x00\x01", status=200)


@app.route("/flask")
def flask_view():
    return "made by flask"


@app.route("/state")
def state():
    return flask.jsonify(_seen)


def create_legacy_app():
    """The app-factory form, on a legacy compatibility date (before 2026-03-17)."""
    extension = WebSockets(compatibility_date="2026-01-01")
    legacy = flask.Flask("legacy")
    legacy.add_url_rule("/probe", view_func=ws_probe)
    legacy.add_url_rule("/state", view_func=state)
    extension.init_app(legacy)
    return legacy


legacy_app = create_legacy_app()


# -- helpers -------------------------------------------------------------------------------

def _get(url, headers=None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def _raw_handshake(port, path, extra):
    """Send a handshake with ``extra`` header lines; return the status line and body."""
    lines = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1:%d" % port, "Upgrade: websocket",
             "Connection: Upgrade"] + extra
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = [int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:")]
        while length and len(body) < length[0]:
            chunk = sock.recv(4096)
            if not chunk:
                break
            body += chunk
    return head.split(b"\r\n")[0].decode(), body.decode()


@contextmanager
def flask_debug_server(log_path):
    """``flask run --debug`` (Werkzeug's server with the debugger on), no reloader."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flask", "--app", "tests.test_flask:app", "run", "--debug",
             "--no-reload", "--port", str(port)],
            cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_for_port(port, proc)
            yield Server("flask-debug", port, proc)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _echo_round_trip(server):
    with connect(server.ws_url("/ws"), open_timeout=10, close_timeout=10) as ws:
        assert ws.response.headers["X-After-Request"] == "yes"
        ws.send("hello")
        assert ws.recv(timeout=10) == "hello"
        ws.send(b"\x00\xff")
        assert ws.recv(timeout=10) == b"\x00\xff"
        ws.close(4001, "bye")
    assert ws.protocol.close_rcvd.code == 4001  # the auto-reply carries our code back


# -- in process, with Flask's test client --------------------------------------------------

def test_plain_cfws_response_in_a_view():
    response = app.test_client().get("/plain")
    assert response.status_code == 201
    assert response.get_data() == b"made by cfws_sync"
    assert response.headers["X-Cfws"] == "1"
    assert response.headers["Content-Type"] == "text/plain;charset=UTF-8"
    assert response.headers["X-After-Request"] == "yes"


def test_plain_bytes_response_gets_no_default_content_type():
    response = app.test_client().get("/bytes")
    assert response.get_data() == b"\x00\x01"
    assert "Content-Type" not in response.headers


def test_flask_views_unchanged():
    response = app.test_client().get("/flask")
    assert response.status_code == 200
    assert response.get_data() == b"made by flask"


def test_J1_view_answers_plain_request_with_426():
    response = app.test_client().get("/ws")
    assert response.status_code == 426
    assert response.get_data() == b"Expected Upgrade: websocket"


def test_J2_websocket_to_plain_request_is_500():
    response = app.test_client().get("/proto")
    assert response.status_code == 500
    assert response.get_data() == b"Internal Server Error"


def test_init_app_twice_is_refused():
    with pytest.raises(RuntimeError):
        WebSockets(app)


def test_bad_option_is_refused():
    with pytest.raises(ValueError):
        WebSockets(compatibility_date="yesterday")
    with pytest.raises(TypeError):
        WebSockets(no_such_option=1)


# -- on every server of the matrix ---------------------------------------------------------

@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_view_upgrades_on_every_server(kind, tmp_path):
    with running_server(kind, "tests.test_flask:app", log_path=tmp_path / "log") as server:
        _echo_round_trip(server)
        status, headers, body = _get(server.http_url("/plain"))
        assert (status, body, headers["X-Cfws"]) == (201, b"made by cfws_sync", "1")
        assert _get(server.http_url("/flask"))[2] == b"made by flask"
        _echo_round_trip(server)  # the server is still healthy after a WebSocket
    assert b"Traceback" not in (tmp_path / "log").read_bytes()


@pytest.mark.parametrize("kind", ["gevent", "werkzeug"])
def test_J6_bad_handshake_refused_when_the_view_answers_101(kind):
    with running_server(kind, "tests.test_flask:app") as server:
        before = json.loads(_get(server.http_url("/state"))[2])["views"]
        status, body = _raw_handshake(server.port, "/ws", ["Sec-WebSocket-Version: 8",
                                                          "Sec-WebSocket-Key: " + "A" * 22 + "=="])
        assert status.split()[1] == "426"
        assert body == "ERROR: The requested WebSocket version is not supported."
        status, body = _raw_handshake(server.port, "/ws", ["Sec-WebSocket-Version: 13"])
        assert status.split()[1] == "400"
        assert body == "ERROR: Missing Sec-WebSocket-Key"
        # As workerd (trace j_bad_handshake): the view ran; its 101 was refused.
        assert json.loads(_get(server.http_url("/state"))[2])["views"] == before + 2


@pytest.mark.parametrize("kind", ["gevent", "gunicorn-gthread"])
def test_J7_subprotocol_from_view_headers(kind):
    with running_server(kind, "tests.test_flask:app") as server:
        with connect(server.ws_url("/proto"), subprotocols=["chat.v1", "chat.v2"],
                     open_timeout=10, close_timeout=10) as ws:
            assert ws.subprotocol == "chat.v2"
            assert ws.response.headers["X-After-Request"] == "yes"


@pytest.mark.parametrize("kind", ["gevent", "gunicorn-gthread"])
def test_request_context_in_listeners(kind):
    with running_server(kind, "tests.test_flask:app") as server:
        with connect(server.ws_url("/probe"), open_timeout=10, close_timeout=10) as ws:
            ws.recv(timeout=10)  # the binary type
            ws.send("g")
            assert ws.recv(timeout=10) == "from-g"
            ws.send("path")
            assert ws.recv(timeout=10) == "/probe"


@pytest.mark.parametrize("factory,binary_type,state", [
    ("tests.test_flask:app", "blob", 3),  # newest: auto-reply, CLOSED in the handler (B1)
    ("tests.test_flask:legacy_app", "arraybuffer", 2),  # D1, B1 legacy: CLOSING
])
def test_view_runs_in_the_extension_compatibility(factory, binary_type, state):
    with running_server("gevent", factory) as server:
        with connect(server.ws_url("/probe"), open_timeout=10, close_timeout=10) as ws:
            assert ws.recv(timeout=10) == binary_type
            ws.close(1000, "done")
        assert ws.protocol.close_rcvd.code == 1000
        assert json.loads(_get(server.http_url("/state"))[2])["close_states"] == [state]


def test_flask_debugger_on(tmp_path):
    """``flask run --debug``: Werkzeug's server with its debugger wrapped around the app."""
    log_path = tmp_path / "log"
    with flask_debug_server(log_path) as server:
        for _ in range(3):
            _echo_round_trip(server)
        assert _get(server.http_url("/plain"))[0] == 201
        assert _get(server.http_url("/flask"))[2] == b"made by flask"
        # the debugger wraps the app: it serves its own resources
        status, headers, _ = _get(server.http_url("/?__debugger__=yes&cmd=resource&f=style.css"))
        assert (status, headers["Content-Type"].split(";")[0]) == (200, "text/css")
    log = re.sub(rb"\x1b\[[0-9;]*m", b"", log_path.read_bytes())  # Werkzeug may colour it
    assert b"Debug mode: on" in log
    # the debugger did not take the end of the connection for a crash (it would answer
    # 500 into the finished stream and keep the traceback's frames)
    assert log.count(b'"GET /ws HTTP/1.1" 101') == 3
    assert b"Traceback" not in log
    assert b"Debugging middleware caught exception" not in log
