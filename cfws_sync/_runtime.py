"""Greenlets or threads, chosen automatically (SPEC §7).

When gevent has monkey-patched ``threading``, work runs in greenlets; otherwise in daemon
threads.  The decision is made per call, so importing cfws_sync before
``monkey.patch_all()`` is fine.

A *turn* is one uninterrupted run of user code: a handler call or one event dispatch.
Deliveries scheduled during a turn start when it ends, so listeners attached in the same
turn as ``accept()`` never miss a message (SPEC §2, "no event lost to a race").
"""

from __future__ import annotations

import contextvars
import functools
import heapq
import itertools
import os
import sys
import threading
import time
from _thread import allocate_lock as _allocate_lock
from _thread import get_ident as _get_ident
from typing import Any, Callable, Optional

from greenlet import getcurrent as _getcurrent  # type: ignore[import-untyped, unused-ignore]

__all__ = ["spawn", "spawn_later", "in_turn", "after_turn", "turn_running",
           "using_gevent", "gevent_socket_class", "leaf_lock"]

# The pending starts of the turn running in each greenlet (under gevent) or thread, by
# its key (:func:`_here`); an entry exists only while a turn runs, so a parked
# connection keeps no per-greenlet state (as a ``threading.local`` would).
_pending: dict[Any, list[Callable[[], Any]]] = {}


def _here() -> Any:
    """The running greenlet under gevent, else the running thread's id."""
    if _patched or using_gevent():  # the flag first: this runs several times an event
        return _getcurrent()
    return _get_ident()


class _TurnView:
    """``_turn.pending``: the deferred starts of the turn running here, or ``None``."""

    __slots__ = ()

    @property
    def pending(self) -> Optional[list[Callable[[], Any]]]:
        return _pending.get(_here())


_turn = _TurnView()


def turn_running() -> bool:
    """Whether a turn of user code is running here (see :class:`in_turn`)."""
    return _here() in _pending


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


def leaf_lock() -> Any:
    """A lock for a few statements that never wait, switch greenlets, log, or call user
    code; nothing else may be acquired under it but another leaf lock.

    It is the operating system's lock even under gevent, whose patched lock costs a
    Python call and the hub's bookkeeping on every use (the per-message path takes
    several).  That is safe because no greenlet can give up the thread while holding
    one, so greenlets of one thread never contend for it; real threads wait as usual.
    """
    global _allocate_real_lock
    allocate = _allocate_real_lock
    if allocate is None:
        monkey = sys.modules.get("gevent.monkey")
        if monkey is None:  # nothing patched yet: the module's own lock is the real one
            return _allocate_lock()
        allocate = _allocate_real_lock = monkey.get_original("_thread", "allocate_lock")
    return allocate()


_allocate_real_lock: Optional[Callable[[], Any]] = None  # found once gevent is imported


_gevent_socket: list[Optional[type]] = []  # found once


def gevent_socket_class() -> Optional[type]:
    """gevent's socket class, or ``None`` without gevent."""
    if not _gevent_socket:
        try:
            from gevent.socket import socket  # type: ignore[import-untyped, unused-ignore]
        except ImportError:  # pragma: no cover - gevent is a dependency
            socket = None
        _gevent_socket.append(socket)
    return _gevent_socket[0]


def fair_yield() -> Optional[Callable[[], Any]]:
    """Under gevent, a call that lets every other ready greenlet run once; else ``None``.

    A gevent reader whose ``recv`` always finds data (a fast client) never blocks, so it
    would never give the hub a turn and other connections would starve.  Threads are
    preempted by the OS and need nothing.
    """
    if not using_gevent():
        return None
    global _fair_yield
    if _fair_yield is None:
        from gevent import sleep  # type: ignore[import-untyped, unused-ignore]

        _fair_yield = functools.partial(sleep, 0)
    return _fair_yield


_fair_yield: Optional[Callable[[], Any]] = None  # one for every connection


