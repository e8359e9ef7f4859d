"""``cfws_sync._runtime``: turns, timers and tasks, under threads and (``CFWS_GEVENT=1``)
under gevent."""

from __future__ import annotations

import os
import threading
import time

from cfws_sync import _runtime


def test_after_turn_starts_when_the_turn_ends():
    order = []
    with _runtime.in_turn():
        _runtime.after_turn(lambda: order.append("deferred"))
        order.append("turn")
        assert _runtime.turn_running()
    assert order == ["turn", "deferred"]
    assert not _runtime.turn_running()


def test_after_turn_outside_a_turn_starts_at_once():
    order = []
    _runtime.after_turn(lambda: order.append("now"))
    assert order == ["now"]


def test_nested_turns_start_their_own_work_at_their_own_end():
    order = []
    with _runtime.in_turn():
        _runtime.after_turn(lambda: order.append("outer"))
        with _runtime.in_turn():
            _runtime.after_turn(lambda: order.append("inner"))
        assert order == ["inner"]
        assert _runtime.turn_running()
    assert order == ["inner", "outer"]


def test_a_turn_ends_and_starts_its_work_when_it_raises():
    order = []
    try:
        with _runtime.in_turn():
            _runtime.after_turn(lambda: order.append("deferred"))
            raise KeyError("x")
    except KeyError:
        pass
    assert order == ["deferred"]
    assert not _runtime.turn_running()


def test_a_turn_leaves_nothing_behind():
    """A connection parked between turns keeps no per-task state (a thread- or
    greenlet-local would keep one for as long as the connection lasts)."""
    with _runtime.in_turn():
        with _runtime.in_turn():
            pass
    assert _runtime._here() not in _runtime._pending


def test_turns_are_per_task():
    inside, seen, release = threading.Event(), [], threading.Event()

    def other():
        inside.wait(5)
        seen.append(_runtime.turn_running())
        release.set()

    task = _runtime.spawn(other)
    with _runtime.in_turn():
        inside.set()
        assert release.wait(5)
    task.join(5)
    assert seen == [False]


def test_the_old_pending_view_still_reads():
    assert _runtime._turn.pending is None
    with _runtime.in_turn():
        assert _runtime._turn.pending == []


def test_timer_fires_once_in_a_task_of_its_own():
    fired, done = [], threading.Event()

    def fn():
        fired.append(_runtime._here())
        done.set()

    timer = _runtime.spawn_later(0.05, fn)
    assert done.wait(5)
    time.sleep(0.1)
    assert fired and fired[0] != _runtime._here()
    assert len(fired) == 1
    timer.cancel()  # after it fired: nothing happens


def test_cancelled_timer_never_fires():
    fired = []
    timer = _runtime.spawn_later(0.05, lambda: fired.append(1))
    timer.cancel()
    timer.cancel()
    later = threading.Event()
    _runtime.spawn_later(0.15, later.set)
    assert later.wait(5)
    assert fired == []


class _Due:
    """What the clock needs of a timer."""

    def __init__(self) -> None:
        self.cancelled = False
        self.fired = threading.Event()

    def _fire(self) -> None:
        self.fired.set()


def test_clock_keeps_few_cancelled_timers():
    """A connection arms a close deadline and mostly cancels it: at a high connection
    rate with a long close_timeout, cancelled timers must not pile up until their
    deadlines."""
    clock = _runtime._Clock()
    for _ in range(2000):
        due = _Due()
        clock.add(due, 60)
        clock.cancel(due)
    assert len(clock._heap) <= 130
    soon = _Due()
    clock.add(soon, 0.01)
    assert soon.fired.wait(5)


def test_clock_fires_in_deadline_order():
    clock = _runtime._Clock()
    order = []

    class Named(_Due):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def _fire(self) -> None:
            order.append(self.name)
            super()._fire()

    late, early = Named("late"), Named("early")
    clock.add(late, 0.2)
    clock.add(early, 0.05)
    assert late.fired.wait(5)
    assert order == ["early", "late"]


def test_fair_yield_is_one_shared_call():
    first, second = _runtime.fair_yield(), _runtime.fair_yield()
    if _runtime.using_gevent():
        assert first is second is not None
    else:
        assert first is None and second is None


def test_timers_fire_in_a_forked_child():
    """A worker forked from a process that used timers (gunicorn's) gets a clock of
    its own."""
    started = threading.Event()
    _runtime.spawn_later(0.01, started.set)  # the parent's clock is running
    assert started.wait(5)
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if its own timer fires
        fired = threading.Event()
        _runtime.spawn_later(0.01, fired.set)
        os._exit(0 if fired.wait(5) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_leaf_locks_are_the_operating_systems_even_under_gevent():
    # Held only for statements that never switch greenlets, so gevent's lock (a Python
    # call and hub bookkeeping per use) buys nothing there.
    import _thread
    import sys

    monkey = sys.modules.get("gevent.monkey")
    real = monkey.get_original("_thread", "allocate_lock") if monkey else _thread.allocate_lock
    lock = _runtime.leaf_lock()
    assert type(lock) is type(real())
    assert lock.acquire(False) and not lock.acquire(False)
    lock.release()
