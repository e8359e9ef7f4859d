"""The Workers echo example, ported: a WebSocket server that sends back what it gets.

    python examples/echo.py [--port 8787]

then open http://127.0.0.1:8787/ and type.  Send ``close`` and the server closes the
socket with code 4000; the page's Close button closes it from the browser's side, and
the server answers with the browser's code (RULES B1).  ``cfws-sync serve
examples/echo.py:handle`` serves the same handler.
"""

from pathlib import Path
from urllib.parse import urlsplit

from cfws_sync import Response, WebSocketPair, websocket_app
from cfws_sync.cli import run

PAGE = (Path(__file__).parent / "echo.html").read_text(encoding="utf-8")


def handle(request):
    if urlsplit(request.url).path == "/":
        return Response(PAGE, headers={"Content-Type": "text/html; charset=utf-8"})
    upgrade_header = request.headers.get("Upgrade")
    if not upgrade_header or upgrade_header != "websocket":
        return Response("Expected Upgrade: websocket", status=426)

    client, server = WebSocketPair()
    server.accept()

    def on_message(event):
        if event.data == "close":
            server.close(4000, "You asked me to close")
        else:
            server.send(event.data)

    server.add_event_listener("message", on_message)
    return Response(None, status=101, web_socket=client)


app = websocket_app(handle)

if __name__ == "__main__":
    run(app, "examples/echo.py")
