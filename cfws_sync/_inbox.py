"""The blocking helpers for scripts: ``receive``, ``messages`` and ``wait_closed``
(SPEC §6), and the inbox of events they read.

Buffering of the helpers
------------------------
Every socket has an :class:`Inbox` from its creation, which sees every event it
dispatches, so ``wait_closed()`` works whenever it is called.  Messages:

* Once ``receive()`` or ``messages()`` has been called, it keeps every message, and
  when ``receive_buffer`` bytes (16 MiB by default) are unread, the reader waits for the
  script to read: reading from the network pauses, and TCP flow control slows the peer.
  It stops waiting once the script has closed the socket.  A script that keeps reading
  loses nothing, and memory stays bounded.
* Before that, a client socket (``WebSocket(url)``, :func:`connect`, :func:`fetch`)
  keeps the messages that no listener or handler received, at most ``receive_buffer``
  bytes of them, the oldest going first (nobody may ever read them; workerd drops
  unheard messages too, RULES A7).  So a script may ``send()`` and then ``receive()``
  the answer.  A pair end keeps none: a server can have many, so its helpers see the
  messages dispatched after their first call (create the ``messages()`` iterator before
  the handler returns its ``Response``, and it sees them all).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import TYPE_CHECKING, Any, Iterator, Optional

from . import _runtime
from ._protocol import FINAL, Phase
from .blob import Blob
from .errors import NetworkError, ProtocolError
from .events import CloseEvent, Event

if TYPE_CHECKING:
    from .websocket import WebSocket

__all__ = ["Inbox", "ConnectionClosed", "receive", "messages", "wait_closed"]

#: Unread message bytes a socket's inbox holds, by default (``receive_buffer``).
RECEIVE_BUFFER = 16 << 20


# -- the exception ------------------------------------------------------------------------------


class ConnectionClosed(NetworkError):
    """The socket is closed: raised by ``receive()`` once no message is left.

    :param event: the ``close`` event (for a protocol failure, one made from the error).
    :param error: the exception of the ``error`` event that came with it, if any.
    """

    def __init__(self, event: CloseEvent, error: Optional[BaseException] = None) -> None:
        super().__init__("the WebSocket is closed: code %d%s" % (
            event.code, ", reason %r" % event.reason if event.reason else ""))
        #: The close code (1006 for a drop or a failed connection).
        self.code = event.code
        #: The close reason.
        self.reason = event.reason
        #: Whether the peer's Close frame was received.
        self.was_clean = event.was_clean
        #: The ``error`` event's exception, if there was one.
        self.error = error



# -- the inbox --------------------------------------------------------------------


# Makes an Inbox's condition, once; a leaf lock, as the close event takes it on
# every socket.
_MAKING = _runtime.leaf_lock()


class Inbox:
    """What the blocking helpers of one socket read: its events, as they are dispatched.

    Every socket has one from its creation; ``WebSocket._dispatch`` calls :meth:`put`
    for each event.  The buffering rule is in the module doc.

    :param ws: the socket.
    """

    __slots__ = ("ws", "limit", "_cond", "_messages", "size", "keep_unheard", "reading",
                 "opened", "error", "closed", "failed")

    def __init__(self, ws: "WebSocket") -> None:
        self.ws = ws
        #: Unread message bytes to hold (``receive_buffer``).
        self.limit = RECEIVE_BUFFER
        self._cond: Optional[threading.Condition] = None  # see cond
        self._messages: Optional[collections.deque[Any]] = None  # see messages
        self.size = 0
        #: Keep the messages no listener heard, before any ``receive()`` (clients).
        self.keep_unheard = False
        #: ``receive()`` or ``messages()`` was called: keep every message.
        self.reading = False
        #: The ``open`` event was dispatched.
        self.opened = False
        #: The last ``error`` event's exception.
        self.error: Optional[BaseException] = None
        #: The ``close`` event, once dispatched.
        self.closed: Optional[CloseEvent] = None
        #: A protocol failure ended the socket without a ``close`` event (E4, M5).
        self.failed = False

    def keep(self, limit: int) -> None:
        """Keep unheard messages from now on, up to ``limit`` bytes (a client socket)."""
        self.limit, self.keep_unheard = limit, True

    @property
    def cond(self) -> threading.Condition:
        """Guards everything below; helpers wait on it.  Made on first use: most of a
        server's sockets never have a helper called, and then need none."""
        cond = self._cond
        if cond is None:
            with _MAKING:
                if self._cond is None:
                    self._cond = threading.Condition(threading.Lock())
                cond = self._cond
        return cond

    @property
    def messages(self) -> collections.deque[Any]:
        """The messages kept for the helpers (used under :attr:`cond`)."""
        if self._messages is None:
            self._messages = collections.deque()
        return self._messages

    @property
    def ended(self) -> bool:
        """No event will follow."""
        return self.closed is not None or self.failed

    def put(self, event: Event) -> None:
        """Take one dispatched event; may wait for the script to read (flow control)."""
        kind = event.type
        if kind == "message" and not self.reading and not (self.keep_unheard and self._unheard()):
            return  # the common case on a server: no lock taken
        if kind != "message" and self._cond is None:
            with _MAKING:
                if self._cond is None:  # no helper ever waited: there is none to wake
                    self._note(event)
                    return
        with self.cond:
            if kind == "message":
                data = event.data  # type: ignore[attr-defined]
                while self.reading and self.messages and self.size >= self.limit \
                        and not self._abandoned():
                    self.cond.wait(0.25)  # the peer waits too; re-check for close()
                self.messages.append(data)
                self.size += _size(data)
                while not self.reading and self.size > self.limit and len(self.messages) > 1:
                    self.size -= _size(self.messages.popleft())  # RULES A7: nobody listens
            else:
                self._note(event)
            self.cond.notify_all()

    def _note(self, event: Event) -> None:
        kind = event.type
        if kind == "open":
            self.opened = True
        elif kind == "close":
            self.closed = event  # type: ignore[assignment]
        elif kind == "error":
            self.error = event.error  # type: ignore[attr-defined]
            self.failed = isinstance(self.error, ProtocolError)  # no close follows

    def _unheard(self) -> bool:
        ws = self.ws
        return ws._handlers.get("message") is None and not ws._listeners.get("message")

    def _abandoned(self) -> bool:
        phase = self.ws._machine.phase
        return phase is Phase.CLOSE_SENT or phase in FINAL

    def close_event(self) -> CloseEvent:
        """The ``close`` event, or for a protocol failure one made from its error."""
        if self.closed is not None:
            return self.closed
        error = self.error
        assert isinstance(error, ProtocolError)
        event = CloseEvent("close", error.status_code, error.description, False)
        event.target = self.ws
        return event

    def closed_error(self) -> ConnectionClosed:
        return ConnectionClosed(self.close_event(), self.error)


