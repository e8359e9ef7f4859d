"""``Blob``: immutable binary data, as a ``"blob"`` socket delivers it (RULES D2)."""

from __future__ import annotations

import builtins
from typing import Iterable, Optional, Union

__all__ = ["Blob"]

BlobPart = Union[bytes, bytearray, memoryview, str, "Blob"]


class Blob:
    """Immutable bytes with a MIME ``type``; every reader is synchronous.

    :param parts: bytes-like objects, strings (UTF-8 encoded) or other blobs, joined.
    :param type: the MIME type, ``""`` by default (a received message's is ``""``).
    """

    __slots__ = ("_data", "type")
    _data: builtins.bytes

    def __init__(self, parts: Iterable[BlobPart] = (), type: str = "") -> None:
        chunks: list[builtins.bytes] = []
        for part in parts:
            if isinstance(part, Blob):
                chunks.append(part._data)
            elif isinstance(part, str):
                chunks.append(part.encode("utf-8", "surrogatepass"))
            elif isinstance(part, (bytes, bytearray, memoryview)):
                chunks.append(bytes(part))
            else:
                raise TypeError(
                    "Blob parts must be bytes-like, str or Blob, not %s"
                    % type_name(part)
                )
        self._data = b"".join(chunks)
        #: The MIME type given at construction.
        self.type = type

    @classmethod
    def _wrap(cls, data: builtins.bytes) -> "Blob":
        blob = cls.__new__(cls)
        blob._data = data
        blob.type = ""
        return blob

    @property
    def size(self) -> int:
        """The length in bytes."""
        return len(self._data)

    def bytes(self) -> builtins.bytes:
        """The content as ``bytes``."""
        return self._data

    def array_buffer(self) -> builtins.bytes:
        """The content as ``bytes`` (JavaScript's ``arrayBuffer()``)."""
        return self._data

    arrayBuffer = array_buffer

    def text(self) -> str:
        """The content decoded as UTF-8, invalid bytes replaced by U+FFFD."""
        return self._data.decode("utf-8", "replace")

    def slice(
        self, start: int = 0, end: Optional[int] = None, content_type: str = ""
    ) -> "Blob":
        """A new blob of bytes ``start`` to ``end`` (negative values count from the end)."""
        part = Blob._wrap(self._data[start:end])
        part.type = content_type
        return part

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Blob):
            return self._data == other._data and self.type == other.type
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self._data, self.type))

    def __repr__(self) -> str:
        return "<Blob size=%d type=%r>" % (len(self._data), self.type)


def type_name(value: object) -> str:
    return type(value).__name__
