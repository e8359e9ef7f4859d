"""Echo over every server of the matrix, with the independent ``websockets`` client."""

import pytest
from websockets.sync.client import connect

from tests.servers import SERVER_KINDS, running_server


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_echo_on_every_server(kind):
    with running_server(kind, "tests.apps:echo") as server:
        with connect(server.ws_url("/"), open_timeout=5, close_timeout=5) as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "hello"
            ws.send(b"\x00\x01")
            assert ws.recv(timeout=5) == b"\x00\x01"
        assert ws.protocol.close_code == 1000
