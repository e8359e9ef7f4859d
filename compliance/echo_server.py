"""An echo server for the Autobahn|Testsuite fuzzingclient cases.

::

    python compliance/echo_server.py --port 9001 [--server gevent|werkzeug]

Serves on 127.0.0.1 a WebSocket that sends every message back as it came (text as text,
binary as binary), with permessage-deflate negotiated when offered and the limits the
9.x cases need: messages up to 32 MiB (the default), no cap on the number of fragments.
``gevent`` runs gevent's WSGI server, monkey-patched; ``werkzeug`` the threaded
development server on plain threads.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

MAX_MESSAGE_SIZE = 32 << 20  # 9.x sends up to 16 MiB in one message


def main() -> None:
    parser = argparse.ArgumentParser(description="cfws_sync echo server for Autobahn")
    parser.add_argument("--port", type=int, default=9001)
    parser.add_argument("--server", choices=("gevent", "werkzeug"), default="gevent")
    args = parser.parse_args()
    if args.server == "gevent":
        from gevent import monkey

        monkey.patch_all()
    app = make_app()
    print("cfws_sync echo (%s) on ws://127.0.0.1:%d" % (args.server, args.port), flush=True)
    if args.server == "gevent":
        from gevent.pywsgi import WSGIServer

        WSGIServer(("127.0.0.1", args.port), app, log=None).serve_forever()
    else:
        import logging

        from werkzeug.serving import run_simple

        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        run_simple("127.0.0.1", args.port, app, threaded=True)


def make_app() -> Callable[..., Any]:
    """The WSGI echo app (cfws_sync is imported here, after monkey-patching)."""
    from cfws_sync import Request, Response, WebSocketPair, websocket_app

    def echo(request: Request) -> Response:
        if request.headers.get("Upgrade") != "websocket":
            return Response("Expected Upgrade: websocket", status=426)
        client, server = WebSocketPair()
        server.binary_type = "arraybuffer"  # binary arrives as bytes, goes back as bytes
        server.add_event_listener("message", lambda event: server.send(event.data))
        server.accept()
        return Response(None, status=101, web_socket=client)

    return websocket_app(echo, compression=True, max_message_size=MAX_MESSAGE_SIZE)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository
    main()
