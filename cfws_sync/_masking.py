"""Unmasking (RFC 6455 §5.3): in C when ``websockets.speedups`` is installed
(``cfws_sync[speedups]``), else with wsproto's pure-Python masker."""

from __future__ import annotations

from typing import Callable, Optional, Union

from wsproto.frame_protocol import FrameDecoder, XorMaskerSimple

__all__ = ["mask", "Decoder"]

_apply_mask: Optional[Callable[[Union[bytes, bytearray, memoryview], bytes], bytes]]
try:  # an optional C unmask, from a well-kept package, when it is installed
    from websockets.speedups import apply_mask as _apply_mask
except ImportError:  # pragma: no cover - depends on the environment
    _apply_mask = None


class _FastMasker:
    """XOR with the frame's mask key in C, keeping the key's phase across chunks."""

    __slots__ = ("key", "offset")

    def __init__(self, key: Union[bytes, bytearray]) -> None:
        self.key = bytes(key)
        self.offset = 0

    def process(self, data: bytes) -> bytes:
        phase = self.offset & 3
        key = self.key[phase:] + self.key[:phase] if phase else self.key
        self.offset += len(data)
        assert _apply_mask is not None
        return _apply_mask(data, key)


class Decoder(FrameDecoder):
    """wsproto's frame decoder, with the C unmask swapped in when available."""

    def parse_header(self) -> bool:
        if not super().parse_header():
            return False
        if _apply_mask is not None and isinstance(self.masker, XorMaskerSimple):
            self.masker = _FastMasker(self.masker._masking_key)  # type: ignore[assignment]
        return True


def mask(payload: Union[bytes, bytearray, memoryview], key: bytes) -> bytes:
    """``payload`` XOR the 4-byte ``key``, repeated (RFC 6455 §5.3)."""
    if _apply_mask is not None:
        return _apply_mask(payload, key)
    return bytes(XorMaskerSimple(key).process(bytearray(payload)))
