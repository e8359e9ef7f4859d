"""The exceptions of the Workers API, and the error texts workerd uses, verbatim.

``TypeError`` is Python's own, as in JavaScript.  ``DOMException`` carries a ``name``
(``"InvalidAccessError"``, ``"SyntaxError"``, …) the way the browser class does, and
``RangeError`` is a ``ValueError``.
"""

from __future__ import annotations

__all__ = ["DOMException", "RangeError", "WebSocketError", "ProtocolError", "NetworkError"]


class DOMException(Exception):
    """An exception with a DOM ``name``, as raised by ``close()`` and ``WebSocket()``.

    :param message: the message, workerd's text.
    :param name: the DOM error name, e.g. ``"InvalidAccessError"`` or ``"SyntaxError"``.
    """

    def __init__(self, message: str = "", name: str = "Error") -> None:
        super().__init__(message)
        #: The DOM error name, e.g. ``"InvalidAccessError"``.
        self.name = name
        #: The message text.
        self.message = message


class RangeError(ValueError):
    """JavaScript's ``RangeError``: a value outside the allowed range (RULES J3)."""


class WebSocketError(Exception):
    """Base class of the errors a socket reports in an ``error`` event."""

    @property
    def message(self) -> str:
        """The error text, as JavaScript's ``error.message``."""
        return str(self)


class ProtocolError(WebSocketError):
    """The peer broke the protocol (RULES M5) or sent a message over the size limit (E4).

    The socket was failed with a Close frame carrying :attr:`status_code` and
    :attr:`description`; the app sees only an ``error`` event.
    """

    def __init__(self, status_code: int, description: str) -> None:
        super().__init__(
            "WebSocket protocol error; protocolError.statusCode = %d; "
            "protocolError.description = %s" % (status_code, description)
        )
        #: The Close code sent to the peer (1002, 1007 or 1009).
        self.status_code = status_code
        #: The Close reason sent to the peer.
        self.description = description


class NetworkError(WebSocketError):
    """The connection was lost or could not be established (RULES K4, K5)."""


# Error texts, verbatim from workerd (RULES.md quotes each).
SEND_BEFORE_ACCEPT = (  # A2
    "You must call one of accept() or state.acceptWebSocket() on this WebSocket "
    "before sending messages."
)
SEND_AFTER_CLOSE = "Can't call WebSocket send() after close()."  # C2
INVALID_CLOSE_CODE = "Invalid WebSocket close code: %d."  # C5
REASON_WITHOUT_CODE = (  # C9
    "If you specify a WebSocket close reason, you must also specify a code."
)
REASON_TOO_LONG = (  # C10
    "WebSocket close reason must not be longer than 123 bytes when UTF-8 encoded."
)
SEND_BAD_TYPE = (  # A6, with the Python hint of SPEC §8.5
    "Failed to execute 'send' on 'WebSocket': parameter 1 is not of type "
    "'ArrayBuffer or ArrayBufferView or string'."
)
DROPPED_REASON = "WebSocket disconnected without sending Close frame."  # H1
CONNECT_FAILED_REASON = "Failed to establish websocket connection"  # K4, K5
NETWORK_LOST = "Network connection lost."  # K4, K5
