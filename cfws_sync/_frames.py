"""The wire codec: bytes in, wire events out; messages in, bytes out.  Sans-I/O.

Whole uncompressed frames, the common case, are parsed here directly (the *plain path*);
fragments, compressed frames and anything unusual are parsed, unmasked and inflated by
wsproto's ``FrameDecoder`` and its ``PerMessageDeflate`` extension (:mod:`._deflate`,
:mod:`._masking`).  On top of that this module reassembles messages, keeps the size
budget, validates UTF-8, reads Close payloads the way workerd does, and words protocol
failures in kj's texts (RULES M4).  Outgoing frames are written here, since the
Close echo must carry any code the peer sent (B4), which wsproto's writer refuses.

Nothing here knows about sockets, threads, or the Workers API: the caller feeds
:meth:`WireCodec.receive` and acts on the events it returns.
"""

from __future__ import annotations

import codecs
import os
import struct
from typing import NamedTuple, Optional, Union, cast

from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import CloseReason, Frame, Opcode, ParseFailed, RsvBits

from ._deflate import BoundedDeflate
from ._masking import Decoder, mask

__all__ = ["WireCodec", "Message", "PeerClose", "Failure", "Ping", "Outgoing"]

DEFAULT_MAX_MESSAGE_SIZE = 32 << 20  # RULES E1: 33,554,432 bytes
#: A payload this large is written beside its header, not copied to join it.
SEPARATE_PAYLOAD = 64 * 1024


class Message(NamedTuple):
    """A complete data message: ``str`` for text, ``bytes`` for binary (M1)."""

    data: Union[str, bytes]


class PeerClose(NamedTuple):
    """The peer's Close frame; 1005 when it carried no code (B4)."""

    code: int
    reason: str


class Failure(NamedTuple):
    """The peer broke the protocol; a Close with this code and reason must be sent."""

    code: int
    reason: str


class Ping(NamedTuple):
    """A ping to be answered with a pong of the same payload (L1)."""

    payload: bytes


WireEvent = Union[Message, PeerClose, Failure, Ping]
#: A frame to write: its bytes, or its header and its (large) payload.
Outgoing = Union[bytes, tuple[bytes, bytes]]

_DATA = (Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION)
_KNOWN_OPCODES = {int(op) for op in Opcode}

# wsproto's wording -> ours, for the RFC 6455 checks workerd lacks (SPEC §8.1).
_RFC_REASONS = {
    "server received unexpected unmasked frame": "Received unmasked frame from client",
    "client received unexpected masked frame": "Received masked frame from server",
    "Control frame with payload len > 125": "Received control frame longer than 125 bytes",
}
INVALID_UTF8_TEXT = "Invalid UTF-8 in text message"
INVALID_UTF8_REASON = "Invalid UTF-8 in Close reason"
INVALID_CLOSE_CODE = "Received a Close frame with invalid code %d"
#: What kj says of compressed data that does not inflate, and of a compressed
#: continuation frame (workerd's n_deflate_* traces in tests/compat/extra).
INVALID_COMPRESSED_DATA = "Invalid compressed data"


