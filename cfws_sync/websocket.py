"""``WebSocket`` and ``WebSocketPair``: the Workers API objects.

An end's inbound items (messages, the peer's Close, a drop…) go into its *mailbox*.  One
*pump* at a time takes them out in order, applies each to the end's state machine, and
dispatches the resulting events: the ``on_<type>`` handler first, then the listeners, then
the blinker signal (RULES A8, SPEC §2).  The pump runs in the network reader itself (no
thread hop per message) or, for in-memory pairs, in a greenlet or thread started when the
current turn of user code ends.  Nothing is pumped before ``accept()`` (I3).
"""

from __future__ import annotations

import collections
import functools
import logging
from typing import TYPE_CHECKING, Any, Callable, Iterator, Optional, Union

from . import _inbox, _runtime, errors, signals
from ._frames import Message, PeerClose
from ._inbox import Inbox
from ._protocol import (FINAL, READY_STATE, Inbound, Link, Machine, Phase, coerce_message,
                        validate_close)
from .compat import Compatibility, current_compatibility
from .events import ErrorEvent, Event

if TYPE_CHECKING:
    from .room import Room

__all__ = ["WebSocket", "WebSocketPair"]

log = logging.getLogger("cfws_sync")
Listener = Callable[[Any], Any]

_NOT_CLIENT = "Websockets obtained from the 'new WebSocket()' constructor cannot call accept"
_RETURNED_ACCEPTED = "Can't return WebSocket in a Response after calling accept()."  # J4
_RETURNED_CLIENT = (  # J5
    "Can't return WebSocket in a Response if it was created with `new WebSocket()`")
_RETURNED_FETCHED = (  # K13 is not supported: a documented difference
    "Can't return a WebSocket obtained from fetch() in a Response: cfws_sync does not "
    "pass frames through; accept() it and relay messages (see examples/proxy.py).")
_RETURNED_TWICE = "Can't return WebSocket that was already used in a response."  # J5
_NO_DATA: Any = object()  # send() called without an argument (A6)
_ACCEPT_RELEASED = "Can't accept() WebSocket that was already used in a response."


class _Handler:
    """The ``on_<type>`` property (and its ``on<type>`` alias) for one event type."""

    def __init__(self, type: str) -> None:
        self.type = type
        self.__doc__ = "The ``%s`` handler; runs before the listeners (A8)." % type

    def __get__(self, ws: Optional["WebSocket"], owner: type) -> Any:
        if ws is None:
            return self
        return ws._handlers.get(self.type)

    def __set__(self, ws: "WebSocket", fn: Optional[Listener]) -> None:
        if fn is not None and not callable(fn):
            raise TypeError("on_%s must be callable or None" % self.type)
        if fn is None:
            ws._handlers.pop(self.type, None)
        else:
            ws._handlers[self.type] = fn
            ws._observe()


