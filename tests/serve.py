"""Run a WSGI app on one of the test matrix's servers:
``python -m tests.serve KIND APP PORT [FD]``.

KIND is ``gevent`` (pywsgi, monkey-patched), ``gevent-pool`` (the same, spawning into a
pool of 100 greenlets), ``gevent-handler`` (pywsgi with a subclass of its handler) or
``werkzeug`` (threaded dev server);
gunicorn is started by its own command line (see ``tests/servers.py``).  APP is
``module:attribute``.  With FD, the server accepts on that inherited listening socket
(bound to PORT by the parent); otherwise it binds 127.0.0.1:PORT itself.
"""

import sys


def main() -> None:
    kind, spec, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fd = int(sys.argv[4]) if len(sys.argv) > 4 else None
    if kind.startswith("gevent"):
        from gevent import monkey

        monkey.patch_all()
    import importlib
    import logging
    import socket

    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    module, _, attr = spec.partition(":")
    app = getattr(importlib.import_module(module), attr)
    if kind.startswith("gevent"):
        from gevent.pool import Pool
        from gevent.pywsgi import WSGIHandler, WSGIServer

        listener = socket.socket(fileno=fd) if fd is not None else ("127.0.0.1", port)
        spawn = Pool(100) if kind == "gevent-pool" else "default"
        handler = type("Handler", (WSGIHandler,), {}) if kind == "gevent-handler" \
            else WSGIHandler
        WSGIServer(listener, app, spawn=spawn, handler_class=handler).serve_forever()
    elif kind == "werkzeug":
        from werkzeug.serving import make_server

        make_server("127.0.0.1", port, app, threaded=True, fd=fd).serve_forever()
    else:
        raise SystemExit("unknown server kind %r" % kind)


if __name__ == "__main__":
    main()
