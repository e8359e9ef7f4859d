"""``RedisBackplane``: rooms of the same name in many processes, through Redis pub/sub.

Theory of operation
-------------------
Each room name is one Redis channel (``channel_prefix + name``).  A broadcast is first
delivered to the room's own sockets by the room itself, then handed to the backplane,
which delivers it at once to the other rooms of that name attached to it in this
process, and queues it for Redis.  Two workers (greenlets under gevent, daemon threads
otherwise) do the network work, so no caller ever waits on Redis:

* the *publisher* sends the queue, in order, with ``PUBLISH``;
* the *subscriber* holds one connection subscribed to the channels of the attached rooms
  and hands every publication of another process to the local rooms of its name.

Each publication carries the id of the backplane that made it; the subscriber skips its
own, so a process never receives its own broadcast twice.

Delivery is at most once, in order per publishing process.  When Redis cannot be reached,
publications are dropped (and counted), and both workers retry with exponential backoff
(``reconnect_delay`` doubling up to ``max_reconnect_delay``, with jitter), logging the
loss once and the recovery once; local broadcasts carry on meanwhile.  What other
processes publish while this one is not subscribed is lost, as pub/sub has no memory.

The workers start when the first room is attached in a process (also after a fork).
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import uuid
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Optional

from . import _runtime

if TYPE_CHECKING:
    from .room import Data, Room

__all__ = ["RedisBackplane"]

log = logging.getLogger("cfws_sync.room")

_POLL = 0.5  # seconds the subscriber waits for a message before it looks at new rooms


class RedisBackplane:
    """Connects the :class:`~cfws_sync.Room` objects of the same name in every process
    that uses the same Redis, through pub/sub.

    :param url: a Redis URL, e.g. ``"redis://127.0.0.1:6379/0"``.
    :param channel_prefix: prepended to a room's name to make its channel.
    :param max_pending: publications that may wait for Redis; past it the oldest is
        dropped.
    :param reconnect_delay: seconds before the first reconnection attempt.
    :param max_reconnect_delay: the longest wait between attempts.
    :param socket_timeout: seconds any one Redis operation may take.
    :param health_check_interval: seconds of silence after which the subscription is
        checked with a ``PING`` (finds a Redis that vanished without closing).
    :raises ImportError: the ``redis`` package is not installed
        (``pip install cfws_sync[redis]``).
    """

    def __init__(self, url: str, *, channel_prefix: str = "cfws_sync:room:",
                 max_pending: int = 10_000, reconnect_delay: float = 0.1,
                 max_reconnect_delay: float = 5.0, socket_timeout: float = 5.0,
                 health_check_interval: float = 10.0) -> None:
        try:
            import redis  # noqa: F401
        except ImportError:  # pragma: no cover - depends on the install
            raise ImportError("RedisBackplane needs the redis package: "
                              "pip install 'cfws_sync[redis]'") from None
        for name, value in (("max_pending", max_pending), ("reconnect_delay", reconnect_delay),
                            ("max_reconnect_delay", max_reconnect_delay),
                            ("socket_timeout", socket_timeout),
                            ("health_check_interval", health_check_interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError("%s must be a positive number, not %r" % (name, value))
        #: The Redis URL.
        self.url = url
        #: The prefix of every channel.
        self.channel_prefix = channel_prefix
        self.max_pending = int(max_pending)
        self.reconnect_delay = float(reconnect_delay)
        self.max_reconnect_delay = float(max(max_reconnect_delay, reconnect_delay))
        self.socket_timeout = float(socket_timeout)
        self.health_check_interval = float(health_check_interval)
        #: Publications dropped because Redis was unreachable or the queue was full.
        self.dropped = 0
        self._origin = uuid.uuid4().hex.encode("ascii")
        self._lock = threading.Lock()  # a leaf lock over the fields below
        self._rooms: dict[str, "weakref.WeakSet[Room]"] = {}
        self._pending: deque[tuple[bytes, bytes]] = deque()
        self._pid: Optional[int] = None
        self._closed = False
        self._publisher_down = False
        self._subscribed: frozenset[str] = frozenset()
        self._client: Any = None
        self._wake: Any = None
        self._stop: Any = None
        self._workers: list[Any] = []

    # -- the Backplane protocol ----------------------------------------------------------

    def attach(self, room: "Room") -> None:
        """Carry broadcasts to and from ``room`` (the room calls this when it first
        accepts a socket or broadcasts)."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this RedisBackplane is closed")
            self._rooms.setdefault(room.name, weakref.WeakSet()).add(room)
            self._start_locked()

    def detach(self, room: "Room") -> None:
        """Stop carrying broadcasts to ``room``."""
        with self._lock:
            rooms = self._rooms.get(room.name)
            if rooms is not None:
                rooms.discard(room)

    def publish(self, room: "Room", data: "Data", tag: Optional[str]) -> None:
        """Deliver a broadcast of ``room`` to the other rooms of its name here, and queue
        it for the other processes.  Never blocks."""
        for sibling in self._local_rooms(room.name):
            if sibling is not room:
                sibling.broadcast_local(data, tag)
        payload = _encode(self._origin, data, tag)
        channel = (self.channel_prefix + room.name).encode("utf-8")
        with self._lock:
            self._start_locked()
            if self._publisher_down or self._closed:
                self.dropped += 1
                return
            if len(self._pending) >= self.max_pending:
                self._pending.popleft()
                self.dropped += 1
            self._pending.append((channel, payload))
            wake = self._wake
        wake.set()

    # -- state ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """Whether publications currently go out and every attached room's channel is
        subscribed."""
        with self._lock:
            wanted = {name for name, rooms in self._rooms.items() if len(rooms)}
            return (self._pid == os.getpid() and not self._publisher_down
                    and wanted <= self._subscribed)

    def close(self, timeout: float = 5.0) -> None:
        """Stop both workers and close the Redis connections; rooms keep their local
        sockets.

        :param timeout: seconds to wait for each worker to end.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers, self._workers = self._workers, []
            stop, wake = self._stop, self._wake
        if stop is not None:
            stop.set()
            wake.set()
        for worker in workers:
            worker.join(timeout)
        if self._client is not None:
            self._client.close()

    # -- the workers ---------------------------------------------------------------------

    def _start_locked(self) -> None:
        if self._pid == os.getpid() or self._closed:
            return
        # First start, or the first use in a forked child: the parent's workers and
        # connections are not ours.
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self._pid = os.getpid()
        self._client = redis.Redis.from_url(
            self.url, socket_timeout=self.socket_timeout,
            socket_connect_timeout=self.socket_timeout,
            health_check_interval=self.health_check_interval,
            retry=Retry(NoBackoff(), 0))  # one attempt: this module does the retrying
        self._wake = threading.Event()  # created now: gevent's when it has patched
        self._stop = threading.Event()
        self._pending.clear()
        self._subscribed = frozenset()
        self._publisher_down = False
        self._workers = [_runtime.spawn(self._publish_loop), _runtime.spawn(self._subscribe_loop)]

    def _publish_loop(self) -> None:
        backoff = _Backoff(self.reconnect_delay, self.max_reconnect_delay)
        stop, wake, client = self._stop, self._wake, self._client
        while not stop.is_set():
            if self._publisher_down:
                if stop.wait(backoff.next()):
                    return
                try:
                    client.ping()
                except Exception as exc:
                    log.debug("Redis backplane %s: still unreachable: %s", self.url, exc)
                    continue
                with self._lock:
                    self._publisher_down = False
                backoff.reset()
                log.info("Redis backplane %s: publishing again", self.url)
                continue
            wake.wait()
            wake.clear()
            self._drain(client)

    def _drain(self, client: Any) -> None:
        while True:
            with self._lock:
                if not self._pending or self._publisher_down or self._closed:
                    return
                channel, payload = self._pending.popleft()
            try:
                client.publish(channel, payload)
            except Exception as exc:
                self._publisher_lost("cannot publish", exc, lost=1)
                return

    def _publisher_lost(self, what: str, exc: BaseException, lost: int = 0,
                        quiet: bool = False) -> None:
        """Drop what waits (and ``lost`` more) until the publisher reaches Redis again."""
        with self._lock:
            first = not self._publisher_down
            self._publisher_down = True
            self.dropped += len(self._pending) + lost
            self._pending.clear()
            wake = self._wake
        # Stale pooled connections would lose the first publication after a restart.
        self._client.connection_pool.disconnect()
        wake.set()
        if first and not quiet:
            log.warning("Redis backplane %s: %s (%s); broadcasts to other processes are "
                        "dropped until it is back", self.url, what, exc)

    def _subscribe_loop(self) -> None:
        backoff = _Backoff(self.reconnect_delay, self.max_reconnect_delay)
        stop, client = self._stop, self._client
        lost_at: Optional[float] = None

        def subscribed() -> None:
            nonlocal lost_at
            backoff.reset()
            if lost_at is not None:
                log.info("Redis backplane %s: subscribed again after %.1f s", self.url,
                         time.monotonic() - lost_at)
                lost_at = None

        while not stop.is_set():
            pubsub = client.pubsub()
            try:
                self._listen(pubsub, stop, subscribed)
            except Exception as exc:
                with self._lock:
                    self._subscribed = frozenset()
                if lost_at is None:
                    lost_at = time.monotonic()
                    log.warning("Redis backplane %s: connection lost (%s); reconnecting; "
                                "broadcasts to other processes are dropped until it is back",
                                self.url, exc)
                    self._publisher_lost("connection lost", exc, quiet=True)
                else:
                    log.debug("Redis backplane %s: reconnect failed: %s", self.url, exc)
            finally:
                try:
                    pubsub.close()
                except Exception:  # its connection is already broken
                    pass
            stop.wait(backoff.next())

    def _listen(self, pubsub: Any, stop: Any, subscribed: Callable[[], None]) -> None:
        """Subscribe to the attached rooms' channels and deliver until an error."""
        requested: set[str] = set()
        confirmed: set[str] = set()
        while not stop.is_set():
            wanted = self._wanted_channels()
            if wanted - requested:
                pubsub.subscribe(*sorted(wanted - requested))
                requested |= wanted
            if requested - wanted:
                pubsub.unsubscribe(*sorted(requested - wanted))
                requested &= wanted
                confirmed &= wanted
                self._set_subscribed(confirmed)
            message = pubsub.get_message(timeout=_POLL)
            if message is None:
                continue
            kind = message.get("type")
            channel = _text(message.get("channel"))
            if kind == "subscribe":
                confirmed.add(channel)
                self._set_subscribed(confirmed)
                if confirmed >= requested:
                    subscribed()
            elif kind == "message":
                self._deliver(channel, message.get("data"))

    def _set_subscribed(self, channels: set[str]) -> None:
        names = frozenset(c[len(self.channel_prefix):] for c in channels)
        with self._lock:
            self._subscribed = names

    def _wanted_channels(self) -> set[str]:
        with self._lock:
            return {self.channel_prefix + name for name, rooms in self._rooms.items()
                    if len(rooms)}

    def _local_rooms(self, name: str) -> list["Room"]:
        with self._lock:
            rooms = self._rooms.get(name)
            return list(rooms) if rooms is not None else []

    def _deliver(self, channel: str, payload: Any) -> None:
        try:
            origin, data, tag = _decode(payload)
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("Redis backplane %s: ignoring a malformed publication on %s: %s",
                        self.url, channel, exc)
            return
        if origin == self._origin:
            return  # our own: its rooms here were served when it was made
        for room in self._local_rooms(channel[len(self.channel_prefix):]):
            try:
                room.broadcast_local(data, tag)
            except Exception:  # one room's failure must not stop the subscription
                log.exception("Redis backplane: delivering to %r failed", room)

    def __repr__(self) -> str:
        return "<RedisBackplane %s connected=%s>" % (self.url, self.connected)


