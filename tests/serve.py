"""Run a WSGI app on one of the test matrix's servers: ``python -m tests.serve KIND APP PORT``.

KIND is ``gevent`` (pywsgi, monkey-patched) or ``werkzeug`` (threaded dev server);
gunicorn is started by its own command line (see ``tests/servers.py``).  APP is
``module:attribute``.
"""

import sys


def main() -> None:
    kind, spec, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if kind == "gevent":
        from gevent import monkey

        monkey.patch_all()
    import importlib
    import logging

    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    module, _, attr = spec.partition(":")
    app = getattr(importlib.import_module(module), attr)
    if kind == "gevent":
        from gevent.pywsgi import WSGIServer

        WSGIServer(("127.0.0.1", port), app).serve_forever()
    elif kind == "werkzeug":
        from werkzeug.serving import run_simple

        run_simple("127.0.0.1", port, app, threaded=True)
    else:
        raise SystemExit("unknown server kind %r" % kind)


if __name__ == "__main__":
    main()
