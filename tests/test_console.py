"""The interactive client, ``cfws_sync._console.main``, driven through a pseudo-terminal."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
import time
from typing import Iterator

import pytest

from tests.test_client import COMMANDS, TIMEOUT, Spawned, closed_port, ws_server

COMMAND = "import sys; from cfws_sync._console import main; sys.exit(main(sys.argv[1:]))"


class Terminal:
    """The console running on a pty: type lines, read what it shows."""

    def __init__(self, *args: str) -> None:
        self.master, slave = os.openpty()
        try:
            self.proc = Spawned([sys.executable, "-c", COMMAND, *args],
                                stdin=slave, stdout=slave, stderr=slave)
        finally:
            os.close(slave)
        self.output = ""

    def type(self, data: str) -> None:
        os.write(self.master, data.encode())

    def expect(self, text: str, timeout: float = TIMEOUT) -> str:
        """Read until ``text`` has been shown; return everything shown so far."""
        deadline = time.monotonic() + timeout
        while text not in self.output:
            left = deadline - time.monotonic()
            assert left > 0, "%r not shown; the terminal shows %r" % (text, self.output)
            ready, _, _ = select.select([self.master], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # EIO: the console has exited
                    chunk = b""
                if not chunk:
                    assert text in self.output, "exited; it showed %r" % (self.output,)
                self.output += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
        return self.output

    def exit_status(self) -> int:
        return self.proc.wait(TIMEOUT)

    def close(self) -> None:
        self.proc.stop()
        os.close(self.master)


@contextlib.contextmanager
def terminal(*args: str) -> Iterator[Terminal]:
    term = Terminal(*args)
    try:
        yield term
    finally:
        term.close()


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    with ws_server(COMMANDS) as url:
        yield url


def test_lines_are_sent_replies_shown_and_ctrl_d_closes(server_url):
    with terminal(server_url) as term:
        term.expect("Connected to %s." % server_url)
        term.type("hello\n")
        term.expect("< hello\n")
        term.type("héllo wörld\n")
        term.expect("< héllo wörld\n")
        term.type("\x04")  # Ctrl-D at the start of a line: end of input
        term.expect("Connection closed: 1000.")
        assert term.exit_status() == 0


def test_binary_messages_and_the_server_closing(server_url):
    with terminal(server_url) as term:
        term.expect("Connected to")
        term.type("binary\n")
        term.expect("< (binary, 3 bytes) 0001ff\n")
        term.type("big\n")
        term.expect("< (binary, 1000 bytes)\n")
        term.type("close\n")  # the server closes; the console ends without more input
        term.expect("Connection closed: 4000 (server bye).")
        assert term.exit_status() == 0


def test_header_and_protocol_options():
    with ws_server(COMMANDS, subprotocols=["v2"]) as server_url, \
            terminal(server_url, "--header", "X-Test: 42", "--protocol", "chat",
                     "--protocol", "v2") as term:
        term.expect("Connected to %s (subprotocol v2)." % server_url)
        term.type("headers\n")
        shown = term.expect("}\n")
        assert '"X-Test": "42"' in shown
        assert '"Sec-WebSocket-Protocol": "chat, v2"' in shown
        term.type("\x04")
        term.expect("Connection closed: 1000.")


def test_ctrl_c_closes_with_1001(server_url):
    with terminal(server_url) as term:
        term.expect("Connected to")
        term.proc.send_signal(signal.SIGINT)
        term.expect("Connection closed: 1001.")
        assert term.exit_status() == 0


def test_compatibility_date_option(server_url):
    with terminal(server_url, "--compatibility-date", "2025-06-01") as term:
        term.type("close\n")  # legacy date: no automatic reply; the console answers
        term.expect("Connection closed: 4000 (server bye).")
        assert term.exit_status() == 0
    with terminal(server_url, "--compatibility-date", "June 1st") as term:
        term.expect("Failed to connect")
        assert "compatibility date must be 'YYYY-MM-DD'" in term.expect("\n")
        assert term.exit_status() == 1


def test_connection_refused():
    url = "ws://127.0.0.1:%d/" % closed_port()
    with terminal(url) as term:
        shown = term.expect("Failed to connect to %s: cannot connect" % url)
        assert "refused" in term.expect("\n") or "refused" in shown
        assert term.exit_status() == 1