class WebSocket:
    """One end of a WebSocket, with the Workers API.

    Called as a constructor, ``WebSocket(url, protocols=None, **options)`` opens a client
    connection with JavaScript's ``new WebSocket()`` semantics (SPEC §6).  The ends of a
    :class:`WebSocketPair` are ``WebSocket`` objects too.
    """

    CONNECTING = READY_STATE_CONNECTING = 0
    OPEN = READY_STATE_OPEN = 1
    CLOSING = READY_STATE_CLOSING = 2
    CLOSED = READY_STATE_CLOSED = 3

    on_open = onopen = _Handler("open")
    on_message = onmessage = _Handler("message")
    on_close = onclose = _Handler("close")
    on_error = onerror = _Handler("error")

    #: The URL of a client socket; ``None`` for a pair end (A1, K1).
    url: Optional[str]
    #: The subprotocol chosen by the server (``""`` before open, ``None`` if none, K1).
    protocol: Optional[str]
    #: The extensions chosen by the server (``""`` before open, ``None`` if none).
    extensions: Optional[str]
    _room: Optional["Room"] = None  # set by Room.accept_web_socket
    _attachment: Optional[str] = None  # JSON text, set by serialize_attachment
    _hold: Optional[Callable[[], None]] = None  # a client's held events (client.py)
    _release_held: Optional[Callable[[], None]] = None  # delivers them at once

    def __init__(
        self, url: str, protocols: Union[str, list[str], tuple[str, ...], None] = None,
        **options: Any,
    ) -> None:
        from .client import open_client

        self._setup(current_compatibility_for(options), Phase.CONNECTING, "client")
        open_client(self, url, protocols, options)

    @classmethod
    def _pair_end(cls, compat: Compatibility) -> "WebSocket":
        ws = cls.__new__(cls)
        ws._setup(compat, Phase.OPEN, "pair")
        return ws

    def _setup(self, compat: Compatibility, phase: Phase, role: str) -> None:
        self._machine = Machine(compat, phase)
        self._role = role  # "pair", "client", or "released" once returned in a Response
        self._handlers: dict[str, Listener] = {}
        self._listeners: dict[str, list[Listener]] = {}
        self._mailbox: Optional[collections.deque[Inbound]] = None  # made on first use
        self._mailbox_lock = _runtime.leaf_lock()  # nothing is acquired under it
        self._pumping = False
        self._inbox: Optional[Inbox] = Inbox(self)  # what the blocking helpers read
        self.url = None
        self.protocol = ""
        self.extensions = ""

    # -- state --------------------------------------------------------------------------

    @property
    def ready_state(self) -> int:
        """``CONNECTING`` (0), ``OPEN`` (1), ``CLOSING`` (2) or ``CLOSED`` (3)."""
        return READY_STATE[self._machine.phase]

    readyState = ready_state

    @property
    def binary_type(self) -> str:
        """How binary messages arrive: ``"blob"`` (a :class:`Blob`) or ``"arraybuffer"``
        (``bytes``).  Read when each message is dispatched; other values are ignored (D1–D4)."""
        return self._machine.binary_type

    @binary_type.setter
    def binary_type(self, value: object) -> None:
        self._machine.set_binary_type(value)

    binaryType = binary_type

    # -- the Workers API ----------------------------------------------------------------

    def accept(self, options: Optional[dict[str, Any]] = None, *,
               allow_half_open: Optional[bool] = None) -> None:
        """Start delivering events to this end (A1–A3, I3).

        :param options: ``{"allowHalfOpen": bool}``, the JavaScript spelling.
        :param allow_half_open: ``True``: the peer's Close is not answered until this end
            calls ``close()``; ``False``: it is answered at once.  The default follows the
            compatibility date (B1).  A second ``accept()`` changes nothing (A3).
        """
        if options is not None:
            if not isinstance(options, dict):
                raise TypeError("accept() options must be a dict like {'allowHalfOpen': True}")
            if allow_half_open is None and "allowHalfOpen" in options:
                allow_half_open = bool(options["allowHalfOpen"])
        if self._role == "client":
            if self._machine.phase in (Phase.CONNECTING, Phase.CANCELLED):
                raise TypeError(_NOT_CLIENT)  # K3
            return
        if self._role == "released":
            raise TypeError(_ACCEPT_RELEASED)  # workerd's WebSocket::accept
        if self._machine.accept(allow_half_open):
            self._kick()

    def send(self, data: Any = _NO_DATA) -> None:
        """Send a message; it is queued and never blocks on a slow peer.

        ``str`` is sent as text; ``bytes``, ``bytearray``, ``memoryview`` (its window),
        other buffers and :class:`Blob` as binary; ``int``, ``float`` and ``bool`` as their
        JavaScript text (A6, SPEC §8.5).

        After a drop or a protocol error the message reaches no one, as in workerd.

        :raises TypeError: before ``accept()`` (A2), after ``close()`` (C2), or for data of
            another type, or none (A6).
        """
        if type(data) is not str and type(data) is not bytes:
            if data is _NO_DATA:
                raise TypeError(errors.SEND_BAD_TYPE)  # A6: workerd's text for send()
            data = coerce_message(data)
        self._machine.send(data)

    def close(self, code: Optional[int] = None, reason: Optional[str] = None) -> None:
        """Close this end: send a Close frame with ``code`` and ``reason``.

        Everything sent before is delivered first.  With no code, the Close is empty
        (C1).  A second call does nothing (C2); after an automatic reply it is ignored (B3);
        after a drop or a protocol error it sends nothing, as in workerd.

        :raises DOMException: ``InvalidAccessError`` for a bad code or a reason without a
            code, ``SyntaxError`` for a reason over 123 UTF-8 bytes (C5–C10).
        :raises TypeError: before ``accept()`` (A2), or for a code that is not an ``int``.
        """
        machine = self._machine
        code, text = validate_close(code, reason, machine.compat)  # C8: before state
        machine.close(code, text)

    def add_event_listener(self, type: str, listener: Listener) -> None:
        """Call ``listener(event)`` for every ``type`` event; adding it twice is a no-op."""
        if not callable(listener):
            raise TypeError("listener must be callable")
        with self._mailbox_lock:
            listeners = list(self._listeners.get(type, ()))
            if listener not in listeners:
                listeners.append(listener)
            self._listeners[type] = listeners  # copy on write: dispatch reads without a lock
        self._observe()

    def remove_event_listener(self, type: str, listener: Listener) -> None:
        """Stop calling ``listener`` for ``type`` events."""
        with self._mailbox_lock:
            listeners = [fn for fn in self._listeners.get(type, ()) if fn != listener]
            self._listeners[type] = listeners

    addEventListener = add_event_listener
    removeEventListener = remove_event_listener

    def _observe(self) -> None:
        """A listener or handler was attached: a client holding its events is told (the
        rule is in :mod:`cfws_sync.client`)."""
        hold = self._hold
        if hold is not None:
            hold()

    # -- blocking helpers for scripts (SPEC §6; buffering rule in cfws_sync._inbox) ------

    def receive(self, timeout: Optional[float] = None) -> Any:
        """Wait for the next message and return its data; sees every message, with or
        without listeners.  :raises cfws_sync.ConnectionClosed: once closed and drained.
        :raises TimeoutError: after ``timeout`` seconds."""
        return _inbox.receive(self, timeout)

    def messages(self, timeout: Optional[float] = None) -> Iterator[Any]:
        """Iterate over the data of every message until the socket closes.
        :raises TimeoutError: when the next one takes over ``timeout`` seconds."""
        return _inbox.messages(self, timeout)

    def wait_closed(self, timeout: Optional[float] = None) -> Any:
        """Wait until the socket is closed; return its :class:`CloseEvent`.
        :raises TimeoutError: after ``timeout`` seconds."""
        return _inbox.wait_closed(self, timeout)

    def serialize_attachment(self, value: Any) -> None:
        """Keep a JSON copy of ``value`` with this socket for its lifetime (SPEC §9).

        :raises TypeError: ``value`` is not JSON-serialisable.
        :raises RangeError: its JSON text is over 2,048 bytes.
        """
        from .room import serialize_attachment

        serialize_attachment(self, value)

    def deserialize_attachment(self) -> Any:
        """A fresh copy of the value last given to :meth:`serialize_attachment`, or
        ``None``."""
        from .room import deserialize_attachment

        return deserialize_attachment(self)

    serializeAttachment = serialize_attachment
    deserializeAttachment = deserialize_attachment

    # -- delivery -----------------------------------------------------------------------

    def _post(self, item: Inbound, inline: bool = False) -> None:
        """Queue an inbound item; pump now (``inline``, the reader's own call) or soon."""
        if self._machine.phase in FINAL:
            return  # a final phase (read without the lock: it never changes again)
        with self._mailbox_lock:
            idle = not self._pumping and self._machine.accepted
            first: Optional[Inbound] = item
            if not (idle and inline and not self._mailbox):
                if self._mailbox is None:
                    self._mailbox = collections.deque()
                self._mailbox.append(item)
                if not idle:
                    return
                first = None
            # else the common case: straight to dispatch, no queueing
            self._pumping = True
        if inline:
            self._pump(first)
        else:
            self._pump_soon()

    def _kick(self) -> None:
        with self._mailbox_lock:
            if self._pumping or not self._mailbox:
                return
            self._pumping = True
        self._pump_soon()

    def _pump_soon(self) -> None:
        """Pump in a greenlet or thread of its own, once the current turn ends."""
        _runtime.after_turn(functools.partial(_runtime.spawn, self._pump, None, True))

    def _pump(self, item: Optional[Inbound] = None, spawned: bool = False) -> None:
        """Deliver ``item``, then the mailbox's items, until it is empty."""
        lock, receive = self._mailbox_lock, self._machine.receive
        # A spawned pump (an in-memory peer's delivery) lets other sockets run between
        # items, as each delivery is its own task in workerd (i_internal_both).
        share = _runtime.fair_yield() if spawned else None
        turn = _runtime.in_turn()
        try:
            while True:
                if item is None:
                    with lock:
                        mailbox = self._mailbox
                        if not mailbox:
                            self._pumping = False
                            self._mailbox = None  # an idle socket keeps no queue
                            return
                        item = mailbox.popleft()
                with turn:  # what this item makes the peer see comes after its events
                    for event in receive(item, self):
                        self._dispatch(event)
                item = None
                if share is not None:
                    share()
        except BaseException:  # KeyboardInterrupt, GreenletExit: let a later post pump again
            with lock:
                self._pumping = False
            raise

    def _dispatch(self, event: Event) -> None:
        event.target = self
        room = self._room
        if room is not None and room._intercept(self, event):
            return  # answered by the room's auto-response: no app code sees it
        kind = event.type
        failure: Optional[BaseException] = None
        # Runs inside the pump's turn: deliveries the listeners cause start after it.
        handler = self._handlers.get(kind)
        if handler is not None:
            failure = self._call_handler(handler, event)
        for listener in self._listeners.get(kind, ()):
            try:
                listener(event)
            except Exception as exc:
                log.exception("a %r listener of %r raised", kind, self)
                failure = exc
        inbox = self._inbox
        if inbox is not None:
            inbox.put(event)
        signal = signals.BY_TYPE.get(kind)
        if signal is not None and signal.receivers:
            signal.send(self, event=event)
        if failure is not None and kind != "error" and self._machine.phase not in FINAL:
            # SPEC §8.6: report it as an error event, then close with 1011.
            self._dispatch(ErrorEvent("error", failure))
            try:
                self.close(1011)
            except Exception:  # not accepted, or already closing: nothing more to do
                pass

    def _call_handler(self, fn: Listener, event: Event) -> Optional[BaseException]:
        try:
            result = fn(event)
        except Exception as exc:
            log.exception("the %r handler of %r raised", event.type, self)
            return exc
        if result is not None:  # A8
            log.warning(
                'An event handler returned a value of type "%s" that will be ignored. '
                "Event handlers should not have a return value.", type(result).__name__)
        return None

    # -- binding to a connection (used by the serving layer) -----------------------------

    def _release(self) -> "WebSocket":
        """Mark this pair end as returned in a 101 Response; return the end it talks to.

        :raises TypeError: J4 (accepted), J5 (a client, or returned before).
        """
        if self._role == "client":
            raise TypeError(_RETURNED_CLIENT)
        if self._role == "released":
            raise TypeError(_RETURNED_TWICE)
        if self._machine.accepted:
            raise TypeError(_RETURNED_ACCEPTED)
        link = self._machine.link
        if not isinstance(link, _PairLink):  # K13: workerd would pump raw frames through
            raise TypeError(_RETURNED_FETCHED)
        self._role = "released"
        return link.end

    def _couple(self, partner: "WebSocket", link: Link,
                replay: Callable[[Inbound], None]) -> None:
        """Make ``link`` (a connection) the peer of ``partner``, this released end's
        other half.  What the partner sent before is replayed to the link first."""
        with partner._machine.lock:
            with self._mailbox_lock:
                pending = list(self._mailbox or ())
                self._mailbox = None
            for item in pending:
                replay(item)
            partner._machine.link = link
        # Released, this end never dispatches again (accept() now raises): drop its
        # inbox, whose reference back to this end would keep it alive until a full
        # garbage collection, as long as the connection lasts.
        self._inbox = None

    def __repr__(self) -> str:
        return "<WebSocket %s ready_state=%d>" % (
            self.url or self._role, self.ready_state)


