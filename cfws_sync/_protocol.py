"""The state machine of one WebSocket end.  Sans-I/O: no sockets, tasks or timers.

Theory of operation
-------------------
A :class:`Machine` is one end of a socket.  User calls (``send``, ``close``, ``accept``)
and inbound items (a message, the peer's Close, a drop, a protocol failure, the client's
open) are *inputs*.  :data:`TRANSITIONS` maps ``(phase, input)`` to the next phase and the
*effects*: pass a frame to the peer, send or echo a Close, dispatch an event, or raise.
The machine applies them under its one lock, so two threads calling ``close()`` while the
peer's Close arrives produce exactly one Close frame and one ``close`` event (SPEC §2).

The peer is a :class:`Link`: the other end of an in-memory pair, or a network connection.
Effects reach it while the lock is held, so frames keep the order of the calls that made
them; a link only queues and never calls back into this machine or into user code, and
never waits (the lock is a leaf lock: :func:`cfws_sync._runtime.leaf_lock`).
Events are returned to the caller, who dispatches them after the lock is released.

Where the peer's Close gets an automatic reply is decided in exactly one place,
:meth:`Machine._peer_close_input` (RULES B1, B2, B6).
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, NamedTuple, Optional, Protocol, Union

from . import errors
from ._runtime import leaf_lock
from ._frames import Failure, Message, PeerClose
from .blob import Blob
from .compat import Compatibility
from .errors import DOMException, ProtocolError
from .events import CloseEvent, ErrorEvent, Event, MessageEvent

if TYPE_CHECKING:
    from .websocket import WebSocket

__all__ = ["Phase", "FINAL", "Machine", "Link", "Gone", "Opened", "ConnectFailed"]


class Phase(enum.Enum):
    """Where an end is.  ``ready_state`` is derived from it (:data:`READY_STATE`)."""

    __hash__ = object.__hash__  # members are singletons; Enum's own hash runs Python code

    #: A client before its handshake completed (K1).
    CONNECTING = "connecting"
    #: Open; a pair end is open before ``accept()`` too (A1).
    OPEN = "open"
    #: We sent a Close and wait for the peer's (C2, C3).
    CLOSE_SENT = "close-sent"
    #: The peer's Close arrived and we have not answered: half-open (B6).
    CLOSE_RECEIVED = "close-received"
    #: Both Closes were exchanged, or our own Close was followed by the end.
    CLOSED = "closed"
    #: The connection ended without our Close: a drop (H1) or a protocol failure (M5,
    #: E4).  ``ready_state`` reads 3 (SPEC §8.3), but as in workerd, whose outgoing side
    #: stays open, ``send()`` and ``close()`` do not raise: they reach no one.
    GONE = "gone"
    #: A client closed before it opened; workerd reads ``readyState`` 1 here (K4).
    CANCELLED = "cancelled"


READY_STATE = {
    Phase.CONNECTING: 0,
    Phase.OPEN: 1,
    Phase.CLOSE_SENT: 2,
    Phase.CLOSE_RECEIVED: 2,
    Phase.CLOSED: 3,
    Phase.GONE: 3,  # SPEC §8.3 (workerd reads 1, then 2)
    Phase.CANCELLED: 1,  # K4: a quirk of workerd's, kept
}


class Input(enum.Enum):
    __hash__ = object.__hash__  # as Phase: the table is looked up once per message
    SEND = "send()"
    CLOSE = "close()"
    OPENED = "opened"
    CONNECT_FAILED = "connect failed"
    PEER_MESSAGE = "peer message"
    PEER_CLOSE_REPLY = "peer Close, auto-reply"
    PEER_CLOSE_HALF_OPEN = "peer Close, half-open"
    PEER_GONE = "peer gone"
    FAILURE = "protocol failure"


class Do:
    """Effects of a transition, as bit flags (plain ints: this is the per-message path)."""

    NOTHING = 0
    FORWARD = 1  # pass the message to the peer
    SEND_CLOSE = 2  # our Close frame to the peer
    ECHO_CLOSE = 4  # the peer's code and reason back to it (B2, B4)
    DISPATCH = 8  # dispatch the event of this input
    FINISH = 16  # tell the link this end is done with it
    CANCEL = 32  # stop a connect in progress (K4)
    RAISE_NOT_OPEN = 64  # TypeError: send before accept / open (A2, K3)
    RAISE_CLOSED = 128  # TypeError: send after close (C2)


P, I = Phase, Input
#: (phase, input) -> (next phase, effects).  A pair missing here is ignored: nothing is
#: read after the peer's Close (B9), and nothing is dispatched after CLOSED.
TRANSITIONS: dict[tuple[Phase, Input], tuple[Phase, int]] = {
    # K1, K3, K4, K5: a client connecting.
    (P.CONNECTING, I.SEND): (P.CONNECTING, Do.RAISE_NOT_OPEN),
    (P.CONNECTING, I.CLOSE): (P.CANCELLED, Do.CANCEL),
    (P.CANCELLED, I.SEND): (P.CANCELLED, Do.RAISE_NOT_OPEN),
    (P.CANCELLED, I.CONNECT_FAILED): (P.CLOSED, Do.DISPATCH | Do.FINISH),
    (P.CONNECTING, I.OPENED): (P.OPEN, Do.DISPATCH),
    (P.CONNECTING, I.CONNECT_FAILED): (P.CLOSED, Do.DISPATCH | Do.FINISH),
    # A4–A6, C1: open.
    (P.OPEN, I.SEND): (P.OPEN, Do.FORWARD),
    (P.OPEN, I.CLOSE): (P.CLOSE_SENT, Do.SEND_CLOSE),
    (P.OPEN, I.PEER_MESSAGE): (P.OPEN, Do.DISPATCH),
    (P.OPEN, I.PEER_CLOSE_REPLY): (P.CLOSED, Do.ECHO_CLOSE | Do.DISPATCH | Do.FINISH),  # B2
    (P.OPEN, I.PEER_CLOSE_HALF_OPEN): (P.CLOSE_RECEIVED, Do.DISPATCH),  # B6
    (P.OPEN, I.PEER_GONE): (P.GONE, Do.DISPATCH | Do.FINISH),  # H1, SPEC §8.3
    (P.OPEN, I.FAILURE): (P.GONE, Do.DISPATCH | Do.FINISH),  # E4, M5
    # C2, C3, C4: we closed first.
    (P.CLOSE_SENT, I.SEND): (P.CLOSE_SENT, Do.RAISE_CLOSED),
    (P.CLOSE_SENT, I.CLOSE): (P.CLOSE_SENT, Do.NOTHING),
    (P.CLOSE_SENT, I.PEER_MESSAGE): (P.CLOSE_SENT, Do.DISPATCH),
    (P.CLOSE_SENT, I.PEER_CLOSE_REPLY): (P.CLOSED, Do.DISPATCH | Do.FINISH),
    (P.CLOSE_SENT, I.PEER_CLOSE_HALF_OPEN): (P.CLOSED, Do.DISPATCH | Do.FINISH),
    (P.CLOSE_SENT, I.PEER_GONE): (P.CLOSED, Do.DISPATCH | Do.FINISH),  # C4, SPEC §8.4
    (P.CLOSE_SENT, I.FAILURE): (P.CLOSED, Do.DISPATCH | Do.FINISH),
    # B6, B8, B13: the peer closed and we have not answered yet.
    (P.CLOSE_RECEIVED, I.SEND): (P.CLOSE_RECEIVED, Do.FORWARD),
    (P.CLOSE_RECEIVED, I.CLOSE): (P.CLOSED, Do.SEND_CLOSE | Do.FINISH),
    (P.CLOSE_RECEIVED, I.PEER_GONE): (P.GONE, Do.FINISH),  # no second close event (B6)
    # B3, C2: closed.
    (P.CLOSED, I.SEND): (P.CLOSED, Do.RAISE_CLOSED),
    (P.CLOSED, I.CLOSE): (P.CLOSED, Do.NOTHING),
    # Gone without our Close: workerd's send() and close() succeed into nothing
    # (the a_end_* traces in tests/compat/extra).
    (P.GONE, I.SEND): (P.GONE, Do.NOTHING),
    (P.GONE, I.CLOSE): (P.GONE, Do.NOTHING),
}
del P, I

# The per-message fast paths of Machine.receive and Machine.send, read off the table:
# the phases where a peer's message is only dispatched, and where send() only forwards.
_ONLY_DISPATCH_MESSAGE = frozenset(
    phase for (phase, what), (after, effects) in TRANSITIONS.items()
    if what is Input.PEER_MESSAGE and after is phase and effects == Do.DISPATCH)
_ONLY_FORWARD_SEND = frozenset(
    phase for (phase, what), (after, effects) in TRANSITIONS.items()
    if what is Input.SEND and after is phase and effects == Do.FORWARD)
#: The final phases (CLOSED, GONE), read off the table: no inbound item changes them (only
#: send() and close() have rows there, and none leads out), so nothing more is dispatched
#: in them, and what arrives for an end in one is dropped unpumped (H1).
FINAL = frozenset(Phase) - frozenset(
    phase for (phase, what), (after, _) in TRANSITIONS.items()
    if what not in (Input.SEND, Input.CLOSE) or after is not phase)


class Gone(NamedTuple):
    """The connection ended without a Close: a drop, a reset, or a close timeout (H1)."""

    reason: str = errors.DROPPED_REASON


class Opened(NamedTuple):
    """A client's handshake completed (K1)."""

    protocol: Optional[str]
    extensions: Optional[str]


