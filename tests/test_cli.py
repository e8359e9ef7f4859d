"""``cfws-sync serve`` and ``python -m cfws_sync``, run for real as processes."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import types
import urllib.error
import urllib.request

import pytest
from websockets.sync.client import connect

from cfws_sync import Response, WebSocketPair, websocket_app
from cfws_sync.cli import as_wsgi_app, main
from tests.servers import ROOT, free_port, wait_for_port

ENTRY_POINT = "from cfws_sync.cli import main; raise SystemExit(main())"  # as the script does


def probe(request):
    """Sends the binary type its socket got from the compatibility settings."""
    client, server = WebSocketPair()
    server.accept()
    server.send(server.binary_type)
    # the legacy pattern: answer the peer's Close (ignored under auto-reply, B3)
    server.add_event_listener("close", lambda event: server.close(event.code, event.reason))
    return Response(None, status=101, web_socket=client)


class Served:
    def __init__(self, proc, port, log_path):
        self.proc, self.port, self.log_path = proc, port, log_path

    def url(self, path="/"):
        return "ws://127.0.0.1:%d%s" % (self.port, path)

    def log(self):
        return self.log_path.read_text()

    def stop(self, signum=signal.SIGINT, timeout=15):
        self.proc.send_signal(signum)
        return self.proc.wait(timeout=timeout)


@contextlib.contextmanager
def served(tmp_path, *args, entry=("-m", "cfws_sync")):
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, *entry, "serve", *args, "--port", str(port)],
                                cwd=str(ROOT), env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, proc)
        yield Served(proc, port, log_path)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def run_cli(*args, timeout=30):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "cfws_sync", *args], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=timeout)


def port_is_free(port):
    """Whether a new server could listen on ``port`` (as servers do, with SO_REUSEADDR,
    since the connections we just closed may linger in TIME_WAIT)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            s.listen()
        except OSError:
            return False
    return True


def test_serve_handler_then_sigint(tmp_path):
    with served(tmp_path, "tests.apps:echo_handler") as server:
        with connect(server.url("/chat"), open_timeout=10, close_timeout=10) as ws:
            ws.send("hello")
            assert ws.recv(timeout=10) == "hello"
            ws.close(4000, "bye")
        assert not port_is_free(server.port)
        assert server.stop(signal.SIGINT) == 0
        assert port_is_free(server.port)
        log = server.log()
    assert "serving tests.apps:echo_handler on http://127.0.0.1:%d/" % server.port in log
    assert "GET /chat WebSocket open" in log
    assert "GET /chat WebSocket closed 4000 'bye' (clean" in log
    assert "Traceback" not in log
    assert "stopped" in log


def test_plain_requests_are_logged(tmp_path):
    with served(tmp_path, "tests.apps:echo_handler") as server:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen("http://127.0.0.1:%d/page" % server.port, timeout=10)
        info.value.close()
        assert info.value.code == 426
        assert server.stop() == 0
        assert "GET /page 426" in server.log()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_shutdown_closes_open_websockets_with_1001(tmp_path, signum):
    with served(tmp_path, "tests.apps:echo_handler", entry=("-c", ENTRY_POINT)) as server:
        with connect(server.url(), open_timeout=10, close_timeout=10) as ws:
            ws.send("x")
            assert ws.recv(timeout=10) == "x"
            server.proc.send_signal(signum)
            with pytest.raises(Exception):
                ws.recv(timeout=10)
            assert ws.protocol.close_rcvd.code == 1001  # RFC 6455 §7.4.1 going away
            assert ws.protocol.close_rcvd.reason == "Going Away"
        assert server.proc.wait(timeout=15) == 0
        assert port_is_free(server.port)
        assert "WebSocket closed 1001 'Going Away'" in server.log()


def test_shutdown_does_not_wait_for_a_silent_peer(tmp_path):
    """A peer that never answers our Close is dropped after the grace period."""
    with served(tmp_path, "tests.apps:echo_handler") as server:
        sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
        with sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                         b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 101")
            assert server.stop(timeout=20) == 0  # never read, never answered
        assert port_is_free(server.port)


