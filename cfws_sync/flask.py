"""Flask integration: ordinary views may return cfws_sync Responses, upgrades included.

::

    from flask import Flask
    from cfws_sync import Response, WebSocketPair
    from cfws_sync.flask import WebSockets

    app = Flask(__name__)
    WebSockets(app)

    @app.route("/ws")
    def ws():
        client, server = WebSocketPair()
        server.accept()
        server.add_event_listener("message", lambda event: server.send(event.data))
        return Response(None, status=101, web_socket=client)

What :meth:`WebSockets.init_app` does to the app:

- lets an upgrade request reach ordinary routes (Werkzeug's router would otherwise
  answer 400 unless the route was declared with ``websocket=True``);
- wraps ``app.wsgi_app``: an upgrade request with a bad handshake is refused (400, 403
  or 426, RULES J6) before any view runs, as ``websocket_app`` does; every request runs
  inside the extension's compatibility date and flags (SPEC §4);
- makes the before-request functions, the view, its error handlers and the
  after-request functions one *turn* of user code: in-memory deliveries they cause
  start when it ends, so listeners they add never miss a message (SPEC §2);
- teaches ``app.make_response`` the cfws_sync :class:`~cfws_sync.Response`.  A plain one
  becomes a Flask response; a 101 one becomes a Flask response that, when the WSGI
  server calls it, writes the 101 itself and serves the WebSocket until it ends, in the
  request's own thread or greenlet.  Headers added by after-request functions (a
  session cookie, say) are sent with the 101.

The request context stays pushed while the WebSocket is served, so ``flask.g`` and
``flask.request`` remain usable from listeners that run in the connection's reader.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Optional

from . import _runtime
from .cli import announce_upgrade
from .compat import _current
from .http import Headers, Request, Response
from .wsgi import StartResponse, WebSocketApp

if TYPE_CHECKING:
    import flask

__all__ = ["WebSockets"]

_HOP_HEADERS = ("content-length", "transfer-encoding")


def _unused_handler(request: Request) -> Response:  # pragma: no cover - never called
    raise RuntimeError("the Flask views are the handlers")


class WebSockets:
    """Let the views of a Flask app return cfws_sync Responses, WebSocket upgrades included.

    ``WebSockets(app)``, or ``ws = WebSockets(**options)`` then ``ws.init_app(app)`` in an
    app factory.

    :param app: the Flask app; or call :meth:`init_app` later.
    :param options: the options of :func:`cfws_sync.websocket_app`:
        ``compatibility_date``, ``compatibility_flags``, ``max_message_size``,
        ``allowed_origins``, ``subprotocols``, ``compression``, ``close_timeout``,
        ``max_queue``, ``ping_interval``, ``ping_timeout``.
    :raises TypeError: for an unknown option.
    :raises ValueError: for a bad option value (a malformed date, an unknown flag…).
    """

    def __init__(self, app: Optional["flask.Flask"] = None, **options: Any) -> None:
        #: The serving machinery, with the options; shared by every app this is bound to.
        self.serving = WebSocketApp(_unused_handler, **options)
        if app is not None:
            self.init_app(app)

    def init_app(self, app: "flask.Flask") -> None:
        """Bind to ``app`` (see the module's documentation for what changes).

        :param app: the Flask app.
        :raises RuntimeError: if the app already has a cfws_sync extension.
        """
        if "cfws_sync" in app.extensions:
            raise RuntimeError("cfws_sync.flask.WebSockets is already bound to this app")
        app.extensions["cfws_sync"] = self
        app.wsgi_app = _Middleware(app.wsgi_app, self.serving)  # type: ignore[method-assign]
        dispatch = app.full_dispatch_request
        make_response = app.make_response
        create_url_adapter = app.create_url_adapter

        def full_dispatch_request() -> "flask.Response":
            with _runtime.in_turn():
                return dispatch()

        def make_response_with_cfws(rv: Any) -> "flask.Response":
            if isinstance(rv, Response):
                return self._convert(app, rv)
            return make_response(rv)

        def create_url_adapter_for_upgrades(request: Any) -> Any:
            adapter = create_url_adapter(request)
            if adapter is not None and adapter.websocket:
                adapter.match = _ordinary_rules_too(adapter.match)  # type: ignore[method-assign]
            return adapter

        # Instance attributes shadow the methods for this app only.
        app.full_dispatch_request = full_dispatch_request  # type: ignore[method-assign]
        app.make_response = make_response_with_cfws  # type: ignore[method-assign]
        app.create_url_adapter = create_url_adapter_for_upgrades  # type: ignore[method-assign]

    def _convert(self, app: "flask.Flask", response: Response) -> "flask.Response":
        headers = [(k, v) for k, v in response.headers.raw_items()
                   if k.lower() not in _HOP_HEADERS]
        status = "%d %s" % (response.status, response.status_text)
        if response.web_socket is None:
            result = app.response_class(response.bytes(), status=status, headers=headers)
        else:
            result = _upgrade_class(app.response_class)(None, status=status, headers=headers)
            result.cfws_upgrade = (self.serving, response)
        if "content-type" not in response.headers:
            result.headers.pop("Content-Type", None)  # Flask's default; the handler set none
        return result


def _ordinary_rules_too(match: Callable[..., Any]) -> Callable[..., Any]:
    """Werkzeug routes an upgrade request only to rules made with ``websocket=True``;
    here an ordinary rule matches it too (one made with ``websocket=True`` first)."""
    from werkzeug.routing import WebsocketMismatch

    def lenient_match(*args: Any, **kwargs: Any) -> Any:
        try:
            return match(*args, **kwargs)
        except WebsocketMismatch:
            kwargs["websocket"] = False
            return match(*args, **kwargs)
    return lenient_match


class _Middleware:
    """Refuses bad handshakes before Flask runs and sets the compatibility settings."""

    def __init__(self, wsgi_app: Callable[..., Iterable[bytes]], serving: WebSocketApp) -> None:
        self.wsgi_app = wsgi_app
        self.serving = serving

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("HTTP_UPGRADE", "").lower() == "websocket":
            request = Request.from_environ(environ)
            refusal = self.serving.check_handshake(request)  # J6: before the view
            if refusal is not None:
                return self.serving.serve_response(request, refusal, environ, start_response)
        token = _current.set(self.serving.compat)
        try:
            return self.wsgi_app(environ, start_response)
        finally:
            _current.reset(token)


class _UpgradeMixin:
    """A Flask response that serves the WebSocket of a 101 cfws_sync Response."""

    cfws_upgrade: tuple[WebSocketApp, Response]
    headers: Any

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        serving, original = self.cfws_upgrade
        headers = Headers([(k, v) for k, v in self.headers.items()
                           if k.lower() not in _HOP_HEADERS])
        upgrade = Response(None, status=101, headers=headers, web_socket=original.web_socket)
        announce_upgrade(environ, upgrade)
        result = serving.serve_response(Request.from_environ(environ), upgrade, environ,
                                        start_response)
        if "werkzeug.socket" in environ:
            # Werkzeug's debugger would catch the end-of-connection signal of the result
            # and log it as a crash; ending quietly is enough there, since Werkzeug's
            # write into the finished connection fails as a dropped client.
            return _quiet(result)
        return result


def _quiet(result: Iterable[bytes]) -> Iterator[bytes]:
    try:
        yield from result
    except ConnectionError:
        pass
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()


_UPGRADE_CLASSES: dict[type, type] = {}


def _upgrade_class(base: type) -> Any:
    """The subclass of ``app.response_class`` used for upgrades, made once per class."""
    cls = _UPGRADE_CLASSES.get(base)
    if cls is None:
        cls = _UPGRADE_CLASSES[base] = type("WebSocketUpgrade", (_UpgradeMixin, base), {})
    return cls
