"""Greenlets or threads, chosen automatically (SPEC §7).

When gevent has monkey-patched ``threading``, work runs in greenlets; otherwise in daemon
threads.  The decision is made per call, so importing cfws_sync before
``monkey.patch_all()`` is fine.

A *turn* is one uninterrupted run of user code: a handler call or one event dispatch.
Deliveries scheduled during a turn start when it ends, so listeners attached in the same
turn as ``accept()`` never miss a message (SPEC §2, "no event lost to a race").
"""

from __future__ import annotations

import sys
import functools
import threading
from typing import Any, Callable, Optional

__all__ = ["spawn", "spawn_later", "in_turn", "after_turn", "turn_running",
           "using_gevent", "gevent_socket_class"]

class _TurnLocal:
    """Where the current turn is kept: per thread, or per greenlet under gevent, even
    when gevent patched ``threading`` after this module was imported.  Read it as an
    object: ``_turn.pending`` is the list of deferred starts, absent outside a turn."""

    __slots__ = ()
    _locals: dict[bool, Any] = {}

    def _local(self) -> Any:
        patched = using_gevent()
        state = self._locals.get(patched)
        if state is None:  # ``threading.local`` is gevent's greenlet-local once patched
            state = self._locals.setdefault(patched, threading.local())
        return state

    def __getattr__(self, name: str) -> Any:
        return getattr(self._local(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._local(), name, value)


_turn = _TurnLocal()


def turn_running() -> bool:
    """Whether a turn of user code is running here (see :class:`in_turn`)."""
    return getattr(_turn, "pending", None) is not None


_patched = False  # gevent patched ``threading``: once seen, for good


def using_gevent() -> bool:
    """True when gevent has monkey-patched ``threading`` in this process.

    Called for every event, so it is cheap: gevent cannot have patched anything
    before ``gevent.monkey`` was imported, and a patch is never undone.
    """
    global _patched
    if _patched:
        return True
    monkey = sys.modules.get("gevent.monkey")
    if monkey is None:
        return False
    _patched = bool(monkey.is_module_patched("threading"))
    return _patched


def gevent_socket_class() -> Optional[type]:
    """gevent's socket class, or ``None`` without gevent."""
    try:
        from gevent.socket import socket  # type: ignore[import-untyped, unused-ignore]
    except ImportError:  # pragma: no cover - gevent is a dependency
        return None
    return socket  # type: ignore[no-any-return, unused-ignore]


def fair_yield() -> Optional[Callable[[], Any]]:
    """Under gevent, a call that lets every other ready greenlet run once; else ``None``.

    A gevent reader whose ``recv`` always finds data (a fast client) never blocks, so it
    would never give the hub a turn and other connections would starve.  Threads are
    preempted by the OS and need nothing.
    """
    if not using_gevent():
        return None
    from gevent import sleep

    return functools.partial(sleep, 0)


def spawn(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` concurrently: in a greenlet under gevent, else a daemon thread."""
    if using_gevent():
        import gevent  # type: ignore[import-untyped, unused-ignore]

        return gevent.spawn(fn, *args)
    thread = threading.Thread(target=fn, args=args, daemon=True, name="cfws_sync")
    thread.start()
    return thread


class Timer:
    """A cancellable call of ``fn`` after ``delay`` seconds."""

    def __init__(self, delay: float, fn: Callable[[], Any]) -> None:
        self._impl: Any
        if using_gevent():
            import gevent  # type: ignore[import-untyped, unused-ignore]

            self._impl = gevent.spawn_later(delay, fn)
        else:
            self._impl = threading.Timer(delay, fn)
            self._impl.name = "cfws_sync-timer"
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
        turn = _turn._local()
        self._outer: Optional[list[Callable[[], Any]]] = getattr(turn, "pending", None)
        turn.pending = []

    def __exit__(self, *exc: Any) -> None:
        turn = _turn._local()
        pending = turn.pending
        turn.pending = self._outer
        for start in pending:
            start()


def after_turn(start: Callable[[], Any]) -> None:
    """Call ``start()`` when the current turn ends, or now when no turn is running."""
    pending = getattr(_turn._local(), "pending", None)
    if pending is None:
        start()
    else:
        pending.append(start)
