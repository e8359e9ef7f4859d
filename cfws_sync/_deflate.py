"""permessage-deflate (RFC 7692, RULES N1): wsproto's extension, bounded against
decompression bombs (RULES E1), and the server's answer to a client's offer."""

from __future__ import annotations

import zlib
from typing import Optional, Union

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits

__all__ = ["BoundedDeflate", "negotiate_deflate"]


class BoundedDeflate(PerMessageDeflate):
    """wsproto's permessage-deflate, inflating no more than the message budget allows,
    and reading control frames as workerd does.

    wsproto inflates a whole chunk at once, so a small compressed frame could expand to
    gigabytes before any size check (a decompression bomb).  Here each chunk inflates
    to at most ``limit + 1`` bytes: one byte over the budget is enough to refuse the
    message with 1009 (RULES E1).

    A control frame passes untouched: it leaves the state of a compressed message it
    interrupts alone (wsproto would forget that the message is compressed, and fail it),
    and a compression bit on it is ignored, as kj ignores it (kj then appends four stray
    bytes to its payload, which we do not).
    """

    #: Bytes the message being read may still grow by; the codec sets it before each read.
    limit = 0
    #: The frame being read is a control frame.
    _control = False

    def frame_inbound_header(
        self, proto: Union[FrameDecoder, FrameProtocol], opcode: Opcode, rsv: RsvBits,
        payload_length: int,
    ) -> Union[CloseReason, RsvBits]:
        self._control = opcode.iscontrol()
        if self._control:
            return RsvBits(True, False, False)
        return super().frame_inbound_header(proto, opcode, rsv, payload_length)

    def frame_inbound_complete(
        self, proto: Union[FrameDecoder, FrameProtocol], fin: bool
    ) -> Union[bytes, CloseReason, None]:
        if self._control:
            return None
        return super().frame_inbound_complete(proto, fin)

    def frame_inbound_payload_data(
        self, proto: object, data: bytes
    ) -> Union[bytes, CloseReason]:
        if self._control or not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        assert self._decompressor is not None
        try:
            return self._decompressor.decompress(bytes(data), self.limit + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA


def negotiate_deflate(
    offer_header: Optional[str],
) -> tuple[Optional[BoundedDeflate], Optional[str]]:
    """Accept a client's permessage-deflate offer (RULES N1).

    :param offer_header: the request's ``Sec-WebSocket-Extensions`` value.
    :returns: the extension and the response header value, or ``(None, None)``.
    """
    if not offer_header:
        return None, None
    for offer in offer_header.split(","):
        name = offer.split(";", 1)[0].strip().lower()
        if name != "permessage-deflate":
            continue  # N1: an unknown extension offer is ignored
        extension = BoundedDeflate()
        accepted = extension.accept(offer.strip())
        if accepted is None or accepted is False:
            continue
        value = "permessage-deflate"
        if isinstance(accepted, str) and accepted:
            value += "; " + accepted
        return extension, value
    return None, None
