"""``cfws-sync``: serve a handler on gevent, or talk to a WebSocket from a terminal.

::

    cfws-sync serve MODULE:HANDLER [--host 127.0.0.1] [--port 8787]
                    [--compatibility-date YYYY-MM-DD] [--compatibility-flag FLAG ...]
    cfws-sync connect URL [--header "Name: value" ...] [--protocol P ...]
                    [--compatibility-date YYYY-MM-DD]

``python -m cfws_sync`` is the same command.  ``serve`` monkey-patches the process with
gevent before it imports ``MODULE``, logs one line when a WebSocket opens and one when it
closes (with the close code), and shuts down cleanly on Ctrl-C or SIGTERM: it stops
accepting, closes open WebSockets with 1001 "Going Away" (RFC 6455 §7.4.1), waits a few
seconds for them to end, and exits 0.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import inspect
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, Callable, Iterable, Optional, Sequence

from . import _runtime, signals
from .http import Response
from .websocket import WebSocket
from .wsgi import StartResponse, WSGIApp, serving_app, websocket_app

__all__ = ["main", "serve", "run", "as_wsgi_app", "load_target"]

log = logging.getLogger("cfws_sync.serve")

#: Seconds ``serve`` waits for open WebSockets to end when it shuts down.
SHUTDOWN_GRACE = 3.0
#: The WSGI environ key of the callback told about each 101 response (see ``serve``).
UPGRADE_HOOK = "cfws_sync.on_upgrade"


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line.

    :param argv: the arguments after the program name; ``sys.argv[1:]`` by default.
    :returns: the exit status.
    """
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["connect"]:  # the console parses its own options
        return _connect(args_list[1:])
    return _serve_command(_parser().parse_args(args_list))


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cfws-sync", description="The Cloudflare Workers WebSocket API for Python.")
    from . import __version__

    parser.add_argument("--version", action="version", version="cfws_sync " + __version__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_parser = commands.add_parser(
        "serve", help="serve a handler or WSGI app on gevent",
        description="Serve MODULE:HANDLER on gevent's WSGI server.  HANDLER is a "
                    "handler(request) -> Response, or a WSGI app (websocket_app(), Flask).")
    serve_parser.add_argument("target", metavar="MODULE:HANDLER",
                              help="e.g. app:handle, or path/to/file.py:handle")
    serve_parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    serve_parser.add_argument("--port", type=int, default=8787, help="default: 8787")
    serve_parser.add_argument("--compatibility-date", metavar="YYYY-MM-DD",
                              help="the compatibility date; the newest behaviour by default")
    serve_parser.add_argument("--compatibility-flag", action="append", default=[],
                              metavar="FLAG", help="a compatibility flag (repeatable)")
    commands.add_parser(  # listed here; its options are parsed by the console itself
        "connect", add_help=False, help="open a WebSocket and talk to it from the terminal: "
        "connect URL [--header 'NAME: VALUE' ...] [--protocol P ...] "
        "[--compatibility-date YYYY-MM-DD] (see connect --help)")
    return parser


def _connect(argv: list[str]) -> int:
    try:
        console = importlib.import_module(__package__ + "._console")
    except ModuleNotFoundError as exc:
        if exc.name != __package__ + "._console":
            raise
        print("cfws-sync: 'connect' is not available in this installation", file=sys.stderr)
        return 2
    return int(console.main(argv) or 0)


def _serve_command(args: argparse.Namespace) -> int:
    _patch()  # before the app's module is imported
    options: dict[str, Any] = {}
    if args.compatibility_date:
        options["compatibility_date"] = args.compatibility_date
    if args.compatibility_flag:
        options["compatibility_flags"] = args.compatibility_flag
    try:
        target = load_target(args.target)
        app = as_wsgi_app(target, **options)
    except (LookupError, TypeError, ValueError) as exc:
        print("cfws-sync: %s" % exc, file=sys.stderr)
        return 2
    try:
        serve(app, args.host, args.port, name=args.target)
    except OSError as exc:
        print("cfws-sync: cannot listen on %s:%d: %s" % (args.host, args.port, exc),
              file=sys.stderr)
        return 1
    return 0


def load_target(spec: str) -> Any:
    """Import ``MODULE:NAME`` (``NAME`` may be dotted; ``MODULE`` may be a ``.py`` path).

    :raises LookupError: for a malformed spec, a missing module or a missing name.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise LookupError("expected MODULE:HANDLER, e.g. app:handle, not %r" % spec)
    if module_name.endswith(".py"):
        location = importlib.util.spec_from_file_location("__cfws_app__", module_name)
        if location is None or location.loader is None or not os.path.exists(module_name):
            raise LookupError("no such file: %s" % module_name)
        module = importlib.util.module_from_spec(location)
        sys.path.insert(0, os.path.dirname(os.path.abspath(module_name)))
        location.loader.exec_module(module)
    else:
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                raise LookupError("cannot import module %r" % module_name) from None
            raise
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise LookupError("module %r has no %r" % (module_name, attr)) from None
    return target


def as_wsgi_app(target: Any, **options: Any) -> WSGIApp:
    """A WSGI app for ``target``: a handler is wrapped with :func:`websocket_app`.

    A *handler* is a callable taking one positional argument (the request); anything
    else callable (``websocket_app(...)``, a Flask app) is taken as a WSGI app.

    :param options: :func:`websocket_app` options, for a handler only.
    :raises TypeError: ``target`` is not callable, or options were given for a WSGI app.
    """
    if not callable(target):
        raise TypeError("%r is neither a handler nor a WSGI app" % (target,))
    if _is_handler(target):
        return websocket_app(target, **options)
    if options:
        raise TypeError("compatibility options apply to a handler; %r is a WSGI app, give "
                        "them to websocket_app() or WebSockets() in its code" % (target,))
    return target  # type: ignore[no-any-return]


def _is_handler(target: Any) -> bool:
    if serving_app(target) is not None or hasattr(target, "wsgi_app"):
        return False
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in parameters
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.default is p.empty]
    return len(positional) == 1


def announce_upgrade(environ: Optional[dict[str, Any]], response: Response) -> None:
    """Tell the server running the app (``serve``) that a 101 ``response`` is about to be
    served, if it asked to know (the ``cfws_sync.on_upgrade`` environ key)."""
    if not environ or response.web_socket is None:
        return
    hook = environ.get(UPGRADE_HOOK)
    if hook is not None and environ.get("HTTP_UPGRADE", "").lower() == "websocket":
        hook(response.web_socket)


def run(app: WSGIApp, name: Optional[str] = None,
        argv: Optional[Sequence[str]] = None) -> None:
    """Serve ``app`` with ``--host`` and ``--port`` taken from the command line, as the
    examples do: ``if __name__ == "__main__": run(app)``.

    :param app: the WSGI app.
    :param name: what to call it in the help and the log.
    :param argv: the arguments; ``sys.argv[1:]`` by default.
    """
    parser = argparse.ArgumentParser(description="Serve %s on gevent." % (name or "the app"))
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument("--port", type=int, default=8787, help="default: 8787")
    args = parser.parse_args(argv)
    serve(app, args.host, args.port, name=name)


def _patch() -> None:
    from gevent import monkey  # type: ignore[import-untyped, unused-ignore]

    if not monkey.is_module_patched("socket"):
        monkey.patch_all()


def serve(app: WSGIApp, host: str = "127.0.0.1", port: int = 8787, *,
          name: Optional[str] = None) -> None:
    """Serve ``app`` on gevent's WSGI server until SIGINT or SIGTERM.  Blocks.

    Monkey-patches the process with gevent if that was not done yet.  Logs every
    request, and a line when each WebSocket opens and closes, to the
    ``cfws_sync.serve`` logger (set up at INFO level if logging was not configured).

    :param app: a WSGI app, e.g. ``websocket_app(handler)`` or a Flask app.
    :param host: the address to listen on.
    :param port: the port; ``0`` picks a free one (the log line says which).
    :param name: what to call the app in the log.
    :raises OSError: if the address cannot be listened on.
    """
    _patch()
    import gevent  # type: ignore[import-untyped, unused-ignore]
    import gevent.pool  # type: ignore[import-untyped, unused-ignore]
    from gevent.pywsgi import WSGIServer  # type: ignore[import-untyped, unused-ignore]

    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s %(message)s")
    connections = ConnectionLog(app)
    server = WSGIServer((host, port), connections, spawn=gevent.pool.Pool(), log=None)
    server.init_socket()
    shown_host = "[%s]" % host if ":" in host else host
    log.info("serving %s on http://%s:%d/ (Ctrl-C to quit)", name or "the app", shown_host,
             server.server_port)
    stopping: list[int] = []

    def stop(signum: int) -> None:
        if stopping:  # a second Ctrl-C: do not wait any longer
            server.pool.kill(block=False)
            return
        stopping.append(signum)
        log.info("%s: closing %d WebSocket(s) and stopping", signal.Signals(signum).name,
                 connections.close_all(1001, "Going Away"))
        server.close()  # serve_forever() then waits for open requests to end

    handlers = [gevent.signal_handler(s, stop, s) for s in (signal.SIGINT, signal.SIGTERM)]
    try:
        server.serve_forever(stop_timeout=SHUTDOWN_GRACE)
    finally:
        for handler in handlers:
            handler.cancel()
        connections.disconnect()
    log.info("stopped")


class _Record:
    """What is known about one request while it is served."""

    __slots__ = ("peer", "method", "path", "started", "end", "code", "reason", "clean",
                 "done", "logged")

    def __init__(self, environ: dict[str, Any]) -> None:
        self.peer = "%s:%s" % (environ.get("REMOTE_ADDR", "?"), environ.get("REMOTE_PORT", "?"))
        self.method = environ.get("REQUEST_METHOD", "GET")
        self.path = environ.get("PATH_INFO", "/")
        if environ.get("QUERY_STRING"):
            self.path += "?" + environ["QUERY_STRING"]
        self.started = time.monotonic()
        self.end: Optional[WebSocket] = None  # the app's end of the WebSocket
        self.code: Optional[int] = None
        self.reason = ""
        self.clean = False
        self.done = False
        self.logged = False

    def __str__(self) -> str:
        return "%s %s %s" % (self.peer, self.method, self.path)


class ConnectionLog:
    """WSGI middleware: an access line per request, and for a WebSocket a line when it
    opens and one when it closes, with the code.

    The app's end of each WebSocket is learnt from the 101 response (handlers, and
    Flask views under :class:`cfws_sync.flask.WebSockets`), which lets
    :meth:`close_all` close them at shutdown.  Other WSGI apps get the open line when
    the upgrade request arrives, and the code of the close seen while it is served.

    :param app: the WSGI app.
    """

    def __init__(self, app: WSGIApp) -> None:
        self.app = app
        serving = serving_app(app)
        self._hooked = serving is not None or "cfws_sync" in getattr(app, "extensions", {})
        if serving is not None and not hasattr(serving.handler, "cfws_announcing"):
            serving.handler = _announcing(serving.handler)
        self._lock = threading.Lock()
        self._records: set[_Record] = set()
        self._by_end: dict[WebSocket, _Record] = {}
        self._local = threading.local()
        signals.close.connect(self._on_close)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        record = _Record(environ)
        status: list[str] = []

        def capture(line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[:] = [line]
            return start_response(line, headers, exc_info)

        upgrade = environ.get("HTTP_UPGRADE", "").lower() == "websocket"
        environ[UPGRADE_HOOK] = functools.partial(self._opened, record)
        with self._lock:
            self._records.add(record)
        if upgrade and not self._hooked:
            log.info("%s WebSocket open", record)
        self._local.record = record
        try:
            return self.app(environ, capture)
        finally:
            self._local.record = None
            with self._lock:
                self._records.discard(record)
            if status and status[0].startswith("101"):
                self._ended(record)
            else:
                log.info("%s %s", record, status[0].split(" ")[0] if status else "-")

    def _opened(self, record: _Record, end: WebSocket) -> None:
        partner = _partner(end)
        with self._lock:
            record.end = partner
            if partner is not None:
                self._by_end[partner] = record
        log.info("%s WebSocket open", record)

    def _on_close(self, sender: Any, event: Any = None, **_: Any) -> None:
        with self._lock:
            record = self._by_end.pop(sender, None)
        if record is None:
            record = getattr(self._local, "record", None)
            if record is None or record.end is not None or record.code is not None:
                return
        record.code, record.reason, record.clean = event.code, event.reason, event.was_clean
        if record.done:
            self._log_close(record)

    def _ended(self, record: _Record) -> None:
        record.done = True
        if record.code is not None or record.end is None:
            self._log_close(record)
        else:  # the close event may still be on its way from another greenlet
            _runtime.spawn_later(1.0, functools.partial(self._log_close, record))

    def _log_close(self, record: _Record) -> None:
        with self._lock:
            if record.logged:
                return
            record.logged = True
            if record.end is not None:
                self._by_end.pop(record.end, None)
        seconds = time.monotonic() - record.started
        if record.code is None:
            log.info("%s WebSocket closed (%.1f s)", record, seconds)
        else:
            log.info("%s WebSocket closed %d%s (%s, %.1f s)", record, record.code,
                     " %r" % record.reason if record.reason else "",
                     "clean" if record.clean else "not clean", seconds)

    def close_all(self, code: int, reason: str) -> int:
        """Close every open WebSocket whose app end is known; returns how many."""
        with self._lock:
            ends = [r.end for r in self._records if r.end is not None]
        closed = 0
        for end in ends:
            if end.ready_state == WebSocket.OPEN:
                try:
                    end.close(code, reason)
                    closed += 1
                except Exception:  # not accepted by the app: the server drops it
                    log.debug("could not close %r", end, exc_info=True)
        return closed

    def disconnect(self) -> None:
        """Stop watching close events; log the closes still waiting for their code."""
        signals.close.disconnect(self._on_close)
        with self._lock:
            waiting = [r for r in self._by_end.values() if r.done and not r.logged]
        for record in waiting:
            self._log_close(record)


def _announcing(handler: Callable[[Any], Response]) -> Callable[[Any], Response]:
    @functools.wraps(handler)
    def announcing_handler(request: Any) -> Response:
        response = handler(request)
        if isinstance(response, Response):
            announce_upgrade(getattr(request, "environ", None), response)
        return response
    announcing_handler.cfws_announcing = True  # type: ignore[attr-defined]
    return announcing_handler


def _partner(end: WebSocket) -> Optional[WebSocket]:
    """The end of the pair the app keeps, for the end a 101 response carries."""
    link = getattr(getattr(end, "_machine", None), "link", None)
    partner = getattr(link, "end", None)
    return partner if isinstance(partner, WebSocket) else None
