"""The events a socket dispatches: ``open``, ``message``, ``close`` and ``error``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Union

if TYPE_CHECKING:
    from .blob import Blob
    from .websocket import WebSocket

__all__ = ["Event", "MessageEvent", "CloseEvent", "ErrorEvent"]

MessageData = Union[str, bytes, "Blob"]


class Event:
    """An event of a given ``type``; ``target`` is the socket that dispatched it.

    :param type: the event type, e.g. ``"open"``.
    """

    __slots__ = ("type", "target")

    def __init__(self, type: str) -> None:
        #: The event type.
        self.type = type
        #: The socket that dispatched the event (``None`` until dispatched).
        self.target: Optional["WebSocket"] = None

    def __repr__(self) -> str:
        return "<%s type=%r>" % (type(self).__name__, self.type)


class MessageEvent(Event):
    """A message: ``data`` is a ``str`` (text), ``bytes`` or a ``Blob`` (binary, D1–D3).

    :param type: ``"message"``.
    :param data: the message.
    """

    __slots__ = ("data",)

    def __init__(self, type: str = "message", data: Any = None) -> None:
        super().__init__(type)
        #: The message: ``str``, ``bytes`` or ``Blob``.
        self.data = data

    def __repr__(self) -> str:
        data = self.data
        shown = repr(data) if len(repr(data)) <= 60 else repr(data)[:57] + "..."
        return "<MessageEvent data=%s>" % shown


class CloseEvent(Event):
    """The close of a socket.

    :param type: ``"close"``.
    :param code: the Close code (1005 when the peer sent none, 1006 for a drop).
    :param reason: the Close reason.
    :param was_clean: whether a Close frame was received (``wasClean``).
    """

    __slots__ = ("code", "reason", "was_clean")

    def __init__(
        self,
        type: str = "close",
        code: int = 0,
        reason: str = "",
        was_clean: bool = False,
        *,
        wasClean: Optional[bool] = None,
    ) -> None:
        super().__init__(type)
        #: The Close code.
        self.code = code
        #: The Close reason.
        self.reason = reason
        #: ``True`` when the peer's Close frame was received.
        self.was_clean = was_clean if wasClean is None else wasClean

    @property
    def wasClean(self) -> bool:
        """Alias of :attr:`was_clean`."""
        return self.was_clean

    def __repr__(self) -> str:
        return "<CloseEvent code=%d reason=%r was_clean=%s>" % (
            self.code,
            self.reason,
            self.was_clean,
        )


class ErrorEvent(Event):
    """An error: ``error`` is the exception itself, ``message`` its text as workerd words it.

    :param type: ``"error"``.
    :param error: the exception.
    :param message: the text; by default ``"Uncaught <class name>: <error>"``.
    """

    __slots__ = ("error", "message")

    def __init__(
        self,
        type: str = "error",
        error: Optional[BaseException] = None,
        message: Optional[str] = None,
    ) -> None:
        super().__init__(type)
        #: The exception.
        self.error = error
        if message is None:
            message = uncaught_message(error) if error is not None else ""
        #: Its text, e.g. ``"Uncaught Error: Network connection lost."``.
        self.message = message

    def __repr__(self) -> str:
        return "<ErrorEvent message=%r>" % (self.message,)


def uncaught_message(error: BaseException) -> str:
    """workerd's wording of an error event: ``Uncaught Error: <text>`` (A9, E4, M5)."""
    from .errors import WebSocketError

    name = "Error" if isinstance(error, WebSocketError) else type(error).__name__
    text = str(error)
    return "Uncaught %s: %s" % (name, text) if text else "Uncaught %s" % name
