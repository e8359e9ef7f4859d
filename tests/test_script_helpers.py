"""The blocking helpers for scripts (SPEC §6): ``receive``, ``messages``, ``wait_closed``.

They see every message whether or not listeners exist, keep what arrived before they
were first called, stay bounded in memory, and work on pair ends served by
``websocket_app`` too.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
import threading
import time
from typing import Any, Iterator

import pytest

from cfws_sync import (Blob, CloseEvent, ConnectionClosed, NetworkError, Response, WebSocket,
                       WebSocketPair, _runtime, connect, websocket_app)
from tests.corekit import build_frame
from tests.test_client import (CONNECT_FAILED, ECHO, TEXT, TIMEOUT, Spawned, closed_port,
                               raw_client, sender, server_process, ws_server)
from tests.test_client import backend  # noqa: F401  (a fixture)

def readme_script() -> str:
    """The script of README.rst's "Scripts" section, as printed there."""
    text = (Path(__file__).resolve().parent.parent / "README.rst").read_text()
    section = text[text.index("\nScripts\n"):]
    marker = ".. code-block:: python\n\n"
    block = section[section.index(marker) + len(marker):]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line[4:])
    return "\n".join(lines).strip() + "\n"


def test_receive_in_order_text_and_binary():
    with ws_server(ECHO) as url:
        ws = connect(url, timeout=TIMEOUT)
        ws.send("one")
        ws.send(b"\x00two")
        assert ws.receive(timeout=TIMEOUT) == "one"
        blob = ws.receive(timeout=TIMEOUT)
        assert isinstance(blob, Blob) and blob.bytes() == b"\x00two"  # D1: blob
        ws.binary_type = "arraybuffer"
        ws.send(b"three")
        assert ws.receive(timeout=TIMEOUT) == b"three"
        ws.close()


def test_receive_times_out():
    with ws_server(ECHO) as url:
        ws = connect(url, timeout=TIMEOUT)
        with pytest.raises(TimeoutError):
            ws.receive(timeout=0.1)
        with pytest.raises(TimeoutError):
            ws.wait_closed(timeout=0.1)
        ws.close()


def test_messages_then_ConnectionClosed_with_code_and_reason():
    with ws_server(sender(["a", "b", "c"], (4000, "done"))) as url:
        ws = connect(url, timeout=TIMEOUT)
        event = ws.wait_closed(timeout=TIMEOUT)  # every message came before the close
        assert (event.code, event.reason, event.was_clean) == (4000, "done", True)
        assert [ws.receive(timeout=TIMEOUT) for _ in range(3)] == ["a", "b", "c"]
        with pytest.raises(ConnectionClosed) as info:
            ws.receive(timeout=TIMEOUT)
        assert (info.value.code, info.value.reason, info.value.was_clean) == (4000, "done", True)
        assert isinstance(info.value, NetworkError)


def test_messages_iterates_until_close():
    with ws_server(sender(["x%d" % n for n in range(50)])) as url:
        ws = connect(url, timeout=TIMEOUT)
        assert list(ws.messages(timeout=TIMEOUT)) == ["x%d" % n for n in range(50)]
        assert ws.wait_closed(timeout=TIMEOUT).reason == "that is all"


def test_helpers_and_listeners_both_see_every_message():
    with ws_server(ECHO) as url:
        ws = connect(url, timeout=TIMEOUT)
        heard = []
        ws.on_message = lambda event: heard.append(event.data)
        for n in range(5):
            ws.send(str(n))
        assert [ws.receive(timeout=TIMEOUT) for _ in range(5)] == ["0", "1", "2", "3", "4"]
        assert heard == ["0", "1", "2", "3", "4"]
        ws.close()
        assert ws.wait_closed(timeout=TIMEOUT).code == 1005


def test_unheard_messages_wait_for_the_first_receive():
    with ws_server(sender(["early 1", "early 2"])) as url:
        ws = connect(url, timeout=TIMEOUT)
        time.sleep(0.2)  # they arrive before any helper or listener
        assert ws.receive(timeout=TIMEOUT) == "early 1"
        assert ws.receive(timeout=TIMEOUT) == "early 2"


def test_before_the_first_receive_only_unheard_messages_are_kept():
    with ws_server(sender(["to the listener"])) as url:
        ws = connect(url, timeout=TIMEOUT)
        heard = []
        ws.on_message = lambda event: heard.append(event.data)
        ws.wait_closed(timeout=TIMEOUT)
        assert heard == ["to the listener"]
        with pytest.raises(ConnectionClosed):
            ws.receive(timeout=TIMEOUT)  # the listener had it; no copy was kept


def test_unread_messages_are_bounded_before_the_first_receive():
    messages = ["m%02d" % n + "." * 46 for n in range(10)]  # 50 characters each
    with ws_server(sender(messages)) as url:
        ws = connect(url, timeout=TIMEOUT, receive_buffer=100)
        ws.wait_closed(timeout=TIMEOUT)  # all ten arrived, with no reader
        kept = list(ws.messages(timeout=TIMEOUT))
        assert kept == messages[-2:]  # the newest 100 characters; the oldest went (A7)


