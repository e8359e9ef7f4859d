"""``cfws-sync connect URL``: an interactive WebSocket client for the terminal.

Each line typed is sent as a text message; each message received is printed after
``< `` (binary ones as hex, or as their length when long).  Ctrl-D closes the connection
cleanly (code 1000) and Ctrl-C with 1001; when the server closes, its close code is
shown and the program ends.  The exit status is 0 after a clean close, 1 otherwise.
"""

from __future__ import annotations

import argparse
import queue
import sys
import threading
from typing import Any, Optional, TextIO

from .blob import Blob
from .client import ConnectError, connect
from .errors import DOMException
from .events import CloseEvent

__all__ = ["main"]

HEX_LIMIT = 32  # binary messages up to this many bytes are shown in full, as hex
CLOSE_WAIT = 15.0  # seconds: longer than the close timeout, after which the close is 1006


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cfws-sync connect", description="Talk to a WebSocket server from the terminal.")
    parser.add_argument("url", help="a ws:// or wss:// URL")
    parser.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                        help="an extra request header (repeatable)")
    parser.add_argument("--protocol", action="append", default=[], metavar="NAME",
                        help="a subprotocol to offer (repeatable)")
    parser.add_argument("--compatibility-date", metavar="YYYY-MM-DD")
    parser.add_argument("--compatibility-flag", action="append", default=[], metavar="FLAG")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="seconds to wait for the connection (default 10)")
    return parser


def describe(data: Any) -> str:
    """How a received message is shown."""
    if isinstance(data, str):
        return "< " + data
    raw = data.bytes() if isinstance(data, Blob) else bytes(data)
    if len(raw) <= HEX_LIMIT:
        return "< (binary, %d bytes) %s" % (len(raw), raw.hex())
    return "< (binary, %d bytes)" % len(raw)


def describe_close(event: CloseEvent) -> str:
    """How the end of the connection is shown."""
    reason = " (%s)" % event.reason if event.reason else ""
    return "Connection closed: %d%s." % (event.code, reason)


def main(argv: Optional[list[str]] = None, stdin: Optional[TextIO] = None,
         stdout: Optional[TextIO] = None) -> int:
    """Run the interactive client.

    :param argv: the arguments after ``connect``: the URL, ``--header 'Name: value'``,
        ``--protocol NAME``, ``--compatibility-date``, ``--compatibility-flag``,
        ``--timeout``.
    :param stdin: where lines are read (``sys.stdin``).
    :param stdout: where messages are shown (``sys.stdout``).
    :returns: the exit status: 0 after a clean close, 1 otherwise (or when the
        connection failed), 2 for bad arguments, 130 for Ctrl-C while connecting.
    """
    args = _parser().parse_args(argv)
    stdin, out = stdin or sys.stdin, stdout or sys.stdout
    headers = []
    for header in args.header:
        name, colon, value = header.partition(":")
        if not colon or not name.strip():
            print("--header must be 'Name: value', not %r" % header, file=sys.stderr)
            return 2
        headers.append((name.strip(), value.strip()))
    try:
        ws = connect(args.url, args.protocol or None, headers, timeout=args.timeout,
                     compatibility_date=args.compatibility_date,
                     compatibility_flags=args.compatibility_flag)
    except (ConnectError, DOMException, ValueError) as exc:
        print("Failed to connect to %s: %s" % (args.url, exc), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    inputs: queue.Queue[Optional[str]] = queue.Queue()
    printer = threading.Thread(target=_print_messages, args=(ws, out, inputs), daemon=True)
    try:
        chosen = " (subprotocol %s)" % ws.protocol if ws.protocol else ""
        print("Connected to %s%s." % (args.url, chosen), file=out, flush=True)
        threading.Thread(target=_read_lines, args=(stdin, inputs), daemon=True).start()
        printer.start()
        _send_lines(ws, inputs)
        ws.close(1000)
    except KeyboardInterrupt:
        ws.close(1001)
    event = ws.wait_closed(timeout=CLOSE_WAIT)
    if printer.ident is not None:
        printer.join(CLOSE_WAIT)  # every message is shown before the close
    print(describe_close(event), file=out, flush=True)
    return 0 if event.was_clean else 1


def _send_lines(ws: Any, inputs: "queue.Queue[Optional[str]]") -> None:
    """Send each line typed, until Ctrl-D or the socket closes."""
    while True:
        line = inputs.get()
        if line is None:
            return
        try:
            ws.send(line)
        except TypeError as exc:  # closing already
            print("Not sent: %s" % exc, file=sys.stderr)


def _read_lines(stdin: TextIO, inputs: "queue.Queue[Optional[str]]") -> None:
    for line in iter(stdin.readline, ""):
        inputs.put(line.rstrip("\r\n"))
    inputs.put(None)


def _print_messages(ws: Any, out: TextIO, inputs: "queue.Queue[Optional[str]]") -> None:
    for data in ws.messages():
        print(describe(data), file=out, flush=True)
    inputs.put(None)  # the server closed: stop waiting for input
