"""Blinker signals that see every event of every socket (SPEC §2).

Each signal is sent with the socket as sender and the event as ``event=``::

    from cfws_sync import signals

    @signals.message.connect
    def count(ws, event):
        metrics.incr("ws.messages")

Two of blinker's habits are changed here: receivers are held strongly (a lambda or a
closure connected with plain ``connect(fn)`` stays connected), and one receiver's
exception is logged and does not stop the others.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import blinker

__all__ = ["open", "message", "close", "error", "Signal"]

log = logging.getLogger("cfws_sync")


class Signal(blinker.Signal):
    """A blinker signal with strong references and isolated receivers."""

    def connect(self, receiver: Any, sender: Any = blinker.ANY, weak: bool = False) -> Any:
        """Connect ``receiver``; it is held strongly unless ``weak=True`` is given."""
        return super().connect(receiver, sender, weak)

    #: The signal name, for logging.
    name = ""

    def send(self, sender: Any = None, /, **kwargs: Any) -> list[tuple[Any, Any]]:
        """Call every receiver; an exception in one is logged and the rest still run."""
        if self.is_muted or not self.receivers:
            return []
        results = []
        for receiver in self.receivers_for(sender):
            try:
                results.append((receiver, receiver(sender, **kwargs)))
            except Exception:
                log.exception("signal %r receiver %r raised", self.name, receiver)
        return results


class NamedSignal(Signal):
    """A :class:`Signal` with a name, for logging."""

    def __init__(self, name: str, doc: str) -> None:
        super().__init__(doc)
        #: The signal name.
        self.name = name


#: Sent when a client socket opens.
open = NamedSignal("open", "A socket opened (clients).")
#: Sent for every message a socket dispatches.
message = NamedSignal("message", "A socket dispatched a message.")
#: Sent when a socket dispatches its close event.
close = NamedSignal("close", "A socket closed.")
#: Sent for every error event.
error = NamedSignal("error", "A socket reported an error.")

BY_TYPE: dict[str, NamedSignal] = {
    "open": open,
    "message": message,
    "close": close,
    "error": error,
}

Receiver = Callable[..., Any]
