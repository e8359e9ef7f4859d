"""``end_request_at_handshake``: under gevent's pywsgi, the request ends at the handshake.

By default the WSGI request lasts as long as its connection.  With the option, under
pywsgi's default spawn (a greenlet per connection, no pool), the app takes the
connection's socket for good and serves it in a greenlet of its own, so the request's
greenlet, its handler object, the parsed headers and the environ are freed at the
handshake.  pywsgi writes its access log line when a request ends, which makes the
difference visible from outside.  Under a pool the connection stays in its request, so
the pool's size still bounds the connections; so it does with a subclass of pywsgi's
handler (which may still use the socket), and on other servers.
"""

from __future__ import annotations

import os
import time

import pytest

from tests.rawclient import TEXT, RawClient, make_frame
from tests.servers import running_server
from tests.test_wsgi import close_cleanly


def access_logged(log_path, seconds: float) -> bool:
    """Whether the server logged the upgrade request's end within ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        if '" 101 ' in log_path.read_text(errors="replace"):
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def test_the_request_ends_at_the_handshake_and_the_connection_goes_on(tmp_path):
    log_path = tmp_path / "server.log"
    with running_server("gevent", "tests.apps:echo_apart", log_path=log_path) as server:
        # a frame right behind the request: pywsgi's reader holds it, and pywsgi must
        # not read the socket once its request ends
        with RawClient.open(server.port, "/ws", extra=make_frame(TEXT, b"early")) as client:
            assert client.recv().text == "early"
            assert access_logged(log_path, 5.0)
            for n in range(3):
                client.text("later %d" % n)
                assert client.recv().text == "later %d" % n
            close_cleanly(client)


@pytest.mark.parametrize("kind, app", [
    ("gevent", "echo"),  # the default
    ("gevent-pool", "echo_apart"),
    ("gevent-handler", "echo_apart"),
])
def test_otherwise_the_request_lasts_the_connection(tmp_path, kind, app):
    log_path = tmp_path / "server.log"
    with running_server(kind, "tests.apps:" + app, log_path=log_path) as server:
        with RawClient.open(server.port, "/ws", extra=make_frame(TEXT, b"early")) as client:
            assert client.recv().text == "early"
            assert not access_logged(log_path, 0.5)
            close_cleanly(client)
        assert access_logged(log_path, 5.0)


@pytest.mark.parametrize("kind", ["gevent", "gevent-pool"])
def test_listeners_see_the_handlers_context(kind):
    with running_server(kind, "tests.apps:context_echo") as server:
        with RawClient.open(server.port, "/room/7") as client:
            client.text("hi")
            assert client.recv().text == "/room/7 hi"
            close_cleanly(client)


def test_a_connection_served_apart_frees_its_descriptor():
    with running_server("gevent", "tests.apps:echo_apart") as server:
        fds = "/proc/%d/fd" % server.proc.pid
        with RawClient.open(server.port, "/ws") as warm:
            close_cleanly(warm)
        time.sleep(0.2)
        baseline = len(os.listdir(fds))
        clients = []
        try:
            for n in range(20):
                client = RawClient.open(server.port, "/ws")
                clients.append(client)
                client.text("x")
                assert client.recv().text == "x"
                if n % 2:
                    client.reset()  # no Close: the server sees the connection drop
                else:
                    close_cleanly(client)
        finally:
            for client in clients:
                client.abort()
        deadline = time.monotonic() + 5.0
        while len(os.listdir(fds)) > baseline and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(os.listdir(fds)) <= baseline
