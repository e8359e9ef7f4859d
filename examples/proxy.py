"""Relay every WebSocket client to a backend, as a Worker proxy does (RULES K12).

    python examples/proxy.py --backend ws://127.0.0.1:9000/ws [--port 8787]

Both legs are half-open: each side's Close is passed on, and the other side's answer
comes back, so the close handshake runs end to end.  A drop (1006) cannot be sent: it
goes on as 1011.  As a WSGI app: ``make_app(backend)``, or ``app`` when the backend URL
is in the ``CFWS_PROXY_BACKEND`` environment variable.
"""

if __name__ == "__main__":  # patch before anything imports socket or ssl
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402

from cfws_sync import (ConnectError, DOMException, Response, WebSocketPair,  # noqa: E402
                       fetch, websocket_app)


def pass_close(to):
    def on_close(event):
        try:
            if event.code == 1005:  # the peer's Close carried no code: neither does ours
                to.close()
            else:
                to.close(event.code, event.reason)
        except DOMException:  # 1006, 1015, or another code nobody may send
            to.close(1011, "peer gone")
    return on_close


def make_app(backend_url):
    http_url = "http" + backend_url[2:]  # fetch() takes http(s) URLs (K11)

    def handle(request):
        if request.headers.get("Upgrade") != "websocket":
            return Response("Expected Upgrade: websocket", status=426)
        try:
            upstream = fetch(http_url, headers={"Upgrade": "websocket"}, timeout=10)
        except ConnectError as exc:
            return Response("Bad Gateway: %s" % exc, status=502)
        backend = upstream.web_socket
        if backend is None:
            return Response("Bad Gateway: backend answered %d" % upstream.status, status=502)
        client, server = WebSocketPair()
        for ws, other in ((server, backend), (backend, server)):
            ws.binary_type = "arraybuffer"
            ws.on_message = lambda event, other=other: other.send(event.data)
            ws.on_close = pass_close(other)
            ws.accept(allow_half_open=True)
        return Response(None, status=101, web_socket=client)

    return websocket_app(handle)


app = make_app(os.environ["CFWS_PROXY_BACKEND"]) if "CFWS_PROXY_BACKEND" in os.environ else None

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Relay WebSocket clients to a backend.")
    parser.add_argument("--backend", required=True, help="the backend's ws:// or wss:// URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8787)
    args = parser.parse_args()
    from gevent.pywsgi import WSGIServer

    WSGIServer((args.host, args.port), make_app(args.backend)).serve_forever()