@pytest.mark.parametrize("options", [
    ["--compatibility-date", "2026-01-01"],
    ["--compatibility-flag", "no_websocket_standard_binary_type",
     "--compatibility-flag", "web_socket_manual_reply_to_close"],
])
def test_compatibility_options(tmp_path, options):
    with served(tmp_path, "tests.test_cli:probe", *options) as server:
        with connect(server.url(), open_timeout=10, close_timeout=10) as ws:
            assert ws.recv(timeout=10) == "arraybuffer"  # D1
        assert server.stop() == 0


def test_newest_behaviour_by_default(tmp_path):
    with served(tmp_path, "tests.test_cli:probe") as server:
        with connect(server.url(), open_timeout=10, close_timeout=10) as ws:
            assert ws.recv(timeout=10) == "blob"
        assert server.stop() == 0


@pytest.mark.parametrize("target", ["tests.apps:echo", "tests.test_flask:app",
                                    "tests/apps.py:echo_handler"])
def test_serve_wsgi_apps_and_files(tmp_path, target):
    with served(tmp_path, target) as server:
        with connect(server.url("/ws"), open_timeout=10, close_timeout=10) as ws:
            ws.send("hi")
            assert ws.recv(timeout=10) == "hi"
        assert server.stop() == 0
        log = server.log()
    assert "GET /ws WebSocket open" in log, log
    assert "GET /ws WebSocket closed 1000" in log, log


@pytest.mark.parametrize("args,message", [
    (["nocolon"], "expected MODULE:HANDLER"),
    (["no_such_module_xyz:app"], "cannot import module 'no_such_module_xyz'"),
    (["tests.apps:missing"], "has no 'missing'"),
    (["tests.apps:echo", "--compatibility-date", "2026-01-01"], "apply to a handler"),
    (["tests.apps:echo_handler", "--compatibility-flag", "nope"], "unknown compatibility flag"),
    (["tests.apps:echo_handler", "--compatibility-date", "soon"], "compatibility date must be"),
])
def test_serve_refuses_bad_arguments(args, message):
    result = run_cli("serve", *args, "--port", str(free_port()))
    assert result.returncode == 2
    assert message in result.stderr


def test_port_in_use():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run_cli("serve", "tests.apps:echo_handler", "--port",
                         str(busy.getsockname()[1]))
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1" in result.stderr


def test_help():
    result = run_cli("--help")
    assert result.returncode == 0
    assert "serve" in result.stdout and "connect" in result.stdout
    result = run_cli("serve", "--help")
    assert "--compatibility-flag" in result.stdout and "8787" in result.stdout


def test_connect_dispatches_to_the_console(monkeypatch):
    calls = []
    console = types.ModuleType("cfws_sync._console")
    console.main = lambda argv: calls.append(argv) or 3
    monkeypatch.setitem(sys.modules, "cfws_sync._console", console)
    argv = ["connect", "ws://127.0.0.1:1/x", "--header", "Authorization: Bearer t",
            "--protocol", "chat", "--protocol", "v2", "--compatibility-date", "2026-01-01"]
    assert main(argv) == 3
    assert calls == [argv[1:]]


def test_connect_without_the_console(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "cfws_sync._console", None)  # as if it were absent
    assert main(["connect", "ws://127.0.0.1:1/"]) == 2
    assert "not available" in capsys.readouterr().err


def test_connect_runs_the_console():
    result = run_cli("connect", "--help")
    assert result.returncode == 0
    assert "usage: cfws-sync connect" in result.stdout
    assert "--header" in result.stdout and "--protocol" in result.stdout
    assert "--compatibility-date" in result.stdout


def test_handler_or_wsgi_app():
    def handler(request):
        return Response("x")

    class CallableHandler:
        def __call__(self, request):
            return Response("x")

    def wsgi(environ, start_response):
        return []

    app = websocket_app(handler)
    assert isinstance(as_wsgi_app(handler), type(app))
    assert isinstance(as_wsgi_app(CallableHandler()), type(app))
    assert isinstance(as_wsgi_app(lambda request: Response("x")), type(app))
    assert as_wsgi_app(app) is app
    assert as_wsgi_app(wsgi) is wsgi
    with pytest.raises(TypeError):
        as_wsgi_app(42)
