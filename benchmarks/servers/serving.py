"""Serve a WSGI app for the benchmark: gevent pywsgi, or Werkzeug's threads (``werkzeug``)."""

import sys


def serve(app, threads):
    port = int(sys.argv[1])
    if threads:
        import logging

        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        make_server("127.0.0.1", port, app, threaded=True).serve_forever()
    else:
        from gevent.pywsgi import WSGIServer

        WSGIServer(("127.0.0.1", port), app, log=None).serve_forever()