class _Backoff:
    """Exponential delays with ±20 % jitter, from ``first`` up to ``longest`` seconds."""

    def __init__(self, first: float, longest: float) -> None:
        self.first = first
        self.longest = longest
        self.delay = first

    def next(self) -> float:
        delay = self.delay
        self.delay = min(self.delay * 2, self.longest)
        return delay * random.uniform(0.8, 1.2)

    def reset(self) -> None:
        self.delay = self.first


def _encode(origin: bytes, data: "Data", tag: Optional[str]) -> bytes:
    """``header JSON`` + ``\\n`` + the message's bytes (UTF-8 for text)."""
    binary = isinstance(data, bytes)
    body = data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass")
    header = json.dumps({"o": origin.decode("ascii"), "t": tag, "b": binary},
                        separators=(",", ":")).encode("utf-8")
    return header + b"\n" + body


def _decode(payload: Any) -> tuple[bytes, "Data", Optional[str]]:
    if not isinstance(payload, bytes):
        raise TypeError("publication is not bytes")
    header, newline, body = payload.partition(b"\n")
    if not newline:
        raise ValueError("no header")
    fields = json.loads(header)
    tag = fields["t"]
    if tag is not None and not isinstance(tag, str):
        raise ValueError("bad tag")
    data: "Data" = body if fields["b"] else body.decode("utf-8", "surrogatepass")
    return str(fields["o"]).encode("ascii"), data, tag


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
