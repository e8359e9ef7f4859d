"""A raw-frame WebSocket client for tests: it sends exactly the bytes it is told to.

Unlike a real client it will send what RFC 6455 forbids (unknown opcodes, RSV bits,
unmasked frames, lying length fields, oversized control frames), and it reports what
the server did on the wire: each frame received, TCP EOF, or a reset.

::

    with RawClient.open(port, "/ws/echo?id=x") as c:
        c.text("hi")
        assert c.recv().text == "hi"
        c.close(1000, "bye")
        assert c.recv().close_code == 1000
        c.expect_eof()
"""

from __future__ import annotations

import base64
import os
import select
import socket
import struct
import time
import zlib
from typing import Mapping, NamedTuple, Optional, Union

TEXT, BINARY, CONT, CLOSE, PING, PONG = 0x1, 0x2, 0x0, 0x8, 0x9, 0xA
_NAMES = {TEXT: "text", BINARY: "binary", CONT: "cont", CLOSE: "close", PING: "ping",
          PONG: "pong"}
_DEFLATE_TAIL = b"\x00\x00\xff\xff"


class Frame(NamedTuple):
    """One frame as received (payload already unmasked and, for RSV1, inflated)."""

    opcode: int
    payload: bytes
    fin: bool = True
    rsv: int = 0  # the three RSV bits as a number: 4 = RSV1, 2 = RSV2, 1 = RSV3
    masked: bool = False
    inflated: bool = False

    @property
    def kind(self) -> str:
        return _NAMES.get(self.opcode, "op%d" % self.opcode)

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8")

    @property
    def close_code(self) -> Optional[int]:
        """The code of a Close frame, or ``None`` for an empty one."""
        assert self.opcode == CLOSE, self
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None

    @property
    def close_reason(self) -> bytes:
        assert self.opcode == CLOSE, self
        return self.payload[2:]


class Handshake(NamedTuple):
    """The server's answer to the upgrade request."""

    status: int
    headers: dict[str, str]  # names lowercased; repeats joined with ", "
    body: bytes
    head: bytes  # the raw status line and headers


class Timeout(AssertionError):
    """Nothing arrived in time."""


class Closed(AssertionError):
    """The server closed TCP (EOF) while a frame was expected."""


class Reset(AssertionError):
    """The server reset the connection."""


def make_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0,
               mask: bool = True, length: Optional[int] = None,
               key: Optional[bytes] = None) -> bytes:
    """Encode one frame.  ``length`` overrides the declared payload length."""
    declared = len(payload) if length is None else length
    head = bytearray([(0x80 if fin else 0) | (rsv & 7) << 4 | (opcode & 0x0F)])
    mask_bit = 0x80 if mask else 0
    if declared < 126:
        head.append(mask_bit | declared)
    elif declared < 1 << 16:
        head.append(mask_bit | 126)
        head += struct.pack("!H", declared)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", declared)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4) if key is None else key
    return bytes(head) + key + xor_mask(key, payload)


