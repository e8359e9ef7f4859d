"""The examples, run as a person runs them (``python examples/echo.py --port N``), and
talked to with the ``websockets`` client and raw sockets."""

import base64
import contextlib
import importlib.util
import json
import queue
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from websockets.sync.client import connect

from cfws_sync import WebSocketPair
from tests.servers import ROOT, free_port, wait_for_port

EXAMPLES = ROOT / "examples"


@contextlib.contextmanager
def example(name, tmp_path, *args):
    """Run ``examples/<name>.py ARGS`` from another directory; yield its port."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    log_path = tmp_path / ("%s-%d.log" % (name, port))
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, str(EXAMPLES / (name + ".py")), "--port",
                                 str(port), *args], cwd=str(tmp_path), env=env, stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc)
        yield port
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    log = log_path.read_text()
    assert "Traceback" not in log, log


def get(port, path):
    try:
        with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
            return r.status, r.headers.get("Content-Type"), r.read().decode()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.headers.get("Content-Type"), error.read().decode()


def ws_url(port, path="/ws"):
    return "ws://127.0.0.1:%d%s" % (port, path)


def load_chat_module():
    spec = importlib.util.spec_from_file_location("chat_example", EXAMPLES / "chat.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# -- echo ----------------------------------------------------------------------------------

def test_echo_example(tmp_path):
    with example("echo", tmp_path) as port:
        status, content_type, page = get(port, "/")
        assert (status, content_type) == (200, "text/html; charset=utf-8")
        assert "new WebSocket(`${scheme}//${location.host}/ws`)" in page
        assert get(port, "/ws")[::2] == (426, "Expected Upgrade: websocket")  # J1
        with connect(ws_url(port), open_timeout=10, close_timeout=10) as ws:
            ws.send("hello")
            assert ws.recv(timeout=10) == "hello"
            ws.send(b"\x01\x02")
            assert ws.recv(timeout=10) == b"\x01\x02"
            ws.close(1000, "bye")
        assert (ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason) == (1000, "bye")
        with connect(ws_url(port), open_timeout=10, close_timeout=10) as ws:
            ws.send("close")
            with pytest.raises(Exception):
                ws.recv(timeout=10)
        assert ws.protocol.close_rcvd.code == 4000
        assert ws.protocol.close_rcvd.reason == "You asked me to close"


# -- chat ----------------------------------------------------------------------------------

def recv_json(ws):
    return json.loads(ws.recv(timeout=10))


def test_chat_example_fans_out(tmp_path):
    with example("chat", tmp_path) as port:
        status, _, page = get(port, "/")
        assert status == 200 and 'id="join-form"' in page and 'id="messages"' in page
        with connect(ws_url(port, "/ws?name=alice"), open_timeout=10, close_timeout=10) as a:
            assert recv_json(a) == {"type": "join", "name": "alice", "count": 1}
            with connect(ws_url(port, "/ws?name=bob"), open_timeout=10, close_timeout=10) as b:
                assert recv_json(a) == {"type": "join", "name": "bob", "count": 2}
                assert recv_json(b) == {"type": "join", "name": "bob", "count": 2}
                b.send("hello all")
                expected = {"type": "message", "name": "bob", "count": 2, "text": "hello all"}
                assert recv_json(a) == expected
                assert recv_json(b) == expected
            assert recv_json(a) == {"type": "leave", "name": "bob", "count": 1}
            with connect(ws_url(port, "/ws?name=" + "x" * 50), open_timeout=10,
                         close_timeout=10) as c:
                assert recv_json(c)["name"] == "x" * 32
            assert recv_json(a)["type"] == "join"
            assert recv_json(a)["type"] == "leave"
            with connect(ws_url(port, "/ws"), open_timeout=10, close_timeout=10) as d:
                assert recv_json(d)["name"] == "anonymous"


def raw_join(port, name):
    """A client that completes the handshake and then never reads."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(("GET /ws?name=%s HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                  "Sec-WebSocket-Key: %s\r\n\r\n" % (name, key)).encode())
    assert sock.recv(12) == b"HTTP/1.1 101"
    return sock


def test_chat_slow_client_does_not_stall_the_others(tmp_path):
    with example("chat", tmp_path) as port:
        slow = raw_join(port, "slow")
        with slow, connect(ws_url(port, "/ws?name=fast"), open_timeout=10,
                           close_timeout=10, max_size=None) as fast:
            assert recv_json(fast)["name"] == "fast"
            big = "y" * 60000  # far more in total than the slow client's buffers hold
            for n in range(150):
                fast.send("%d %s" % (n, big))
                message = recv_json(fast)
                assert message["text"].startswith("%d " % n)


def test_chat_dead_client_leaves(tmp_path):
    with example("chat", tmp_path) as port:
        with connect(ws_url(port, "/ws?name=alive"), open_timeout=10, close_timeout=10) as a:
            recv_json(a)
            dead = raw_join(port, "dead")
            assert recv_json(a)["name"] == "dead"
            dead.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            dead.close()  # a reset, no Close frame (H1)
            assert recv_json(a) == {"type": "leave", "name": "dead", "count": 1}
            a.send("still here")
            assert recv_json(a)["text"] == "still here"


def test_chat_room_drops_a_socket_whose_send_raises():
    chat = load_chat_module().Chat()
    watcher_client, watcher = WebSocketPair()
    watcher.serialize_attachment({"name": "watcher"})
    chat.accept_web_socket(watcher)
    broken_client, broken = WebSocketPair()
    broken.serialize_attachment({"name": "broken"})
    chat.accept_web_socket(broken)
    broken.close(1000)  # CLOSING: its peer never accepts, so no close event comes (I4)
    assert len(chat.get_web_sockets()) == 2
    chat.broadcast("ping")  # send() on the closing socket raises (C2): it leaves
    assert chat.get_web_sockets() == [watcher]
    received = queue.Queue()
    watcher_client.add_event_listener("message", lambda event: received.put(event.data))
    watcher_client.accept()
    assert received.get(timeout=10) == "ping"


def test_examples_are_short():
    for name in ("echo.py", "chat.py"):
        lines = [line for line in (EXAMPLES / name).read_text().splitlines() if line.strip()]
        assert len(lines) <= 66, name