def current_compatibility_for(options: dict[str, Any]) -> Compatibility:
    """The compatibility of ``compatibility_date=``/``compatibility_flags=`` options,
    removed from ``options``, or the one in force."""
    date = options.pop("compatibility_date", None)
    flags = options.pop("compatibility_flags", ())
    if date is None and not flags:
        return current_compatibility()
    return Compatibility.resolve(date, flags)


class _PairLink:
    """The in-memory peer of a pair end: what one end sends, the other receives (I1)."""

    __slots__ = ("end",)

    def __init__(self, end: WebSocket) -> None:
        self.end = end

    def message(self, data: Union[str, bytes]) -> None:
        self.end._post(Message(data))

    def close(self, code: Optional[int], reason: str) -> None:
        self.end._post(PeerClose(1005 if code is None else code, reason))

    def finish(self) -> None:
        pass

    def cancel(self) -> None:
        pass


class WebSocketPair:
    """Two linked ends: what one sends, the other receives (RULES A1, I1–I5).

    ``client, server = WebSocketPair()``; also ``pair[0]``, ``pair[1]``, ``pair.client``
    and ``pair.server``.  Return ``client`` in ``Response(None, status=101,
    web_socket=client)`` to bind it to the network connection.
    """

    __slots__ = ("client", "server")

    def __init__(self) -> None:
        compat = current_compatibility()
        #: The end usually returned in the 101 ``Response`` (key ``0``).
        self.client = WebSocket._pair_end(compat)
        #: The end the handler accepts and uses (key ``1``).
        self.server = WebSocket._pair_end(compat)
        self.client._machine.link = _PairLink(self.server)
        self.server._machine.link = _PairLink(self.client)

    def __getitem__(self, index: Union[int, str]) -> WebSocket:
        return (self.client, self.server)[int(index)]

    def __iter__(self) -> Iterator[WebSocket]:
        return iter((self.client, self.server))

    def __len__(self) -> int:
        return 2
