"""``Room``: one coordination point for many sockets, as a Durable Object is.

Theory of operation
-------------------
A :class:`Room` holds the sockets given to it with :meth:`Room.accept_web_socket`, each
with up to ten tags, and calls the handler methods a subclass overrides
(``web_socket_message``, ``web_socket_close``, ``web_socket_error``) for their events, in
the manner of the Durable Objects WebSocket API.  The room listens to each socket with
ordinary event listeners, so the handlers run as listeners do: one at a time per socket,
in arrival order, never under a lock, and an exception escaping one is handled as any
listener's (SPEC §8.6: logged, an ``error`` event, then Close 1011).

A socket leaves its room when it dispatches ``close`` or ``error``, and when a send to it
raises; the room then holds no reference to it.  :meth:`Room.broadcast` sends to a
snapshot of the members taken under the room's lock and sends outside it: ``send()``
only queues, so a slow or dead socket delays no other.

A *backplane* carries broadcasts to rooms of the same name elsewhere, in other processes
(:class:`~cfws_sync.RedisBackplane`).  Without one, a room is alone.

The auto-response (``set_web_socket_auto_response``) is answered from the socket's own
dispatch, before any handler, listener or signal sees the message.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading
import weakref
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Protocol, Union

from .blob import Blob
from .errors import RangeError
from ._protocol import coerce_message
from .events import CloseEvent, ErrorEvent, Event, MessageEvent

if TYPE_CHECKING:
    from .websocket import WebSocket

__all__ = ["Room", "Backplane"]

log = logging.getLogger("cfws_sync.room")

#: Limits of the Durable Objects API (workerd ``actor-state.h``, SPEC §9).
MAX_TAGS = 10
MAX_TAG_LENGTH = 256  # bytes of UTF-8, as workerd measures them
MAX_ATTACHMENT_SIZE = 2048  # bytes of the JSON text (SPEC §9)
MAX_AUTO_RESPONSE_SIZE = 2048  # bytes of UTF-8, request and response each

# Error texts, verbatim from workerd (``actor-state.c++``, ``web-socket.c++``).
_TOO_MANY_TAGS = "a Hibernatable WebSocket cannot have more than %d tags" % MAX_TAGS
_TAG_TOO_LONG = '"%s" is longer than the max tag length (%d characters).'
_NOT_ACCEPTED = ("you must call 'acceptWebSocket()' before attempting to access the tags "
                 "of a WebSocket.")
_REQUEST_TOO_LARGE = "Request cannot be larger than %d bytes. A request of size %d was provided."
_RESPONSE_TOO_LARGE = ("Response cannot be larger than %d bytes. A response of size %d was "
                       "provided.")
# workerd's text has no space after "bytes." and is kept as it is.
_ATTACHMENT_TOO_LARGE = ("A WebSocket 'attachment' cannot be larger than %d bytes."
                         "'attachment' was %d bytes.")

Data = Union[str, bytes]
_claim_lock = threading.Lock()  # makes "one room per socket" hold between rooms
Exclude = Union["WebSocket", Iterable["WebSocket"], None]


class Backplane(Protocol):
    """What a room needs to reach rooms of the same name in other processes.

    A backplane calls :meth:`Room.broadcast_local` on the rooms attached to it for
    every broadcast that a room of the same name made elsewhere, and never for one made
    by the room itself.  Every method returns at once: none waits on the network.
    """

    def attach(self, room: "Room") -> None:
        """Start carrying broadcasts to and from ``room``."""

    def detach(self, room: "Room") -> None:
        """Stop carrying broadcasts to ``room``."""

    def publish(self, room: "Room", data: Data, tag: Optional[str]) -> None:
        """Carry a broadcast ``room`` made to the rooms of its name elsewhere."""


class Room:
    """A set of sockets with tags, handler methods, broadcast and an auto-response.

    Subclass it and override :meth:`web_socket_message`, :meth:`web_socket_close` and
    :meth:`web_socket_error`; a subclass may instead define the Durable Objects names
    ``webSocketMessage``, ``webSocketClose`` and ``webSocketError``, which are called
    when the snake_case method of the same role is not overridden.

    ::

        class Chat(Room):
            def web_socket_message(self, ws, message):
                self.broadcast(message, exclude=ws)

        chat = Chat("lobby")

        def handle(request):
            client, server = WebSocketPair()
            chat.accept_web_socket(server, tags=["user:" + name])
            return Response(None, status=101, web_socket=client)

    :param name: the room's name; rooms of the same name share broadcasts through a
        backplane.
    :param backplane: carries broadcasts to rooms of the same name in other processes,
        e.g. :class:`~cfws_sync.RedisBackplane`; ``None`` keeps the room to itself.
    """

    def __init__(self, name: str = "default", backplane: Optional[Backplane] = None) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError("Room name must be a non-empty str, not %r" % (name,))
        #: The room's name.
        self.name = name
        #: The backplane, or ``None``.
        self.backplane = backplane
        self._lock = threading.Lock()  # a leaf lock: nothing is called while it is held
        self._members: dict["WebSocket", None] = {}
        self._by_tag: dict[str, dict["WebSocket", None]] = {}
        # Kept for each socket's lifetime, so get_tags() still answers in web_socket_close.
        self._tags: "weakref.WeakKeyDictionary[WebSocket, tuple[str, ...]]" = \
            weakref.WeakKeyDictionary()
        self._answered: "weakref.WeakKeyDictionary[WebSocket, datetime.datetime]" = \
            weakref.WeakKeyDictionary()
        self._auto_response: Optional[tuple[str, str]] = None
        self._attached = False
        self._on_message: Callable[..., Any] = self._resolve(
            "web_socket_message", "webSocketMessage")
        self._on_close: Callable[..., Any] = self._resolve("web_socket_close", "webSocketClose")
        self._on_error: Callable[..., Any] = self._resolve("web_socket_error", "webSocketError")

    def _resolve(self, name: str, js_name: str) -> Callable[..., Any]:
        """The overridden snake_case handler, else a camelCase one, else the default."""
        if getattr(type(self), name) is getattr(Room, name):
            js_handler = getattr(self, js_name, None)
            if callable(js_handler):
                return js_handler  # type: ignore[no-any-return]
        return getattr(self, name)  # type: ignore[no-any-return]

    # -- the Durable Objects API ----------------------------------------------------------

    def accept_web_socket(self, ws: "WebSocket", tags: Iterable[str] = ()) -> None:
        """Accept ``ws`` if it is not yet accepted, and add it to the room.

        From then on the room's handler methods receive its events, and it leaves the
        room when it closes or fails.

        :param ws: a pair end (the one the handler keeps) or a client socket.
        :param tags: up to 10 distinct strings of up to 256 bytes each; duplicates are
            ignored.  :meth:`get_web_sockets` and :meth:`broadcast` select by tag.
        :raises TypeError: ``ws`` is not a :class:`WebSocket`, ``tags`` is not a list
            of strings, or ``ws`` cannot be accepted (it was returned in a ``Response``).
        :raises ValueError: too many tags, a tag too long, or ``ws`` already belongs to
            a room.
        """
        from .websocket import WebSocket

        if not isinstance(ws, WebSocket):
            raise TypeError("accept_web_socket() takes a WebSocket, not %s"
                            % type(ws).__name__)
        distinct = _validate_tags(tags)
        self._attach()
        with _claim_lock, self._lock:
            if ws._room is not None:
                raise ValueError("this WebSocket was already accepted by %r" % (ws._room,))
            ws._room = self
            self._add_locked(ws, distinct)
        # Listeners first, then accept(): a pair end's first message waits for them.
        ws.add_event_listener("message", self._message_listener)
        ws.add_event_listener("close", self._close_listener)
        ws.add_event_listener("error", self._error_listener)
        try:
            if ws._role != "client":
                ws.accept()
        except BaseException:
            self._discard(ws)
            ws._room = None
            for kind, fn in (("message", self._message_listener),
                             ("close", self._close_listener),
                             ("error", self._error_listener)):
                ws.remove_event_listener(kind, fn)
            raise
        if ws.ready_state == ws.CLOSED:
            self._discard(ws)  # it will dispatch nothing more

    def get_web_sockets(self, tag: Optional[str] = None) -> list["WebSocket"]:
        """The sockets in the room, in the order they joined; with ``tag``, those
        that have it.

        :param tag: a tag given to :meth:`accept_web_socket`, or ``None`` for all.
        """
        with self._lock:
            if tag is None:
                return list(self._members)
            return list(self._by_tag.get(tag, ()))

    def get_tags(self, ws: "WebSocket") -> list[str]:
        """The tags ``ws`` was accepted with, in the order given (duplicates removed).

        They stay readable for the socket's lifetime, also after it left the room.

        :raises ValueError: ``ws`` was never accepted by this room.
        """
        try:
            return list(self._tags[ws])
        except (KeyError, TypeError):
            raise ValueError(_NOT_ACCEPTED) from None

    def set_web_socket_auto_response(self, request_text: Optional[str] = None,
                                     response_text: Optional[str] = None) -> None:
        """Answer a text message equal to ``request_text`` with ``response_text``.

        The answer is sent from the socket's dispatch; no handler method, listener,
        ``on_message`` or signal sees such a message.  With no arguments (or ``None``)
        the auto-response is removed.

        :raises TypeError: a text that is not a ``str``.
        :raises RangeError: a text over 2,048 bytes of UTF-8.
        """
        if request_text is None and response_text is None:
            self._auto_response = None
            return
        if not isinstance(request_text, str) or not isinstance(response_text, str):
            raise TypeError("the auto-response request and response must both be str")
        size = len(request_text.encode("utf-8", "surrogatepass"))
        if size > MAX_AUTO_RESPONSE_SIZE:
            raise RangeError(_REQUEST_TOO_LARGE % (MAX_AUTO_RESPONSE_SIZE, size))
        size = len(response_text.encode("utf-8", "surrogatepass"))
        if size > MAX_AUTO_RESPONSE_SIZE:
            raise RangeError(_RESPONSE_TOO_LARGE % (MAX_AUTO_RESPONSE_SIZE, size))
        self._auto_response = (request_text, response_text)

    def get_web_socket_auto_response(self) -> Optional[tuple[str, str]]:
        """``(request_text, response_text)``, or ``None`` when none is set."""
        return self._auto_response

    def get_web_socket_auto_response_timestamp(
            self, ws: "WebSocket") -> Optional[datetime.datetime]:
        """When ``ws`` last got the auto-response (UTC), or ``None`` if never."""
        return self._answered.get(ws)

    acceptWebSocket = accept_web_socket
    getWebSockets = get_web_sockets
    getTags = get_tags
    setWebSocketAutoResponse = set_web_socket_auto_response
    getWebSocketAutoResponse = get_web_socket_auto_response
    getWebSocketAutoResponseTimestamp = get_web_socket_auto_response_timestamp

    # -- broadcast ------------------------------------------------------------------------

    def broadcast(self, data: Any, tag: Optional[str] = None, exclude: Exclude = None) -> int:
        """Send ``data`` to every socket in the room (with ``tag``, those that have it),
        and through the backplane to the rooms of this name in other processes.

        Each ``send()`` only queues, so a slow socket delays no other.  A socket whose
        ``send()`` raises (it is closing) leaves the room.  A socket whose peer reads
        too slowly is dropped by its connection once ``max_queue`` bytes wait for it:
        it gets ``close`` 1006 and leaves the room.  Never waits on the backplane.

        :param data: what ``WebSocket.send()`` takes: ``str``, bytes-like, ``Blob``, or a
            number or boolean.
        :param tag: only sockets with this tag, here and elsewhere.
        :param exclude: a socket, or several, of this process to leave out (e.g. the
            sender).
        :returns: how many sockets of this process it was queued to.
        :raises TypeError: ``data`` cannot be sent, or ``tag`` is not a ``str``.
        """
        message = coerce_message(data)
        if tag is not None and not isinstance(tag, str):
            raise TypeError("tag must be a str or None, not %s" % type(tag).__name__)
        count = self.broadcast_local(message, tag, exclude)
        if self.backplane is not None:
            self._attach()
            self.backplane.publish(self, message, tag)
        return count

    def broadcast_local(self, data: Any, tag: Optional[str] = None,
                        exclude: Exclude = None) -> int:
        """As :meth:`broadcast`, to the sockets of this process only (a backplane
        delivers what other processes broadcast with it).

        :returns: how many sockets it was queued to.
        """
        message = coerce_message(data)
        skip = _excluded(exclude)
        targets = self.get_web_sockets(tag)
        count = 0
        for ws in targets:
            if ws in skip or ws.ready_state == 0:  # a client still connecting gets nothing
                continue
            try:
                ws.send(message)
            except Exception as exc:  # closing or closed: it is leaving anyway
                log.debug("broadcast: %r left room %r: %s", ws, self.name, exc)
                self._discard(ws)
            else:
                count += 1
        return count

    # -- the handler methods a subclass overrides -------------------------------------------

    def web_socket_message(self, ws: "WebSocket", message: Data) -> None:
        """Called for every message a socket of the room receives.

        :param ws: the socket.
        :param message: a ``str`` for text, ``bytes`` for binary (whatever the socket's
            ``binary_type``, as in Durable Objects).
        """

    def web_socket_close(self, ws: "WebSocket", code: int, reason: str,
                         was_clean: bool) -> None:
        """Called when a socket of the room closes; it has already left the room.

        Whether the peer's Close was answered follows the socket's close rule (RULES
        B1); under the old rule, call ``ws.close(code, reason)`` here.
        """

    def web_socket_error(self, ws: "WebSocket", error: Optional[BaseException]) -> None:
        """Called when a socket of the room fails (protocol error, message too large,
        or an exception escaping a handler); it has already left the room."""

    # -- internals -----------------------------------------------------------------------

    def _add_locked(self, ws: "WebSocket", tags: tuple[str, ...]) -> None:
        self._members[ws] = None
        self._tags[ws] = tags
        for tag in tags:
            self._by_tag.setdefault(tag, {})[ws] = None

    def _discard(self, ws: "WebSocket") -> None:
        with self._lock:
            if ws not in self._members:
                return
            del self._members[ws]
            for tag in self._tags.get(ws, ()):
                members = self._by_tag.get(tag)
                if members is not None:
                    members.pop(ws, None)
                    if not members:
                        del self._by_tag[tag]

    def _attach(self) -> None:
        if self.backplane is not None and not self._attached:
            self._attached = True
            self.backplane.attach(self)

    def _intercept(self, ws: "WebSocket", event: Event) -> bool:
        """Called by ``ws`` before dispatching ``event``; ``True`` when the
        auto-response answered it and nothing else may see it."""
        auto = self._auto_response
        if auto is None or type(event) is not MessageEvent:
            return False
        data = event.data
        if not isinstance(data, str) or data != auto[0]:
            return False
        self._answered[ws] = datetime.datetime.now(datetime.timezone.utc)
        try:
            ws.send(auto[1])
        except Exception:  # closing: the message is dropped, as unanswerable
            pass
        return True

    def _message_listener(self, event: MessageEvent) -> None:
        data = event.data
        if isinstance(data, Blob):
            data = data.bytes()
        self._on_message(event.target, data)

    def _close_listener(self, event: CloseEvent) -> None:
        ws = event.target
        assert ws is not None
        self._discard(ws)
        self._on_close(ws, event.code, event.reason, event.was_clean)

    def _error_listener(self, event: ErrorEvent) -> None:
        ws = event.target
        assert ws is not None
        self._discard(ws)
        self._on_error(ws, event.error)

    def __len__(self) -> int:
        return len(self._members)

    def __contains__(self, ws: object) -> bool:
        return ws in self._members

    def __repr__(self) -> str:
        return "<%s %r sockets=%d>" % (type(self).__name__, self.name, len(self._members))


def _validate_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """The distinct tags, in order; workerd's checks and texts (``acceptWebSocket``)."""
    if isinstance(tags, (str, bytes)):
        raise TypeError("tags must be a list of str, not a single %s" % type(tags).__name__)
    if tags is None:
        return ()
    try:
        items = list(tags)
    except TypeError:
        raise TypeError("tags must be a list of str, not %s" % type(tags).__name__) from None
    distinct: dict[str, None] = {}
    for tag in items:
        if not isinstance(tag, str):
            raise TypeError("each tag must be a str, not %s" % type(tag).__name__)
        if tag in distinct:
            continue  # "Any duplicate tags will be ignored."
        if len(distinct) >= MAX_TAGS:
            raise ValueError(_TOO_MANY_TAGS)
        if len(tag.encode("utf-8", "surrogatepass")) > MAX_TAG_LENGTH:
            raise ValueError(_TAG_TOO_LONG % (tag, MAX_TAG_LENGTH))
        distinct[tag] = None
    return tuple(distinct)


def _excluded(exclude: Exclude) -> "frozenset[WebSocket] | tuple[()]":
    from .websocket import WebSocket

    if exclude is None:
        return ()
    if isinstance(exclude, WebSocket):
        return frozenset((exclude,))
    return frozenset(exclude)


# -- attachments (``WebSocket.serialize_attachment`` delegates here) -------------------------


def serialize_attachment(ws: "WebSocket", value: Any) -> None:
    """Keep a JSON copy of ``value`` on ``ws`` for the socket's lifetime.

    Later changes to ``value`` do not change the copy.

    :raises TypeError: ``value`` is not JSON-serialisable (``NaN`` and infinities are
        not JSON either).
    :raises RangeError: the JSON text is over 2,048 bytes of UTF-8.
    """
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError("serialize_attachment() takes a JSON-serialisable value: %s"
                        % exc) from None
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_ATTACHMENT_SIZE:
        raise RangeError(_ATTACHMENT_TOO_LARGE % (MAX_ATTACHMENT_SIZE, size))
    ws._attachment = text


def deserialize_attachment(ws: "WebSocket") -> Any:
    """A fresh copy of the value last given to ``serialize_attachment``, or ``None``."""
    text = ws._attachment
    return None if text is None else json.loads(text)
