"""``cfws_sync.testing``: WebSockets to handlers and WSGI apps in memory, no port."""

import json

import flask
import pytest

import cfws_sync
from cfws_sync import Response, WebSocketPair, websocket_app
from cfws_sync.flask import WebSockets
from cfws_sync.testing import HandshakeError, TestClient, WebSocketClosed

server_closes = []


def handle(request):
    if request.headers.get("Upgrade") != "websocket":
        return Response("Expected Upgrade: websocket", status=426, headers={"X-Handler": "1"})
    client, server = WebSocketPair()
    server.accept()
    if "greet" in request.url:
        server.send("welcome")  # before the client says anything

    def on_message(event):
        if event.data == "bye":
            server.close(4000, "done")
        elif event.data == "boom":
            raise RuntimeError("listener failed")
        elif event.data == "binary_type":
            server.send(server.binary_type)
        else:
            server.send(event.data)

    server.add_event_listener("message", on_message)
    server.add_event_listener("close", lambda event: server_closes.append(event.code))
    protocol = request.headers.get("Sec-WebSocket-Protocol")
    headers = {"Sec-WebSocket-Protocol": protocol.split(",")[0]} if protocol else None
    return Response(None, status=101, web_socket=client, headers=headers)


def test_echo_text_and_binary_then_close():
    del server_closes[:]
    with TestClient(handle).websocket("/ws") as ws:
        ws.send("hi")
        assert ws.receive(timeout=5) == "hi"
        ws.send(b"\x00\x01\xff")
        assert ws.receive(timeout=5) == b"\x00\x01\xff"
        ws.close(1000, "done")
        assert ws.closed
    assert (ws.close_code, ws.close_reason) == (1000, "done")  # B1: the auto-reply
    assert server_closes == [1000]  # the app had its close event when the block ended


def test_server_close_is_seen_by_receive():
    with TestClient(handle).websocket("/ws") as ws:
        ws.send("bye")
        with pytest.raises(WebSocketClosed) as info:
            ws.receive(timeout=5)
    assert (info.value.code, info.value.reason, info.value.was_clean) == (4000, "done", True)
    assert isinstance(info.value, cfws_sync.ConnectionClosed)  # as the script helpers raise
    assert (ws.close_code, ws.close_reason) == (4000, "done")


def test_message_sent_on_open_arrives():
    with TestClient(handle).websocket("/ws?greet=1") as ws:
        assert ws.receive(timeout=5) == "welcome"


def test_messages_before_the_close_stay_readable():
    with TestClient(handle).websocket("/ws") as ws:
        ws.send("one")
        ws.send("two")
        ws.send("bye")
        assert ws.wait_closed(timeout=5) == 4000
        assert ws.receive(timeout=5) == "one"
        assert ws.receive(timeout=5) == "two"
        with pytest.raises(WebSocketClosed):
            ws.receive(timeout=5)


def test_empty_close_is_answered_empty():
    with TestClient(handle).websocket("/ws") as ws:
        ws.close(None)
    assert ws.close_code == 1005  # C1: no code in the Close frame


def test_receive_times_out():
    with TestClient(handle).websocket("/ws") as ws:
        with pytest.raises(TimeoutError):
            ws.receive(timeout=0.2)
        ws.send("still open")
        assert ws.receive(timeout=5) == "still open"


def test_listener_exception_closes_with_1011():
    with TestClient(handle).websocket("/ws") as ws:
        ws.send("boom")
        assert ws.wait_closed(timeout=5) == 1011  # SPEC §8.6


def test_options_reach_the_handler():
    client = TestClient(handle, compatibility_date="2026-01-01", max_message_size=20)
    with client.websocket("/ws") as ws:
        ws.send("binary_type")
        assert ws.receive(timeout=5) == "arraybuffer"  # D1, legacy date
        ws.send("x" * 21)
        assert ws.wait_closed(timeout=5) == 1009  # E1
        assert ws.close_reason == "Message is too large: 21 > 20"


def test_plain_request():
    response = TestClient(handle).get("/ws")
    assert response.status == 426  # J1
    assert response.text() == "Expected Upgrade: websocket"
    assert response.headers.get("X-Handler") == "1"


def test_J6_bad_handshake_raises():
    with pytest.raises(HandshakeError) as info:
        TestClient(handle).websocket("/ws", headers={"Sec-WebSocket-Version": "8"})
    assert info.value.status == 426
    assert isinstance(info.value, cfws_sync.HandshakeError)  # as connect() raises
    assert info.value.headers.get("Sec-WebSocket-Version") == "13"
    assert info.value.response.text() == "ERROR: The requested WebSocket version is not supported."


def test_refusing_handler_raises_with_its_response():
    def refuse(request):
        return Response("go away", status=403)

    with pytest.raises(HandshakeError) as info:
        TestClient(refuse).websocket("/")
    assert (info.value.status, info.value.response.text()) == (403, "go away")


def test_J7_subprotocol():
    with TestClient(handle).websocket("/ws", protocols=["chat.v2", "chat.v1"]) as ws:
        assert ws.subprotocol == "chat.v2"


def test_compression_negotiated():
    with TestClient(handle).websocket("/ws", compression=True) as ws:
        assert ws.response_headers.get("Sec-WebSocket-Extensions").startswith("permessage-deflate")
        text = "compress me " * 1000
        ws.send(text)
        assert ws.receive(timeout=5) == text


def test_websocket_app_and_open_socket_count():
    app = websocket_app(handle)
    client = TestClient(app)
    sockets = [client.websocket("/ws") for _ in range(3)]
    for n, ws in enumerate(sockets):
        ws.send(str(n))
    assert [ws.receive(timeout=5) for ws in sockets] == ["0", "1", "2"]
    for ws in sockets:
        with ws:
            pass
    assert all(ws.close_code == 1000 for ws in sockets)


def test_options_refused_for_a_wsgi_app():
    with pytest.raises(TypeError):
        TestClient(websocket_app(handle), compatibility_date="2026-01-01")


def test_flask_app():
    app = flask.Flask(__name__)
    WebSockets(app)

    @app.route("/ws")
    def ws_view():
        client, server = WebSocketPair()
        server.accept()
        server.add_event_listener("message", lambda event: server.send(event.data.upper()))
        return Response(None, status=101, web_socket=client)

    @app.route("/info")
    def info():
        return flask.jsonify(path=flask.request.path)

    client = TestClient(app)
    with client.websocket("/ws") as ws:
        ws.send("shout")
        assert ws.receive(timeout=5) == "SHOUT"
    assert ws.close_code == 1000
    response = client.get("/info")
    assert response.status == 200
    assert json.loads(response.text()) == {"path": "/info"}
