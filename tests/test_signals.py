"""Blinker signals that see every socket's events (SPEC §2)."""

import gc
import logging

import pytest

from cfws_sync import signals
from cfws_sync.events import ErrorEvent, Event
from tests.corekit import Recorder, make_pair, settle


@pytest.fixture
def pair():
    rec = Recorder()
    client, server = make_pair()
    rec.watch(client, "client")
    rec.watch(server, "server")
    server.accept()
    client.accept()
    yield rec, client, server


@pytest.fixture
def connected():
    """Connect receivers for one test; disconnect them all afterwards."""
    made = []

    def connect(signal, receiver, **kwargs):
        signal.connect(receiver, **kwargs)
        made.append((signal, receiver))
        return receiver

    yield connect
    for signal, receiver in made:
        signal.disconnect(receiver)


def test_signals_are_named_and_mapped_by_event_type():
    assert signals.BY_TYPE == {"open": signals.open, "message": signals.message,
                               "close": signals.close, "error": signals.error}
    assert [s.name for s in signals.BY_TYPE.values()] == ["open", "message", "close", "error"]


def test_sender_is_the_socket_and_event_is_passed(pair, connected):
    rec, client, server = pair
    got = []
    connected(signals.message, lambda ws, event: got.append(("message", ws, event)))
    connected(signals.close, lambda ws, event: got.append(("close", ws, event)))
    client.send("hi")
    client.close(1000, "bye")
    rec.wait_event("client", "close")
    settle(client, server)
    message_event = rec.of("server", "message")[0].event
    server_close = rec.of("server", "close")[0].event
    client_close = rec.of("client", "close")[0].event
    assert got == [("message", server, message_event), ("close", server, server_close),
                   ("close", client, client_close)]


def test_a_lambda_connected_plainly_is_kept_alive(pair, connected):
    rec, client, server = pair
    got = []

    def make_receiver():
        return lambda ws, event: got.append(event.data)  # no other reference survives

    connected(signals.message, make_receiver())
    gc.collect()
    client.send("after gc")
    rec.wait_count(1)
    settle(client, server)
    assert got == ["after gc"]


def test_a_closure_used_as_decorator_is_kept_alive(pair):
    rec, client, server = pair
    got = []

    def install():
        @signals.message.connect
        def on_message(ws, event):
            got.append(event.data)
        return on_message

    receiver = install()
    try:
        gc.collect()
        client.send("x")
        rec.wait_count(1)
        settle(client, server)
        assert got == ["x"]
    finally:
        signals.message.disconnect(receiver)


def test_weak_connection_still_possible():
    got = []

    class Holder:
        def receive(self, ws, event):
            got.append(event)

    holder = Holder()
    before = set(signals.error.receivers)
    signals.error.connect(holder.receive, weak=True)
    assert len(signals.error.receivers) == len(before) + 1
    del holder
    gc.collect()
    assert set(signals.error.receivers) == before


def test_one_receivers_exception_does_not_stop_the_rest(pair, connected, caplog):
    rec, client, server = pair
    got = []

    def broken(ws, event):
        raise RuntimeError("receiver failed")

    connected(signals.message, lambda ws, event: got.append("before"))
    connected(signals.message, broken)
    connected(signals.message, lambda ws, event: got.append("after"))
    with caplog.at_level(logging.ERROR, logger="cfws_sync"):
        client.send("x")
        rec.wait_count(1)
        settle(client, server)
    assert got == ["before", "after"]
    assert any("receiver failed" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    # a receiver's failure is not the socket's: no error event, the socket stays open
    assert [s.type for s in rec.seen] == ["message"]
    assert server.ready_state == 1


def test_receivers_for_one_socket_only(pair, connected):
    rec, client, server = pair
    got = []
    connected(signals.message, lambda ws, event: got.append(event.data), sender=client)
    client.send("to server")
    server.send("to client")
    rec.wait_count(2)
    settle(client, server)
    assert got == ["to client"]


def test_error_signal_carries_the_error_event(pair, connected, caplog):
    rec, client, server = pair
    got = []
    connected(signals.error, lambda ws, event: got.append((ws, event)))
    server.add_event_listener("message", lambda e: 1 / 0)
    with caplog.at_level(logging.CRITICAL, logger="cfws_sync"):
        client.send("x")
        rec.wait_event("client", "close")
        settle(client, server)
    (ws, event), = got
    assert ws is server and isinstance(event, ErrorEvent)
    assert isinstance(event.error, ZeroDivisionError)


def test_open_signal_is_sent_for_open_events(pair, connected):
    # A pair end never opens; the open event of a client goes through the same dispatch.
    rec, client, server = pair
    got = []
    connected(signals.open, lambda ws, event: got.append((ws, event.type)))
    server._dispatch(Event("open"))
    assert got == [(server, "open")]


def test_muted_signal_sends_nothing(connected):
    got = []
    connected(signals.message, lambda ws, event: got.append(event))
    with signals.message.muted():
        assert signals.message.send(None, event=Event("message")) == []
    assert got == []
