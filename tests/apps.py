"""Small WSGI apps the server tests run (imported by server processes)."""

from cfws_sync import Response, WebSocketPair, websocket_app


def echo_handler(request):
    if request.headers.get("Upgrade") != "websocket":
        return Response("Expected Upgrade: websocket", status=426)
    client, server = WebSocketPair()
    server.accept()
    server.add_event_listener("message", lambda event: server.send(event.data))
    return Response(None, status=101, web_socket=client)


echo = websocket_app(echo_handler)