def xor_mask(key: bytes, data: bytes) -> bytes:
    """RFC 6455 §5.3 masking (its own inverse)."""
    if not data:
        return b""
    repeated = (key * (len(data) // 4 + 1))[:len(data)]
    return (int.from_bytes(data, "little") ^ int.from_bytes(repeated, "little")).to_bytes(
        len(data), "little")


def close_payload(code: Optional[int] = None, reason: Union[str, bytes] = b"") -> bytes:
    """A Close payload; ``None`` means empty."""
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


class RawClient:
    """A client socket that speaks frames, and records nothing it was not asked for.

    :param sock: a connected socket.
    :param timeout: the default wait, in seconds, of every blocking call.
    """

    def __init__(self, sock: socket.socket, timeout: float = 5.0) -> None:
        self.sock = sock
        self.timeout = timeout
        self.buffer = bytearray()
        self.handshake: Optional[Handshake] = None
        self._inflater: Optional["zlib._Decompress"] = None
        self._deflater: Optional["zlib._Compress"] = None

    # -- opening ----------------------------------------------------------------------------

    @classmethod
    def connect(cls, port: int, host: str = "127.0.0.1", timeout: float = 5.0,
                rcvbuf: Optional[int] = None) -> "RawClient":
        """A TCP connection only; send the request with :meth:`request`."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
        except OSError:
            sock.close()
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(sock, timeout)

    @classmethod
    def open(cls, port: int, path: str = "/", headers: Optional[Mapping[str, str]] = None,
             *, timeout: float = 5.0, expect: Optional[int] = 101, extra: bytes = b"",
             rcvbuf: Optional[int] = None) -> "RawClient":
        """Connect and do the upgrade handshake.

        :param headers: added to (or, with value ``None``, removed from) the standard ones.
        :param expect: the status to insist on; ``None`` accepts any.
        :param extra: bytes sent in the same write right after the request.
        """
        client = cls.connect(port, timeout=timeout, rcvbuf=rcvbuf)
        try:
            client.request(path, headers, extra=extra)
            answer = client.read_handshake()
            if expect is not None and answer.status != expect:
                raise AssertionError("expected %d, got %d: %r" % (
                    expect, answer.status, answer.head + answer.body))
        except BaseException:
            client.abort()
            raise
        return client

    def request(self, path: str = "/", headers: Optional[Mapping[str, Optional[str]]] = None,
                extra: bytes = b"") -> str:
        """Send an upgrade request; returns the key it used."""
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        fields: dict[str, Optional[str]] = {
            "Host": "127.0.0.1:%d" % self.sock.getpeername()[1],
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13",
        }
        for name, value in (headers or {}).items():
            for existing in [k for k in fields if k.lower() == name.lower()]:
                del fields[existing]
            fields[name] = value
        lines = ["GET %s HTTP/1.1" % path]
        lines += ["%s: %s" % (k, v) for k, v in fields.items() if v is not None]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + extra)
        return key

    def read_handshake(self) -> Handshake:
        """Read the response head (and a non-101 response's body)."""
        while b"\r\n\r\n" not in self.buffer:
            self._fill(self.timeout, "the handshake response")
        end = self.buffer.index(b"\r\n\r\n") + 4
        head = bytes(self.buffer[:end])
        del self.buffer[:end]
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                name, _, value = line.partition(":")
                name = name.strip().lower()
                headers[name] = headers[name] + ", " + value.strip() if name in headers \
                    else value.strip()
        body = b""
        if status != 101:
            length = int(headers.get("content-length", "0"))
            while len(self.buffer) < length:
                self._fill(self.timeout, "the response body")
            body = bytes(self.buffer[:length])
            del self.buffer[:length]
        self.handshake = Handshake(status, headers, body, head)
        extension = headers.get("sec-websocket-extensions", "")
        if status == 101 and extension.startswith("permessage-deflate"):
            self._inflater = zlib.decompressobj(-15)
            self._deflater = zlib.compressobj(wbits=-15)
        return self.handshake

    # -- sending ----------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, opcode: int, payload: bytes = b"", **options: object) -> None:
        """Send one frame; see :func:`make_frame` for the options."""
        self.sock.sendall(make_frame(opcode, payload, **options))  # type: ignore[arg-type]

    def text(self, text: str, **options: object) -> None:
        self.send(TEXT, text.encode("utf-8"), **options)

    def binary(self, data: bytes, **options: object) -> None:
        self.send(BINARY, data, **options)

    def compressed(self, opcode: int, payload: bytes) -> None:
        """Send a whole message compressed with the negotiated permessage-deflate (RSV1)."""
        self.send(opcode, self.deflate(payload), rsv=4)

    def deflate(self, payload: bytes) -> bytes:
        """``payload`` as the body of one message under the negotiated permessage-deflate
        (RFC 7692 §7.2.1), to send whole or in fragments (the first with RSV1)."""
        assert self._deflater is not None, "permessage-deflate was not negotiated"
        data = self._deflater.compress(payload) + self._deflater.flush(zlib.Z_SYNC_FLUSH)
        assert data.endswith(_DEFLATE_TAIL)
        return data[:-4]

    def ping(self, payload: bytes = b"", **options: object) -> None:
        self.send(PING, payload, **options)

    def close(self, code: Optional[int] = None, reason: Union[str, bytes] = b"",
              **options: object) -> None:
        """Send a Close frame (``code=None`` sends an empty one)."""
        self.send(CLOSE, close_payload(code, reason), **options)

    # -- receiving --------------------------------------------------------------------------

    def recv(self, timeout: Optional[float] = None) -> Frame:
        """The next frame.

        :raises Timeout: nothing complete arrived within ``timeout``.
        :raises Closed: TCP EOF first.
        :raises Reset: the connection was reset.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            self._fill(deadline - time.monotonic(), "a frame")

    def recv_data(self, timeout: Optional[float] = None) -> Frame:
        """The next frame that is not a pong."""
        while True:
            frame = self.recv(timeout)
            if frame.opcode != PONG:
                return frame

    def expect_eof(self, timeout: Optional[float] = None) -> None:
        """Insist that the server closes TCP next, with no further bytes."""
        try:
            frame = self.recv(timeout)
        except Closed:
            if self.buffer:
                raise AssertionError("EOF in the middle of a frame: %r" % bytes(self.buffer))
            return
        raise AssertionError("expected EOF, got %r" % (frame,))

    def expect_silence(self, seconds: float) -> None:
        """Insist that nothing arrives and TCP stays open for ``seconds``."""
        try:
            frame = self.recv(seconds)
        except Timeout:
            return
        raise AssertionError("expected nothing, got %r" % (frame,))

    def read_until_eof(self, timeout: Optional[float] = None) -> bytes:
        """Everything until EOF (``Reset`` counts as an end too)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            try:
                self._fill(deadline - time.monotonic(), "EOF")
            except (Closed, Reset):
                data = bytes(self.buffer)
                self.buffer.clear()
                return data

    def _fill(self, timeout: float, what: str) -> None:
        if timeout <= 0:
            raise Timeout("no %s within the time allowed" % what)
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            raise Timeout("no %s within %.1fs" % (what, timeout))
        try:
            data = self.sock.recv(1 << 20)
        except ConnectionResetError as exc:
            raise Reset("connection reset while waiting for %s" % what) from exc
        if not data:
            raise Closed("EOF while waiting for %s" % what)
        self.buffer += data

    def _parse(self) -> Optional[Frame]:
        buf = self.buffer
        if len(buf) < 2:
            return None
        first, second = buf[0], buf[1]
        length, offset = second & 0x7F, 2
        if length == 126:
            if len(buf) < 4:
                return None
            length, offset = struct.unpack_from("!H", buf, 2)[0], 4
        elif length == 127:
            if len(buf) < 10:
                return None
            length, offset = struct.unpack_from("!Q", buf, 2)[0], 10
        masked = bool(second & 0x80)
        key = b""
        if masked:
            if len(buf) < offset + 4:
                return None
            key, offset = bytes(buf[offset:offset + 4]), offset + 4
        if len(buf) < offset + length:
            return None
        payload = bytes(buf[offset:offset + length])
        del buf[:offset + length]
        if masked:
            payload = xor_mask(key, payload)
        rsv, opcode = (first >> 4) & 7, first & 0x0F
        inflated = False
        if rsv & 4 and self._inflater is not None and opcode in (TEXT, BINARY):
            payload = self._inflater.decompress(payload + _DEFLATE_TAIL)
            inflated = True
        return Frame(opcode, payload, bool(first & 0x80), rsv, masked, inflated)

    # -- ending -----------------------------------------------------------------------------

    def half_close(self) -> None:
        """Send FIN (shut down our writing side) and keep reading."""
        self.sock.shutdown(socket.SHUT_WR)

    def reset(self) -> None:
        """Abort with a TCP RST (SO_LINGER 0), then release the socket."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def abort(self) -> None:
        """Close the socket now, however the connection stands."""
        self.sock.close()

    def __enter__(self) -> "RawClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()
