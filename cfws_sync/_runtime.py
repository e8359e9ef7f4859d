"""Greenlets or threads, chosen automatically (SPEC §7).

When gevent has monkey-patched ``threading``, work runs in greenlets; otherwise in daemon
threads.  The decision is made per call, so importing cfws_sync before
``monkey.patch_all()`` is fine.

A *turn* is one uninterrupted run of user code: a handler call or one event dispatch.
Deliveries scheduled during a turn start when it ends, so listeners attached in the same
turn as ``accept()`` never miss a message (SPEC §2, "no event lost to a race").
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Optional

__all__ = ["spawn", "spawn_later", "in_turn", "after_turn", "using_gevent"]

_turn = threading.local()


def using_gevent() -> bool:
    """True when gevent has monkey-patched ``threading`` in this process."""
    try:
        from gevent import monkey
    except ImportError:  # pragma: no cover - gevent is a dependency
        return False
    return bool(monkey.is_module_patched("threading"))


def spawn(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` concurrently: in a greenlet under gevent, else a daemon thread."""
    if using_gevent():
        import gevent

        return gevent.spawn(fn, *args)
    thread = threading.Thread(target=fn, args=args, daemon=True, name="cfws_sync")
    thread.start()
    return thread


class Timer:
    """A cancellable call of ``fn`` after ``delay`` seconds."""

    def __init__(self, delay: float, fn: Callable[[], Any]) -> None:
        self._impl: Any
        if using_gevent():
            import gevent

            self._impl = gevent.spawn_later(delay, fn)
        else:
            self._impl = threading.Timer(delay, fn)
            self._impl.daemon = True
            self._impl.start()

    def cancel(self) -> None:
        """Stop the call if it has not started."""
        impl = self._impl
        if hasattr(impl, "kill"):
            impl.kill(block=False)
        else:
            impl.cancel()


def spawn_later(delay: float, fn: Callable[[], Any]) -> Timer:
    """Call ``fn()`` after ``delay`` seconds, concurrently; returns a cancellable timer."""
    return Timer(delay, fn)


class in_turn:
    """Context manager marking a turn of user code; deferred work starts at its end."""

    __slots__ = ("_outer",)

    def __enter__(self) -> None:
        self._outer: Optional[list[Callable[[], Any]]] = getattr(_turn, "pending", None)
        _turn.pending = []

    def __exit__(self, *exc: Any) -> None:
        pending = _turn.pending
        _turn.pending = self._outer
        for start in pending:
            start()


def after_turn(start: Callable[[], Any]) -> None:
    """Call ``start()`` when the current turn ends, or now when no turn is running."""
    pending = getattr(_turn, "pending", None)
    if pending is None:
        start()
    else:
        pending.append(start)
