"""The differential oracle's Worker, ported to cfws_sync, served for one oracle variant.

::

    python -m tests.compat.worker_app --port 8787 --variant current

serves on 127.0.0.1 with gevent's WSGI server (monkey-patched), with the compatibility
date and flags of that variant.  Paths, query parameters and log entries are those of
``shared/oracle/workers/worker.js``:

* ``/ws/<behaviour>?id=...``: an upgrade behaviour (``worker_ws``);
* ``/plain/<behaviour>?id=...``: a plain behaviour (``worker_plain``);
* ``/__log?id=...``: what was observed for that id, as JSON.

The port follows the Worker line by line, so that what still differs from a workerd trace
is the runtime.  Timers are scoped to their request, as in workerd (see ``jsport``).
"""

from __future__ import annotations

if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
from typing import Any, Callable, Iterable, Optional  # noqa: E402

import gevent  # noqa: E402

from cfws_sync import Response, websocket_app  # noqa: E402

from .jsport import VARIANTS, Entry, Log, Scope, err_info, js_json, run_async  # noqa: E402
from .worker_plain import PLAIN_BEHAVIOURS  # noqa: E402
from .worker_ws import WS_BEHAVIOURS, Behaviour, Url  # noqa: E402

#: id -> the entries observed for it, in order (module-global, as in the Worker).
LOGS: dict[str, list[Entry]] = {}


def log_for(id: str) -> Log:
    log = LOGS.get(id)
    if log is None:
        log = LOGS[id] = []
    return log


def _call(entry: tuple[Behaviour, bool], request: Any, url: Url, log: Log,
          scope: Scope) -> Any:
    fn, is_async = entry
    if is_async:
        return run_async(fn, request, url, log, scope)
    return fn(request, url, log, scope)


def _threw(log: Log, exc: Exception) -> Response:
    log.append({"note": "behaviour threw", "error": err_info(exc)})
    return Response("behaviour threw: %s" % err_info(exc).get("message"), status=500)


def handle(request: Any) -> Response:
    """The Worker's ``fetch`` handler."""
    url = Url(request.url)
    id = url.search_params.get("id") or "default"
    if url.pathname == "/__log":
        return Response(js_json(LOGS.get(id) or []),
                        headers={"content-type": "application/json"})
    scope = Scope.current()
    log = log_for(id)
    parts = url.pathname.split("/")
    kind = parts[1] if len(parts) > 1 else None
    name = parts[2] if len(parts) > 2 else ""
    if kind == "ws":
        upgrade = request.headers.get("Upgrade")
        log.append({"note": "request", "upgrade": upgrade,
                    "secExt": request.headers.get("Sec-WebSocket-Extensions")})
        if upgrade != "websocket":
            # The documented pattern.
            return Response("Expected Upgrade: websocket", status=426)
        behaviour = WS_BEHAVIOURS.get(name)
        if behaviour is None:
            return Response("no such behaviour", status=404)
        try:
            return _call(behaviour, request, url, log, scope)  # type: ignore[no-any-return]
        except Exception as exc:
            return _threw(log, exc)
    if kind == "plain":
        behaviour = PLAIN_BEHAVIOURS.get(name)
        if behaviour is None:
            return Response("no such behaviour", status=404)
        try:
            result = _call(behaviour, request, url, log, scope)
        except Exception as exc:
            return _threw(log, exc)
        if isinstance(result, Response):
            return result
        return Response(str(result))
    return Response("not found", status=404)


class Scoped:
    """WSGI middleware: each request is a :class:`Scope`, over when the app returns
    (for an upgrade, when the connection has ended)."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        scope = Scope()
        token = scope.enter()
        try:
            return list(self.app(environ, start_response))
        finally:
            Scope.leave(token)
            scope.end()


def make_app(variant: str) -> Scoped:
    """The WSGI app of the Worker for one oracle variant (compatibility date and flags)."""
    date, flags = VARIANTS[variant]
    return Scoped(websocket_app(handle, compatibility_date=date, compatibility_flags=flags))


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="current")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    from gevent.pywsgi import WSGIServer

    server = WSGIServer(("127.0.0.1", args.port), make_app(args.variant), log=None)
    print("worker_app %s on 127.0.0.1:%d" % (args.variant, args.port), flush=True)
    gevent.spawn(_exit_with_parent, os.getppid(), server)
    server.serve_forever()


def _exit_with_parent(parent: int, server: Any) -> None:
    """Stop serving when the process that started this one is gone (no orphans)."""
    while os.getppid() == parent:
        gevent.sleep(1.0)
    server.stop(timeout=1)


if __name__ == "__main__":
    main()
