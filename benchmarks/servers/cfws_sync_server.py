"""cfws_sync echo and broadcast server on gevent pywsgi: ``python cfws_sync_server.py PORT``."""

import sys

from gevent import monkey

monkey.patch_all()

from urllib.parse import urlsplit  # noqa: E402

from gevent.pywsgi import WSGIServer  # noqa: E402

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


if __name__ == "__main__":
    WSGIServer(("127.0.0.1", int(sys.argv[1])), websocket_app(handle), log=None).serve_forever()
