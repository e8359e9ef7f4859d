"""flask-sock echo and broadcast server: ``python flask_sock_server.py PORT [werkzeug]``

On gevent pywsgi (monkey-patched) by default, or Werkzeug's threaded server; or as
``flask_sock_server:app`` under a server of one's choice (gunicorn's gthread worker).
"""

import sys

THREADS = sys.argv[2:] == ["werkzeug"] or __name__ != "__main__"
if not THREADS:  # gevent, monkey-patched
    from gevent import monkey

    monkey.patch_all()

from flask import Flask  # noqa: E402
from serving import serve  # noqa: E402
from flask_sock import Sock  # noqa: E402

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
    serve(app, THREADS)