class ConnectFailed(NamedTuple):
    """A client's connection could not be established (K4, K5)."""

    error: BaseException


Inbound = Union[Message, PeerClose, Failure, Gone, Opened, ConnectFailed]


class Link(Protocol):
    """What an end needs of its peer.  Every method only queues, and may be called
    with the end's lock held."""

    def message(self, data: Union[str, bytes]) -> None: ...
    def close(self, code: Optional[int], reason: str) -> None: ...
    def finish(self) -> None: ...
    def cancel(self) -> None: ...


class Machine:
    """The locked state machine of one end: phase, accept, Close rule and binaryType.

    :param compat: the compatibility settings in force when the end was constructed;
        they fix the default Close rule and ``binary_type`` (B1, D1).
    :param phase: ``Phase.CONNECTING`` for a client, else ``Phase.OPEN``.
    """

    __slots__ = ("lock", "phase", "accepted", "allow_half_open", "binary_type",
                 "compat", "link")

    def __init__(self, compat: Compatibility, phase: Phase = Phase.OPEN) -> None:
        #: The one lock of this end; never held while user code runs.
        self.lock = leaf_lock()
        self.phase = phase
        self.accepted = False
        # B1: the default is fixed at construction; accept() may override it.
        self.allow_half_open = not compat.auto_reply_to_close
        self.binary_type = compat.default_binary_type  # D1
        self.compat = compat
        self.link: Optional[Link] = None

    @property
    def ready_state(self) -> int:
        """0–3, as ``WebSocket.readyState``."""
        return READY_STATE[self.phase]

    def accept(self, allow_half_open: Optional[bool]) -> bool:
        """Accept once; a second call changes nothing (A3).  Returns whether it accepted."""
        with self.lock:
            if self.accepted:
                return False
            self.accepted = True
            if allow_half_open is not None:
                self.allow_half_open = bool(allow_half_open)  # B1: either way
            return True

    def set_binary_type(self, value: object) -> None:
        """D4: anything but exactly ``"blob"`` or ``"arraybuffer"`` is ignored."""
        if value == "blob" or value == "arraybuffer":
            with self.lock:
                self.binary_type = value

    def send(self, data: Union[str, bytes]) -> None:
        """Pass one message to the peer, or raise workerd's ``TypeError``."""
        with self.lock:
            if not self.accepted:
                raise TypeError(errors.SEND_BEFORE_ACCEPT)  # A2
            link = self.link
            if self.phase in _ONLY_FORWARD_SEND and link is not None:
                link.message(data)  # the table's effect, without a lookup
                return
            self._step(Input.SEND, data)

    def close(self, code: Optional[int], reason: str) -> None:
        """Close with an already validated code and reason (C1–C10)."""
        with self.lock:
            if not self.accepted:
                raise TypeError(errors.SEND_BEFORE_ACCEPT)  # A2
            self._step(Input.CLOSE, (code, reason))

    def receive(self, item: Inbound, target: "WebSocket") -> list[Event]:
        """Apply one inbound item; return the events to dispatch, in order."""
        with self.lock:
            if type(item) is Message and self.phase in _ONLY_DISPATCH_MESSAGE:
                return [self._message_event(item.data)]  # the table's effect, no lookup
            if isinstance(item, Message):
                if self._step(Input.PEER_MESSAGE, None):
                    return [self._message_event(item.data)]
            elif isinstance(item, PeerClose):
                if self._step(self._peer_close_input(), item):
                    return [CloseEvent("close", item.code, item.reason, True)]
            elif isinstance(item, Gone):
                if self._step(Input.PEER_GONE, None):
                    return [CloseEvent("close", 1006, item.reason, False)]  # H1
            elif isinstance(item, Failure):
                if self._step(Input.FAILURE, None):
                    return [ErrorEvent("error", ProtocolError(item.code, item.reason))]
            elif isinstance(item, Opened):
                if self._step(Input.OPENED, None):
                    target.protocol, target.extensions = item.protocol, item.extensions
                    return [Event("open")]
            elif isinstance(item, ConnectFailed):
                if self._step(Input.CONNECT_FAILED, None):  # K4, K5: error, then close
                    return [ErrorEvent("error", item.error),
                            CloseEvent("close", 1006, errors.CONNECT_FAILED_REASON, False)]
            return []

    def _peer_close_input(self) -> Input:
        # RULES B1, B2, B6, K8: the one place that decides whether a Close is answered.
        return Input.PEER_CLOSE_HALF_OPEN if self.allow_half_open else Input.PEER_CLOSE_REPLY

    def _step(self, what: Input, arg: object) -> bool:
        """Apply one transition under the lock.  Returns whether to dispatch its event."""
        assert self.lock.locked()
        entry = TRANSITIONS.get((self.phase, what))
        if entry is None:
            return False  # B9: ignored in this phase
        self.phase, effects = entry
        if effects & Do.RAISE_NOT_OPEN:
            raise TypeError(errors.SEND_BEFORE_ACCEPT)  # A2, K3
        if effects & Do.RAISE_CLOSED:
            raise TypeError(errors.SEND_AFTER_CLOSE)  # C2
        link = self.link
        if link is not None:
            if effects & Do.FORWARD:
                link.message(arg)  # type: ignore[arg-type]
            elif effects & Do.SEND_CLOSE:
                link.close(*arg)  # type: ignore[misc]
            elif effects & Do.ECHO_CLOSE:
                link.close(arg.code, arg.reason)  # type: ignore[attr-defined]  # B2, B4
            if effects & Do.CANCEL:
                link.cancel()
            if effects & Do.FINISH:
                link.finish()
        return bool(effects & Do.DISPATCH)

    def _message_event(self, data: Union[str, bytes]) -> MessageEvent:
        # A4, D3: binary data takes the binaryType in force at dispatch.
        if isinstance(data, str) or self.binary_type == "arraybuffer":
            return MessageEvent("message", data)
        return MessageEvent("message", Blob._wrap(data))


