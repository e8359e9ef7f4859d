"""Compatibility dates and flags (SPEC §4), as in Wrangler's configuration.

Behaviour that changed over time is chosen by a date and flags.  With no date, the newest
behaviour applies.  ``with compatibility(date=..., flags=...):`` sets them for sockets
created inside the block; ``websocket_app``, ``WebSocket()``, ``connect()`` and ``fetch()``
take the same settings as keywords.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

__all__ = ["Compatibility", "compatibility", "current_compatibility", "KNOWN_FLAGS"]

# flag name -> (setting, value it gives).  Dates are RULES B1, D1, C10 and K6.
_FLAGS = {
    "web_socket_auto_reply_to_close": ("auto_reply_to_close", True),
    "web_socket_manual_reply_to_close": ("auto_reply_to_close", False),
    "websocket_standard_binary_type": ("standard_binary_type", True),
    "no_websocket_standard_binary_type": ("standard_binary_type", False),
    "websocket_close_reason_byte_limit": ("close_reason_byte_limit", True),
    "pedantic_wpt": ("pedantic_wpt", True),
    "web_socket_compression": ("compression", True),
    "no_web_socket_compression": ("compression", False),
}
#: The flag names cfws_sync understands.
KNOWN_FLAGS = frozenset(_FLAGS)

_ENABLE_DATES = {
    "auto_reply_to_close": "2026-04-07",  # B1
    "standard_binary_type": "2026-03-17",  # D1
    "close_reason_byte_limit": "2026-03-03",  # C10
    "compression": "2023-08-15",  # K6, N1
}


@dataclass(frozen=True)
class Compatibility:
    """The behaviour switches that a compatibility date and flags resolve to.

    Build one with :meth:`resolve`; the fields are read by sockets when they are created.
    """

    #: A peer's Close is answered by the runtime (B1, B2).
    auto_reply_to_close: bool = True
    #: The default ``binary_type`` is ``"blob"`` rather than ``"arraybuffer"`` (D1).
    standard_binary_type: bool = True
    #: ``close()`` refuses reasons over 123 UTF-8 bytes (C10).
    close_reason_byte_limit: bool = True
    #: ``close()`` accepts only 1000 and 3000–4999 (C6).
    pedantic_wpt: bool = False
    #: permessage-deflate is offered and accepted (K6, N1).
    compression: bool = True

    @classmethod
    def resolve(
        cls, date: Optional[str] = None, flags: Iterable[str] = ()
    ) -> "Compatibility":
        """Resolve a compatibility date (``"YYYY-MM-DD"``) and flags to switches.

        :param date: the compatibility date; ``None`` means the newest behaviour.
        :param flags: flag names, as in Wrangler's ``compatibility_flags``.
        :raises ValueError: for a malformed date or an unknown flag.
        """
        if isinstance(flags, str):
            flags = [flags]
        settings = {}
        if date is not None:
            try:
                # isoformat(): other spellings Python accepts ("20260407") compare right
                day = datetime.date.fromisoformat(date).isoformat()
            except (TypeError, ValueError):
                raise ValueError(
                    "compatibility date must be 'YYYY-MM-DD', not %r" % (date,)
                ) from None
            settings = {name: day >= on for name, on in _ENABLE_DATES.items()}
        for flag in flags:
            if flag not in _FLAGS:
                raise ValueError(
                    "unknown compatibility flag %r (known: %s)"
                    % (flag, ", ".join(sorted(_FLAGS)))
                )
            name, value = _FLAGS[flag]
            settings[name] = value
        resolved = cls(**settings)
        return _NEWEST if resolved == _NEWEST else resolved  # one object: ``is`` finds it

    @property
    def default_binary_type(self) -> str:
        """``"blob"`` or ``"arraybuffer"``: a new socket's ``binary_type`` (D1)."""
        return "blob" if self.standard_binary_type else "arraybuffer"


_NEWEST = Compatibility()
_current: contextvars.ContextVar[Compatibility] = contextvars.ContextVar(
    "cfws_sync_compatibility", default=_NEWEST
)


def current_compatibility() -> Compatibility:
    """The settings in force here: those of the innermost :func:`compatibility` block."""
    return _current.get()


@contextlib.contextmanager
def compatibility(
    date: Optional[str] = None, flags: Iterable[str] = ()
) -> Iterator[Compatibility]:
    """Use a compatibility date and flags for sockets created inside the block.

    ::

        with cfws_sync.compatibility(date="2025-06-01"):
            client, server = WebSocketPair()   # legacy close and binaryType rules

    :param date: ``"YYYY-MM-DD"``; ``None`` means the newest behaviour.
    :param flags: flag names, e.g. ``["web_socket_manual_reply_to_close"]``.
    """
    token = _current.set(Compatibility.resolve(date, flags))
    try:
        yield _current.get()
    finally:
        _current.reset(token)
