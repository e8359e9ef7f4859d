"""cfws_sync: the Cloudflare Workers WebSocket API for synchronous Python.

Write WebSocket code the way a Worker does (``WebSocketPair``, ``accept()``,
``add_event_listener``, ``send``, ``close``) and serve it from any WSGI server, under
gevent or threads, with the behaviour of Cloudflare's runtime.
"""

from .blob import Blob
from .client import (ConnectError, ConnectionClosed, ConnectTimeout, HandshakeError, connect,
                     fetch)
from .compat import Compatibility, compatibility
from .errors import DOMException, NetworkError, ProtocolError, RangeError, WebSocketError
from .events import CloseEvent, ErrorEvent, Event, MessageEvent
from .http import Headers, Request, Response
from .redis_backplane import RedisBackplane
from .room import Room
from .wsgi import websocket_app
from .websocket import WebSocket, WebSocketPair

__version__ = "0.1.0"

__all__ = [
    "Blob", "CloseEvent", "Compatibility", "ConnectError", "ConnectTimeout",
    "ConnectionClosed", "DOMException", "ErrorEvent", "Event", "HandshakeError",
    "Headers", "MessageEvent", "NetworkError", "ProtocolError", "RangeError",
    "RedisBackplane", "Request", "Response", "Room", "WebSocket", "WebSocketError",
    "WebSocketPair", "compatibility", "connect", "fetch", "signals", "websocket_app",
]

from . import signals  # noqa: E402