def test_a_slow_reader_loses_nothing(backend):
    count = 200
    ws = connect_raw(backend, receive_buffer=64)
    conn = backend.conns[-1]
    for n in range(count):
        conn.text(str(n) * 20)
    conn.close(1000, "all sent")
    inbox = ws._inbox
    received, most = [], 0
    for data in ws.messages(timeout=TIMEOUT):  # reading pauses the network reader
        received.append(data)
        most = max(most, inbox.size)
        if len(received) % 50 == 0:
            time.sleep(0.05)
    assert received == [str(n) * 20 for n in range(count)]
    assert most <= 64 + 60  # bounded: the limit, and at most one message past it


def test_close_while_the_reader_waits_for_room():
    with ws_server(sender(["x" * 10] * 5)) as url:
        ws = connect(url, timeout=TIMEOUT, receive_buffer=10)
        assert ws.receive(timeout=TIMEOUT) == "x" * 10  # reading mode: the reader now waits
        time.sleep(0.2)
        ws.close(1000, "enough")
        event = ws.wait_closed(timeout=TIMEOUT)
        assert (event.code, event.was_clean) == (1000, True)  # the peer's Close was read


def test_a_protocol_failure_ends_the_helpers(backend):
    ws = connect_raw(backend)
    conn = backend.conns[-1]
    conn.text("before")
    conn.sock.sendall(build_frame(2, b"", mask=False, length=33554433))
    assert ws.receive(timeout=TIMEOUT) == "before"
    with pytest.raises(ConnectionClosed) as info:
        ws.receive(timeout=TIMEOUT)
    assert info.value.code == 1009 and not info.value.was_clean
    assert info.value.error.status_code == 1009
    event = ws.wait_closed(timeout=TIMEOUT)
    assert isinstance(event, CloseEvent) and event.code == 1009
    assert event.reason == "Message is too large: 33554433 > 33554432"


def connect_raw(backend: Any, **options: Any) -> WebSocket:
    thread = threading.Thread(target=backend.upgrade, daemon=True)
    thread.start()
    ws = connect(backend.url(), timeout=TIMEOUT, **options)
    thread.join(TIMEOUT)
    return ws


def test_helpers_on_a_failed_connection():
    ws = WebSocket("ws://127.0.0.1:%d/" % closed_port())
    with pytest.raises(ConnectionClosed) as info:
        ws.receive(timeout=TIMEOUT)
    assert (info.value.code, info.value.reason) == (1006, CONNECT_FAILED)
    assert isinstance(info.value.error, NetworkError)
    assert ws.wait_closed(timeout=TIMEOUT).code == 1006


def test_helpers_on_an_in_memory_pair():
    client, server = WebSocketPair()
    server.accept()
    client.accept()
    with pytest.raises(TimeoutError):
        server.receive(timeout=0.05)  # a pair end's helpers watch from their first call
    client.send("ping")
    assert server.receive(timeout=TIMEOUT) == "ping"
    server.close(4000, "bye")
    assert client.wait_closed(timeout=TIMEOUT).code == 4000
    assert server.wait_closed(timeout=TIMEOUT).code == 4000


def test_helpers_need_accept_on_a_pair_end():
    client, server = WebSocketPair()
    with pytest.raises(TypeError):
        server.receive(timeout=0.1)


@contextlib.contextmanager
def serve_in_process(app: Any) -> Iterator[int]:
    """Serve a WSGI app from this process with Werkzeug's threaded server (greenlets
    under gevent).  gevent's pywsgi runs out of process in these tests: in this test
    process, after it served an upgrade, a later test saw a socket misbehave once in
    eight runs, and libev abort once."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        thread.join(TIMEOUT)


def test_helpers_on_a_served_pair_end():
    results: list[Any] = []
    done = threading.Event()

    def handler(request):
        client, server = WebSocketPair()
        server.accept()
        incoming = server.messages(timeout=TIMEOUT)  # watching from before the 101

        def loop():
            for data in incoming:
                server.send("echo: %s" % data)
            results.append(server.wait_closed(timeout=TIMEOUT).code)
            done.set()

        _runtime.spawn(loop)
        return Response(None, status=101, web_socket=client)

    with serve_in_process(websocket_app(handler)) as port:
        peer = raw_client(port)
        peer.send(TEXT, b"one")  # right behind the handshake
        peer.send(TEXT, b"two")
        assert peer.recv().text == "echo: one"
        assert peer.recv().text == "echo: two"
        peer.close(1000, "bye")
        assert peer.recv().close == (1000, "bye")
        peer.expect_eof()
        peer.drop()
        assert done.wait(TIMEOUT)
        assert results == [1000]


def test_the_readme_script_runs(tmp_path):
    with server_process("gevent", "tests.apps:echo") as server:
        script = tmp_path / "script.py"
        script.write_text(readme_script().replace("ws://127.0.0.1:8787/", server.ws_url("/")))
        out, err = tmp_path / "out.txt", tmp_path / "err.txt"
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            proc = Spawned([sys.executable, str(script)], stdout=stdout.fileno(),
                           stderr=stderr.fileno())
        try:
            proc.wait(30)
        finally:
            proc.stop()
    assert proc.returncode == 0, err.read_text()
    assert out.read_text() == "received: hello\nclosed: 1000 done\n"