def validate_close(code: object, reason: object, compat: Compatibility) -> tuple[Optional[int], str]:
    """Check a ``close()`` call's code and reason, before any state check (C5–C10, C8).

    :returns: the code (``None`` for none) and the reason as ``str``.
    :raises TypeError: for a code that is not an ``int`` (SPEC §8.5).
    :raises DOMException: ``InvalidAccessError`` or ``SyntaxError`` as workerd does.
    """
    if code is not None:
        if isinstance(code, bool) or not isinstance(code, int):
            raise TypeError(
                "close() code must be an int, not %s" % type(code).__name__)
        if compat.pedantic_wpt:  # C6
            valid = code == 1000 or 3000 <= code < 5000
        else:  # C5
            valid = 1000 <= code < 5000 and code not in (1004, 1005, 1006, 1015)
        if not valid:
            raise DOMException(errors.INVALID_CLOSE_CODE % code, "InvalidAccessError")
    text = "" if reason is None else js_string(reason, "close() reason")
    if reason is not None and code is None:
        raise DOMException(errors.REASON_WITHOUT_CODE, "InvalidAccessError")  # C9
    if compat.close_reason_byte_limit and len(text.encode("utf-8", "surrogatepass")) > 123:
        raise DOMException(errors.REASON_TOO_LONG, "SyntaxError")  # C10
    return code, text


