"""flask-sock echo and broadcast server on gevent pywsgi: ``python flask_sock_server.py PORT``."""

import sys

from gevent import monkey

monkey.patch_all()

from flask import Flask  # noqa: E402
from flask_sock import Sock  # noqa: E402
from gevent.pywsgi import WSGIServer  # noqa: E402

app = Flask(__name__)
sock = Sock(app)
room = set()


@sock.route("/echo")
def echo(ws):
    while True:
        ws.send(ws.receive())


@sock.route("/broadcast")
def broadcast(ws):
    room.add(ws)
    try:
        while True:
            data = ws.receive()
            for peer in list(room):
                try:
                    peer.send(data)
                except Exception:
                    room.discard(peer)
    finally:
        room.discard(ws)


if __name__ == "__main__":
    WSGIServer(("127.0.0.1", int(sys.argv[1])), app, log=None).serve_forever()