def _sendable_close_code(code: int) -> bool:
    """RFC 6455 §7.4: the codes a Close frame may carry (1005 is read as "none", B4)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")


# One large receive buffer kept for the next large frame: a fresh one is zero-filled and
# page-faulted in, which costs as much as reading a megabyte from the kernel.
_SPARE: list[bytearray] = []
_SPARE_MAX = 8 << 20


class _Pending:
    """A large binary frame whose payload is still arriving, read in place."""

    __slots__ = ("storage", "buffer", "key", "filled")

    def __init__(self, size: int, key: bytes) -> None:
        try:
            storage = _SPARE.pop()  # atomic: threads never share one
        except IndexError:
            storage = None
        if storage is None or not size <= len(storage) <= 2 * size:
            storage = bytearray(size)
        self.storage = storage
        self.buffer = memoryview(storage)[:size]
        self.key = key  # the mask key; empty for an unmasked frame
        self.filled = 0

    def done(self) -> None:
        """The payload was copied out: the storage may serve the next large frame."""
        if len(self.storage) <= _SPARE_MAX and not _SPARE:
            _SPARE.append(self.storage)


def _text_message(payload: bytes) -> WireEvent:
    """A whole text message, or the failure its invalid UTF-8 makes (SPEC §8.1)."""
    try:
        return Message(payload.decode("utf-8"))
    except UnicodeDecodeError:
        return Failure(1007, INVALID_UTF8_TEXT)


def _joined(out: Outgoing) -> bytes:
    return out if isinstance(out, bytes) else out[0] + out[1]


# The last message a server codec without compression framed, and its frame: a server
# frame is a function of the payload alone (RFC 6455 §5.1: no mask), so sending the same
# object again (to every socket of a room, say) reuses it.
_last_framed: tuple[object, Outgoing] = (None, b"")


class _PingPongRsv1(Extension):
    """Without permessage-deflate, kj reads a ping or pong whose RSV1 bit is set as if
    the bit were clear (a Close or a data frame with it fails, RULES M4); wsproto would
    fail them all.  (kj also appends four stray bytes to such a ping's pong: README,
    difference 14.)"""

    name = "cfws-ping-pong-rsv1"

    def offer(self) -> bool:
        return False

    def frame_inbound_header(self, proto: object, opcode: Opcode, rsv: RsvBits,
                             payload_length: int) -> Union[CloseReason, RsvBits]:
        return RsvBits(opcode is Opcode.PING or opcode is Opcode.PONG, False, False)


_PING_PONG_RSV1 = _PingPongRsv1()


class WireCodec:
    """One end of a WebSocket connection on the wire.

    :param client: ``True`` for the client end (masks what it sends, RFC 6455 §5.3).
    :param deflate: the negotiated permessage-deflate extension, or ``None``.
    :param max_message_size: the incoming message limit in bytes (RULES E1).
    """

    __slots__ = ("client", "deflate", "max_message_size", "_decoder", "_parts", "_text",
                 "_opcode", "_size", "_in_frame", "_checked_header", "_plain", "_pending",
                 "finished")

    def __init__(
        self,
        client: bool,
        deflate: Optional[PerMessageDeflate] = None,
        max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE,
    ) -> None:
        self.client = client
        if deflate is not None and not isinstance(deflate, BoundedDeflate):
            deflate.__class__ = BoundedDeflate  # a caller's own extension is bounded too
        self.deflate: Optional[BoundedDeflate] = deflate  # type: ignore[assignment]
        self.max_message_size = max_message_size
        self._decoder: Optional[Decoder] = None  # wsproto's, made when first needed
        self._parts: list[bytes] = []
        self._text: Optional[codecs.IncrementalDecoder] = None  # set while a text message is open
        self._opcode: Optional[Opcode] = None  # of the message being reassembled
        self._size = 0  # bytes of the message so far
        self._in_frame = False  # the last chunk left a frame unfinished
        self._checked_header: object = None
        # Whole uncompressed frames are read without wsproto while it holds nothing.
        self._plain = deflate is None
        self._pending: Optional[_Pending] = None  # a large binary frame being read
        self.finished = False  # a Close or a failure was read: read no more (B9)

    # -- incoming -------------------------------------------------------------------------

    def receive(self, data: bytes) -> list[WireEvent]:
        """Feed bytes read from the peer; return the events they complete, in order.

        After a :class:`PeerClose` or a :class:`Failure`, nothing more is read (B9, L2).
        """
        if self.finished:
            return []
        if type(data) is not bytes:
            data = bytes(data)  # payloads are sliced from it: they must not be mutable
        events: list[WireEvent] = []
        if self._pending is not None:
            data = self._fill(data, events)
        if self._plain and data:
            data = self._receive_plain(data, events)
        if data and not self.finished:
            self._receive_general(data, events)
        return events

    @property
    def pending_size(self) -> int:
        """Bytes still missing from the large binary frame being read, else 0."""
        pending = self._pending
        return 0 if pending is None else len(pending.buffer) - pending.filled

    def pending_view(self) -> memoryview:
        """Where the rest of the large frame being read goes: ``recv_into`` it, then
        call :meth:`received_into` (no copy of the payload between kernel and codec)."""
        pending = self._pending
        assert pending is not None
        return pending.buffer[pending.filled:]

    def received_into(self, count: int) -> list[WireEvent]:
        """``count`` bytes were read into :meth:`pending_view`; return what they complete."""
        pending = self._pending
        assert pending is not None and not self.finished
        pending.filled += count
        if pending.filled < len(pending.buffer):
            return []
        return [self._complete(pending)]

    def _receive_plain(self, data: bytes, events: list[WireEvent]) -> bytes:
        """Read whole, unfragmented, uncompressed frames straight off ``data`` (the
        common case, without wsproto's per-frame work); return what is left for the
        general path: a fragment, an incomplete header, or anything unusual.

        A binary frame whose payload has not all arrived becomes the pending frame.
        Whatever must fail goes to the general path, which words it (RULES E2, M4).
        """
        masked = not self.client  # RFC 6455 §5.1: a client masks, a server never does
        mask_bit = 0x80 if masked else 0
        key_size = 4 if masked else 0
        budget = self.max_message_size  # no message is open
        pos, end = 0, len(data)
        while end - pos >= 2:
            first, second = data[pos], data[pos + 1]
            # FIN, no RSV bit, a known opcode, the right mask bit (RFC 6455 §5.2)
            if second & 0x80 != mask_bit or not (
                    first == 0x81 or first == 0x82 or 0x88 <= first <= 0x8A):
                break
            size = second & 0x7F
            head = 2 + key_size
            if size == 126:
                head += 2
                if end - pos < head or first > 0x82:
                    break  # a control frame over 125 bytes fails on the general path
                (size,) = _U16.unpack_from(data, pos + 2)
                if size < 126:
                    break  # not the minimal length: the general path fails it
            elif size == 127:
                head += 8
                if end - pos < head or first > 0x82:
                    break
                (size,) = _U64.unpack_from(data, pos + 2)
                if size < 65536:
                    break  # not the minimal length: the general path fails it
            elif end - pos < head:
                break
            if size > budget:
                break  # E2: refused from the header by the general path
            start = pos + head
            stop = start + size
            if stop > end:
                if first != 0x82:
                    break  # text is validated chunk by chunk on the general path (SPEC §8.1)
                self._pending = pending = _Pending(size, bytes(data[start - key_size:start]))
                pending.buffer[:end - start] = memoryview(data)[start:end]
                pending.filled = end - start
                self._plain = False
                return b""
            payload = data[start:stop]
            if masked:
                payload = mask(payload, data[start - 4:start])
            pos = stop
            if first == 0x82:
                events.append(Message(payload))
            elif first == 0x81:
                event = _text_message(payload)
                events.append(event)
                if type(event) is Failure:
                    self.finished = True
                    return b""
            elif first == 0x89:
                events.append(Ping(payload))  # L1
            elif first == 0x88:
                events.append(self._close(payload))
                self.finished = True  # B9: nothing after the peer's Close is read
                return b""
            # 0x8A: an unsolicited pong is ignored (L1)
        if pos:
            data = data[pos:]
        if data:
            self._plain = False  # the general path takes it from here
        return data

    def _fill(self, data: bytes, events: list[WireEvent]) -> bytes:
        """Copy ``data`` into the pending frame; return what lies beyond it."""
        pending = self._pending
        assert pending is not None
        take = min(len(data), len(pending.buffer) - pending.filled)
        pending.buffer[pending.filled:pending.filled + take] = memoryview(data)[:take]
        pending.filled += take
        if pending.filled == len(pending.buffer):
            events.append(self._complete(pending))
        return data[take:] if take < len(data) else b""

    def _complete(self, pending: "_Pending") -> WireEvent:
        self._pending = None
        self._plain = self.deflate is None
        payload = pending.buffer
        message = Message(mask(payload, pending.key) if pending.key else bytes(payload))
        pending.done()
        return message

    def _receive_general(self, data: bytes, events: list[WireEvent]) -> None:
        """Read any frames with wsproto's decoder; back to the plain path once it holds
        nothing and no message is open."""
        decoder = self._decoder
        if decoder is None:
            decoder = self._decoder = Decoder(
                self.client, [self.deflate] if self.deflate else [_PING_PONG_RSV1])
        decoder.receive_bytes(data)
        try:
            while True:
                if self.deflate is not None:
                    self.deflate.limit = self._budget()
                frame = decoder.process_buffer()
                header = decoder.header
                if header is not None and header is not self._checked_header:
                    # RULES E2: refuse from the header, before the payload arrives.
                    self._checked_header = header
                    if header.opcode in _DATA and header.payload_len > self._budget():
                        self._fail(events, 1009, self._too_large(header.payload_len))
                        return
                if frame is None:
                    break
                event = self._frame(frame)
                if event is not None:
                    events.append(event)
                    if isinstance(event, (PeerClose, Failure)):
                        self.finished = True
                        return
        except ParseFailed as exc:
            code, reason = self._describe(exc)
            self._fail(events, code, reason)
            return
        if (self.deflate is None and header is None and not decoder.buffer.buffer
                and self._opcode is None and not self._in_frame):
            self._plain = True

    def _budget(self) -> int:
        return self.max_message_size - self._size

    def _too_large(self, size: int) -> str:
        return "Message is too large: %d > %d" % (size, self._budget())  # RULES E2, E3

    def _fail(self, events: list[WireEvent], code: int, reason: str) -> list[WireEvent]:
        self.finished = True
        events.append(Failure(code, reason))
        return events

    def _frame(self, frame: Frame) -> Optional[WireEvent]:
        opcode, frame_finished, fin = frame.opcode, frame.frame_finished, frame.message_finished
        payload = cast(bytes, frame.payload)  # str and tuple only in wsproto's own parser
        if opcode in _DATA:
            return self._data(opcode, payload, frame_finished, fin)
        if opcode is Opcode.PING:
            return Ping(payload)  # L1: any length is answered... within RFC's 125
        if opcode is Opcode.CLOSE:
            return self._close(payload)
        return None  # L1: an unsolicited pong is ignored

    def _data(
        self, opcode: Opcode, payload: bytes, frame_finished: bool, fin: bool
    ) -> Optional[WireEvent]:
        if fin and frame_finished and not self._in_frame and self._opcode is None \
                and opcode is not Opcode.CONTINUATION:
            return self._whole_message(opcode, payload)
        if not self._in_frame:  # a new frame starts
            if opcode is Opcode.CONTINUATION and self._opcode is None:
                return Failure(1002, "Unexpected continuation frame")  # M4
            if opcode is not Opcode.CONTINUATION:
                if self._opcode is not None:
                    return Failure(1002, "Missing continuation frame")  # M4
                self._opcode = opcode
                if opcode is Opcode.TEXT:
                    self._text = codecs.getincrementaldecoder("utf-8")()
            if frame_finished and len(payload) > self._budget():  # E2, E3: a whole frame
                return Failure(1009, self._too_large(len(payload)))
        self._in_frame = not frame_finished
        if frame_finished:
            self._checked_header = None
        self._size += len(payload)
        if self._size > self.max_message_size:  # inflated size (a deflate bomb), E1
            return Failure(1009, "Message is too large: %d > %d" % (
                self._size, self.max_message_size))
        done = frame_finished and fin
        if self._text is not None:
            try:  # SPEC §8.1: fail fast on invalid UTF-8, RFC 6455 §8.1
                self._parts.append(self._text.decode(payload, done))  # type: ignore[arg-type]
            except UnicodeDecodeError:
                return Failure(1007, INVALID_UTF8_TEXT)
        elif payload:
            self._parts.append(payload)
        if not done:
            return None
        parts, self._parts = self._parts, []
        text = self._text is not None
        self._opcode, self._text, self._size = None, None, 0
        if text:
            return Message("".join(parts))  # type: ignore[arg-type]
        return Message(parts[0] if len(parts) == 1 else b"".join(parts))

    def _whole_message(self, opcode: Opcode, payload: bytes) -> WireEvent:
        """The common case: one unfragmented message, read in one piece."""
        self._checked_header = None
        if len(payload) > self._budget():  # E2: a whole frame over the limit
            return Failure(1009, self._too_large(len(payload)))
        return _text_message(payload) if opcode is Opcode.TEXT else Message(payload)

    def _close(self, payload: bytes) -> WireEvent:
        if len(payload) < 2:  # B4: an empty or 1-byte payload means 1005
            return PeerClose(1005, "")
        (code,) = struct.unpack_from("!H", payload)
        if code != 1005 and not _sendable_close_code(code):  # SPEC §8.1, RFC 6455 §7.4
            return Failure(1002, INVALID_CLOSE_CODE % code)
        try:  # SPEC §8.1: an invalid UTF-8 reason fails with 1007
            reason = payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            return Failure(1007, INVALID_UTF8_REASON)
        return PeerClose(code, reason)  # B4: echoed as received

    def _describe(self, exc: ParseFailed) -> tuple[int, str]:
        """Word a wsproto failure as kj does (RULES M4), or as RFC 6455 asks (SPEC §8.1)."""
        decoder = self._decoder
        assert decoder is not None
        buffered = decoder.buffer.buffer
        if decoder.header is None and buffered:  # it failed on a frame header
            # In kj's order, for a header with several faults (workerd's z_diff traces).
            first = buffered[0]
            opcode = first & 0x0F
            if first & 0x30:
                return 1002, "Received frame had RSV bits 2 or 3 set"
            if opcode == 0 and self._opcode is None:
                return 1002, "Unexpected continuation frame"
            if 1 <= opcode <= 7 and self._opcode is not None:  # (3-7 are data to kj)
                return 1002, "Missing continuation frame"
            if opcode >= 8 and not first & 0x80:
                return 1002, "Received fragmented control frame"
            if first & 0x40 and self.deflate is None:  # (a ping or pong passes: below)
                return 1002, (
                    "Received a WebSocket frame whose compression bit was set, but the "
                    "compression extension was not negotiated for this connection."
                )
            if opcode not in _KNOWN_OPCODES:
                return 1002, "Unknown opcode %d" % opcode
        text = str(exc.args[0]) if exc.args else "protocol error"
        if text == "error in extension":  # permessage-deflate refused the frame
            return 1002, INVALID_COMPRESSED_DATA
        return int(exc.code), _RFC_REASONS.get(text, text)

    # -- outgoing -------------------------------------------------------------------------

    def message(self, data: Union[str, bytes, bytearray, memoryview]) -> bytes:
        """Frame one message: ``str`` as text, anything else as binary."""
        out = self.message_parts(data)
        return _joined(out)

    def message_parts(self, data: Union[str, bytes, bytearray, memoryview]) -> Outgoing:
        """As :meth:`message`, but a large frame comes as ``(header, payload)``, for a
        writer that sends both without joining them (no copy of the payload)."""
        global _last_framed
        plain_server = not self.client and self.deflate is None
        last = _last_framed  # one read: another thread may replace it meanwhile
        if plain_server and last[0] is data:
            return last[1]  # a broadcast: one message framed once for every peer
        if isinstance(data, str):
            try:
                payload = data.encode("utf-8")
            except UnicodeEncodeError:  # A6: a lone surrogate goes out as WTF-8
                payload = data.encode("utf-8", "surrogatepass")
            out = self._frame_parts(Opcode.TEXT, payload)
        else:
            out = self._frame_parts(Opcode.BINARY, data)
        if plain_server and type(out) is bytes and isinstance(data, (str, bytes)):
            _last_framed = (data, out)  # immutable, so the same object frames the same
        return out

    def close(self, code: Optional[int] = None, reason: str = "") -> bytes:
        """Frame a Close; no code (or 1005) means an empty payload (RULES C1, B4)."""
        if code is None or code == 1005:
            return self._frame_bytes(Opcode.CLOSE, b"")
        raw = reason.encode("utf-8", "surrogatepass")
        if len(raw) > 123:  # RFC 6455 §5.5: 125 bytes; cut at a character boundary
            end = 123
            while raw[end] & 0xC0 == 0x80:  # a UTF-8 continuation byte
                end -= 1
            raw = raw[:end]
        return self._frame_bytes(Opcode.CLOSE, struct.pack("!H", code) + raw)

    def ping(self, payload: bytes = b"") -> bytes:
        """Frame a ping."""
        return self._frame_bytes(Opcode.PING, payload[:125])

    def pong(self, payload: bytes = b"") -> bytes:
        """Frame a pong carrying ``payload`` (RULES L1)."""
        return self._frame_bytes(Opcode.PONG, payload[:125])

    def _frame_bytes(self, opcode: Opcode, payload: bytes) -> bytes:
        out = self._frame_parts(opcode, payload)
        return _joined(out)

    def _frame_parts(
        self, opcode: Opcode, payload: Union[bytes, bytearray, memoryview]
    ) -> Outgoing:
        first = 0x80 | opcode  # RFC 6455 §5.2: always one frame per message
        if self.deflate is not None and opcode < 8:
            rsv, payload = self.deflate.frame_outbound(
                self, opcode, RsvBits(False, False, False), bytes(payload), True  # type: ignore[arg-type]
            )
            first |= rsv.rsv1 << 6
        length = len(payload)
        mask_bit = 0x80 if self.client else 0
        if length < 126:
            header = bytes((first, mask_bit | length))
        elif length < 65536:
            header = struct.pack("!BBH", first, mask_bit | 126, length)
        else:
            header = struct.pack("!BBQ", first, mask_bit | 127, length)
        if self.client:  # RFC 6455 §5.3: a fresh random key per frame
            key = os.urandom(4)
            header += key
            data = mask(payload, key)
        else:
            data = payload if isinstance(payload, bytes) else bytes(payload)
        if length >= SEPARATE_PAYLOAD:
            return header, data
        return header + data