def js_string(value: object, what: str) -> str:
    """``String(value)`` for str, int, float and bool; ``TypeError`` for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _js_number(value)
    raise TypeError(
        "%s must be str, bytes-like, int, float or bool, not %s; "
        "to send an object, send json.dumps(obj)" % (what, type(value).__name__))


def _js_number(value: float) -> str:
    """ECMAScript ``Number::toString``: the shortest round-trip digits (which ``repr``
    also finds), written without an exponent from 1e-6 up to 1e21."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"  # also -0
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    # value == 0.digits * 10**point
    point = len(whole) + int(exponent or 0) - (len(whole + fraction) - len(digits))
    digits = digits.rstrip("0")
    if len(digits) <= point <= 21:
        return sign + digits + "0" * (point - len(digits))
    if 0 < point <= 21:
        return sign + digits[:point] + "." + digits[point:]
    if -6 < point <= 0:
        return sign + "0." + "0" * -point + digits
    power = "%+d" % (point - 1)
    if len(digits) == 1:
        return sign + digits + "e" + power
    return sign + digits[0] + "." + digits[1:] + "e" + power


def coerce_message(data: object) -> Union[str, bytes]:
    """What ``send(data)`` puts on the wire: ``str`` as text, buffers and ``Blob`` as
    binary, numbers and booleans as their JavaScript text (A6, SPEC §2, §8.5)."""
    if isinstance(data, (str, bytes)):
        return data
    if isinstance(data, bytearray):
        return bytes(data)
    if isinstance(data, Blob):
        return data.bytes()
    if data is None:
        raise TypeError(errors.SEND_BAD_TYPE + " Got None; to send an object, send "
                        "json.dumps(obj).")  # SPEC §8.5
    if isinstance(data, (int, float)):
        return js_string(data, "send() data")
    try:
        view = memoryview(data)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            errors.SEND_BAD_TYPE + " Got %s; to send an object, send json.dumps(obj)."
            % type(data).__name__) from None
    with view:
        return view.tobytes()  # A6: the view's window, in memory order
