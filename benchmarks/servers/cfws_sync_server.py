"""cfws_sync echo and broadcast server: ``python cfws_sync_server.py PORT [werkzeug|apart]``

On gevent pywsgi (monkey-patched) by default, or Werkzeug's threaded server; or as
``cfws_sync_server:app`` under a server of one's choice (gunicorn's gthread worker).
``apart`` is gevent pywsgi with ``end_request_at_handshake=True``.
"""

import sys

THREADS = sys.argv[2:] == ["werkzeug"] or __name__ != "__main__"
if not THREADS:  # gevent, monkey-patched
    from gevent import monkey

    monkey.patch_all()

from urllib.parse import urlsplit  # noqa: E402
from serving import serve  # noqa: E402


from cfws_sync import Response, WebSocketPair, websocket_app  # noqa: E402

room = set()


def handle(request):
    client, server = WebSocketPair()
    server.binary_type = "arraybuffer"
    server.accept()
    if urlsplit(request.url).path == "/broadcast":
        room.add(server)

        def fan_out(event):
            for peer in list(room):
                try:
                    peer.send(event.data)
                except TypeError:
                    room.discard(peer)

        server.add_event_listener("message", fan_out)
        server.add_event_listener("close", lambda event: room.discard(server))
    else:
        server.add_event_listener("message", lambda event: server.send(event.data))
    return Response(None, status=101, web_socket=client)


app = websocket_app(handle, end_request_at_handshake=sys.argv[2:] == ["apart"])

if __name__ == "__main__":
    serve(app, THREADS)