def _size(data: Any) -> int:
    return data.size if isinstance(data, Blob) else len(data)


def inbox_of(ws: "WebSocket") -> Inbox:
    """The socket's inbox."""
    inbox = ws._inbox
    assert inbox is not None, "a WebSocket returned in a Response has no inbox"
    return inbox


def _watch(ws: "WebSocket", reading: bool) -> Inbox:
    if not ws._machine.accepted:
        raise TypeError("call accept() on this WebSocket before waiting for its events")
    inbox = inbox_of(ws)
    if reading and not inbox.reading:
        with inbox.cond:
            inbox.reading = True
    release = ws._release_held  # a client holding its events (cfws_sync.client)
    if release is not None:
        if _runtime.turn_running():  # a release now would start delivery only after this turn
            _runtime.spawn(release)
        else:
            release()
    return inbox


def _deadline(timeout: Optional[float]) -> Optional[float]:
    if timeout is not None and (isinstance(timeout, bool) or timeout < 0):
        raise ValueError("timeout must be a number >= 0 or None")
    return None if timeout is None else time.monotonic() + timeout


def receive(ws: "WebSocket", timeout: Optional[float] = None) -> Any:
    """The next message's data (``WebSocket.receive``).

    :raises ConnectionClosed: when the socket closed and no message is left.
    :raises TimeoutError: when none arrived within ``timeout`` seconds.
    """
    inbox = _watch(ws, True)
    deadline = _deadline(timeout)
    with inbox.cond:
        while True:
            if inbox.messages:
                data = inbox.messages.popleft()
                inbox.size -= _size(data)
                inbox.cond.notify_all()  # a reader waiting for room
                return data
            if inbox.ended:
                raise inbox.closed_error()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError("no message within %s seconds" % timeout)
            inbox.cond.wait(left)


def messages(ws: "WebSocket", timeout: Optional[float] = None) -> Iterator[Any]:
    """Iterate over the messages until the socket closes (``WebSocket.messages``).

    :raises TimeoutError: when the next one does not arrive within ``timeout`` seconds.
    """
    _watch(ws, True)
    return _iterate(ws, timeout)


def _iterate(ws: "WebSocket", timeout: Optional[float]) -> Iterator[Any]:
    while True:
        try:
            data = receive(ws, timeout)
        except ConnectionClosed:
            return
        yield data


def wait_closed(ws: "WebSocket", timeout: Optional[float] = None) -> CloseEvent:
    """Wait for the socket to close (``WebSocket.wait_closed``).

    :returns: the ``close`` event; after a protocol failure, which has none (E4, M5),
        one with the failure's code and description and ``was_clean`` false.
    :raises TimeoutError: when it did not close within ``timeout`` seconds.
    """
    inbox = _watch(ws, False)
    with inbox.cond:
        if not inbox.cond.wait_for(lambda: inbox.ended, _left(_deadline(timeout))):
            raise TimeoutError("the WebSocket did not close within %s seconds" % timeout)
        return inbox.close_event()


def _left(deadline: Optional[float]) -> Optional[float]:
    return None if deadline is None else max(0.0, deadline - time.monotonic())