def spawn(fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(*args)`` concurrently: in a greenlet under gevent, else a daemon thread."""
    if using_gevent():
        from gevent import spawn as gevent_spawn  # type: ignore[import-untyped, unused-ignore]

        return gevent_spawn(fn, *args)
    thread = threading.Thread(target=fn, args=args, daemon=True, name="cfws_sync")
    thread.start()
    return thread


def spawn_bare(fn: Callable[..., Any], *args: Any) -> None:
    """Under gevent, run ``fn(*args)`` in a bare greenlet (no links, no result: the
    least a long-parked task can cost), in a copy of the caller's context variables.
    ``fn`` must handle its own errors."""
    from gevent import spawn_raw  # type: ignore[import-untyped, unused-ignore]

    spawn_raw(fn, *args).gr_context = contextvars.copy_context()  # runs at the next turn


class Timer:
    """A cancellable call of ``fn`` after ``delay`` seconds, in a greenlet or thread of
    its own.

    Most timers (a connection's close deadline) are cancelled, so only firing costs a
    task: under gevent the countdown is a bare event-loop timer, and with threads one
    clock thread counts down every timer (:class:`_Clock`).
    """

    __slots__ = ("_impl", "_fn", "cancelled")

    def __init__(self, delay: float, fn: Callable[[], Any]) -> None:
        self._impl: Any = None
        self._fn = fn
        self.cancelled = False
        if using_gevent():
            from gevent import get_hub  # type: ignore[import-untyped, unused-ignore]

            self._impl = get_hub().loop.timer(delay)
            self._impl.start(self._fire)
        else:
            _clock.add(self, delay)

    def _fire(self) -> None:
        """Runs in gevent's hub or the clock thread, which must not block: ``fn`` gets
        a task of its own."""
        if self._impl is not None:
            self._impl.close()
        spawn(self._fn)

    def cancel(self) -> None:
        """Stop the call if it has not started."""
        if self._impl is not None:
            self._impl.close()
        elif not self.cancelled:
            _clock.cancel(self)


class _Clock:
    """The one thread that counts down the timers of the threads runtime.

    A cancelled timer stays in the heap until its deadline (cancelling is O(1)); when
    they are most of it, the heap is rebuilt without them, so a high connection rate
    with a long ``close_timeout`` keeps it small.
    """

    def __init__(self) -> None:
        self._count = itertools.count()
        self._reset()

    def _reset(self) -> None:
        """Start afresh: at creation, and in a forked child, which has no clock thread
        (and may have copied the lock held)."""
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Timer]] = []
        self._cancelled = 0
        self._pid = 0  # the process whose thread runs the clock

    def add(self, timer: Timer, delay: float) -> None:
        entry = (time.monotonic() + delay, next(self._count), timer)
        with self._cond:
            if self._pid != os.getpid():
                self._start()
            heapq.heappush(self._heap, entry)
            if self._heap[0] is entry:
                self._cond.notify()  # an earlier deadline than the clock waits for

    def cancel(self, timer: Timer) -> None:
        with self._cond:
            if timer.cancelled:
                return
            timer.cancelled = True
            self._cancelled += 1
            heap = self._heap
            if self._cancelled > 64 and self._cancelled * 2 > len(heap):
                self._heap = [entry for entry in heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def _start(self) -> None:
        self._pid = os.getpid()
        threading.Thread(target=self._run, daemon=True, name="cfws_sync-clock").start()

    def _run(self) -> None:
        cond = self._cond
        with cond:
            while True:
                heap = self._heap
                if not heap:
                    cond.wait()
                    continue
                deadline, _, timer = heap[0]
                left = deadline - time.monotonic()
                if left > 0:
                    cond.wait(left)
                    continue
                heapq.heappop(heap)
                if timer.cancelled:
                    self._cancelled -= 1
                else:
                    timer.cancelled = True  # fired: a late cancel() changes nothing
                    timer._fire()


_clock = _Clock()
os.register_at_fork(after_in_child=_clock._reset)


def spawn_later(delay: float, fn: Callable[[], Any]) -> Timer:
    """Call ``fn()`` after ``delay`` seconds, concurrently; returns a cancellable timer."""
    return Timer(delay, fn)


class in_turn:
    """Context manager marking a turn of user code; deferred work starts at its end."""

    __slots__ = ("_key", "_outer")

    def __enter__(self) -> None:
        key = self._key = _here()
        self._outer = _pending.get(key)
        _pending[key] = []

    def __exit__(self, *exc: Any) -> None:
        key, outer = self._key, self._outer
        pending = _pending.pop(key)
        if outer is not None:
            _pending[key] = outer
        for start in pending:
            start()


def after_turn(start: Callable[[], Any]) -> None:
    """Call ``start()`` when the current turn ends, or now when no turn is running."""
    pending = _pending.get(_here())
    if pending is None:
        start()
    else:
        pending.append(start)
