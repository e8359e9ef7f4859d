"""One end of a socket, in memory: the Workers API of ``WebSocket`` over a
``WebSocketPair`` whose two ends stay in-process (RULES A1–A10, C2, C8, D1–D4, J4, J5;
SPEC §2, §8.5, §8.6).  The close rules seen from both ends are in test_pair."""

import array
import logging
import threading
import time

import pytest

from cfws_sync import Blob, DOMException, WebSocket, WebSocketPair, _runtime
from tests.corekit import Recorder, make_pair, settle

SEND_BEFORE_ACCEPT = ("You must call one of accept() or state.acceptWebSocket() on this "
                      "WebSocket before sending messages.")
LEGACY = "2025-06-01"


@pytest.fixture
def rec():
    return Recorder()


def open_pair(rec, date=None, flags=(), half_open=None, accept_client=True):
    """A pair with both ends watched and accepted (the server end with ``half_open``)."""
    client, server = make_pair(date, flags)
    rec.watch(client, "client")
    rec.watch(server, "server")
    server.accept(allow_half_open=half_open)
    if accept_client:
        client.accept()
    return client, server


# -- A1, A10: a fresh end --------------------------------------------------------------------


def test_A10_ready_state_constants_on_class_and_instance():
    ws = WebSocketPair().server
    for owner in (WebSocket, ws):
        assert (owner.CONNECTING, owner.OPEN, owner.CLOSING, owner.CLOSED) == (0, 1, 2, 3)
        assert (owner.READY_STATE_CONNECTING, owner.READY_STATE_OPEN,
                owner.READY_STATE_CLOSING, owner.READY_STATE_CLOSED) == (0, 1, 2, 3)


def test_A1_fresh_pair_end_state():
    for ws in WebSocketPair():
        assert isinstance(ws, WebSocket)
        assert ws.ready_state == ws.readyState == WebSocket.OPEN
        assert ws.url is None
        assert ws.protocol == ""
        assert ws.extensions == ""
        assert ws.binary_type == ws.binaryType == "blob"
        assert ws.on_message is None and ws.onmessage is None


# -- A2, A3, C8: accept ----------------------------------------------------------------------


def test_A2_send_before_accept_raises_type_error():
    client, server = WebSocketPair()
    for ws in (client, server):
        with pytest.raises(TypeError) as info:
            ws.send("x")
        assert str(info.value) == SEND_BEFORE_ACCEPT


def test_A2_close_before_accept_raises_after_code_validation():
    server = WebSocketPair().server
    with pytest.raises(TypeError) as info:
        server.close(1000)
    assert str(info.value) == SEND_BEFORE_ACCEPT
    assert server.ready_state == 1  # trace f_api_probe: "rs after failed close"
    with pytest.raises(DOMException, match=r"^Invalid WebSocket close code: 999\.$"):
        server.close(999)  # C8: validation first


def test_C8_validation_before_state_after_close():
    client, server = open_pair(Recorder())
    server.close(1000, "a")
    assert server.ready_state == 2
    server.close(1000, "b")  # C2: silent
    with pytest.raises(DOMException) as info:
        server.close(999)
    assert info.value.name == "InvalidAccessError"
    with pytest.raises(TypeError, match=r"^Can't call WebSocket send\(\) after close\(\)\.$"):
        server.send("x")


def test_A3_second_accept_is_a_silent_no_op_and_keeps_the_mode(rec):
    client, server = open_pair(rec)
    server.accept()
    server.accept({"allowHalfOpen": True})
    server.accept(allow_half_open=True)
    client.close(4001, "bye")
    rec.wait_event("client", "close")  # the server still auto-replied
    assert rec.of("server", "close")[0].rs == 3


def test_B1_accept_dict_form_allows_half_open(rec):
    client, server = make_pair()
    rec.watch(server, "server")
    server.accept({"allowHalfOpen": True})
    client.accept()
    client.close(1000, "c")
    assert rec.wait_event("server", "close").rs == 2


def test_accept_options_must_be_a_dict():
    with pytest.raises(TypeError, match="allowHalfOpen"):
        WebSocketPair().server.accept(True)


# -- A4–A6: messages -------------------------------------------------------------------------


def test_A4_A5_messages_in_order_text_and_binary(rec):
    client, server = open_pair(rec)
    server.binary_type = "arraybuffer"
    sent = []
    for i in range(200):
        data = "text %d" % i if i % 3 else bytes([i % 256]) * (i % 7)
        sent.append(data)
        client.send(data)
    rec.wait_count(200)
    assert [s.event.data for s in rec.of("server", "message")] == sent


def test_A4_empty_and_non_bmp_messages(rec):
    client, server = open_pair(rec)
    server.binary_type = "arraybuffer"
    for data in ("", b"", "héllo 🌍 \U0010ffff"):
        client.send(data)
    seen = rec.wait_count(3)
    assert [s.event.data for s in seen] == ["", b"", "héllo 🌍 \U0010ffff"]
    assert [type(s.event.data) for s in seen] == [str, bytes, str]


@pytest.mark.parametrize("data,expected", [
    ("str", "str"),
    (b"\1\2\3\4\5\6", b"\1\2\3\4\5\6"),
    (bytearray(b"\1\2\3\4\5\6"), b"\1\2\3\4\5\6"),
    (memoryview(b"\1\2\3\4\5\6")[2:4], b"\3\4"),
    (array.array("H", [0x0102]), b"\2\1"),
    (Blob(["blob"]), b"blob"),
    (123, "123"),
    (1.5, "1.5"),
    (True, "true"),
    (False, "false"),
    ("", ""),
    (b"", b""),
])
def test_A6_send_types_arrive_as(rec, data, expected):
    client, server = open_pair(rec)
    server.binary_type = "arraybuffer"
    client.send(data)
    (seen,) = rec.wait_count(1)
    assert seen.event.data == expected and type(seen.event.data) is type(expected)


@pytest.mark.parametrize("data", [None, {"a": 1}, ["x"], object()])
def test_A6_SPEC_8_5_send_of_other_objects_raises(rec, data):
    client, server = open_pair(rec)
    with pytest.raises(TypeError, match="json.dumps"):
        client.send(data)
    settle(client, server)
    assert rec.seen == []
    assert client.ready_state == 1


def test_A6_send_before_accept_checks_type_first():
    with pytest.raises(TypeError, match="json.dumps"):
        WebSocketPair().server.send(None)


# -- A7, A8: listeners -----------------------------------------------------------------------


def test_A7_messages_without_any_listener_are_dropped():
    client, server = open_pair(Recorder())
    client.send("early")
    settle(client, server)
    rec = Recorder()
    rec.watch(server, "server")
    client.send("late")
    rec.wait_count(1)
    settle(client, server)
    assert rec.summary() == [("server", "message", 1, "late")]


def test_A7_listeners_added_in_the_accepting_turn_miss_nothing():
    client, server = make_pair()
    client.accept()
    client.send("first")  # waits in the pipe until accept() (I3)
    rec = Recorder()
    with _runtime.in_turn():  # as a handler's turn
        server.accept()
        time.sleep(0.05)
        rec.watch(server, "server")
    rec.wait_count(1)
    assert rec.summary() == [("server", "message", 1, "first")]


def test_A8_on_handler_runs_before_listeners(rec):
    client, server = open_pair(rec)
    order = []
    server.add_event_listener("message", lambda e: order.append("listener"))
    server.onmessage = lambda e: order.append("onmessage")
    server.on_close = lambda e: order.append("on_close")
    server.addEventListener("close", lambda e: order.append("close listener"))
    client.send("x")
    client.close(1000)
    rec.wait_event("server", "close")
    settle(client, server)
    assert order == ["onmessage", "listener", "on_close", "close listener"]


def test_A8_on_properties_are_aliases_and_can_be_cleared(rec):
    client, server = open_pair(rec)
    got = []

    def handler(e):
        got.append(e.data)

    server.on_message = handler
    assert server.onmessage is handler and server.on_message is handler
    client.send("one")
    rec.wait_count(1)
    settle(client, server)
    server.onmessage = None
    assert server.on_message is None
    client.send("two")
    rec.wait_count(2)
    settle(client, server)
    assert got == ["one"]


def test_A8_on_property_must_be_callable():
    with pytest.raises(TypeError):
        WebSocketPair().server.on_message = "not callable"


def test_A8_handler_return_value_is_logged_as_a_warning(rec, caplog):
    client, server = open_pair(rec)
    server.on_message = lambda e: 42
    server.add_event_listener("message", lambda e: 43)  # listeners' values are ignored
    with caplog.at_level(logging.WARNING, logger="cfws_sync"):
        client.send("x")
        rec.wait_count(1)
        settle(client, server)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        'An event handler returned a value of type "int" that will be ignored. '
        "Event handlers should not have a return value."]


def test_listener_added_twice_runs_once_and_can_be_removed(rec):
    client, server = open_pair(rec)
    got = []

    def listener(e):
        got.append(e.data)

    server.add_event_listener("message", listener)
    server.addEventListener("message", listener)
    client.send("one")
    rec.wait_count(1)
    settle(client, server)
    server.remove_event_listener("message", listener)
    server.removeEventListener("message", listener)  # absent: no error
    client.send("two")
    rec.wait_count(2)
    settle(client, server)
    assert got == ["one"]


def test_add_event_listener_requires_a_callable():
    with pytest.raises(TypeError):
        WebSocketPair().server.add_event_listener("message", None)


def test_event_target_is_the_socket(rec):
    client, server = open_pair(rec)
    client.send("x")
    (seen,) = rec.wait_count(1)
    assert seen.event.target is server


# -- SPEC §2: dispatch guarantees ------------------------------------------------------------


def test_SPEC_2_send_never_runs_a_listener_before_it_returns(rec):
    client, server = open_pair(rec)
    local = threading.local()  # greenlet-local under gevent
    inside_send = []
    server.add_event_listener(
        "message", lambda e: inside_send.append(getattr(local, "sending", False)))
    for i in range(20):
        local.sending = True
        client.send("m%d" % i)
        local.sending = False
        rec.wait_count(i + 1)
    assert inside_send == [False] * 20


def test_SPEC_2_listeners_of_one_socket_never_overlap(rec):
    client, server = open_pair(rec)
    active = []
    overlaps = []

    def slow(e):
        active.append(1)
        if len(active) > 1:
            overlaps.append(e.data)
        time.sleep(0.002)
        active.pop()

    server.add_event_listener("message", slow)
    senders = [threading.Thread(target=lambda n=n: [client.send("%d-%d" % (n, i))
                                                    for i in range(20)])
               for n in range(4)]
    for t in senders:
        t.start()
    for t in senders:
        t.join(5)
    rec.wait_count(80)
    assert overlaps == []


def test_SPEC_2_no_listener_runs_under_the_sockets_lock(rec):
    client, server = open_pair(rec)
    held = []
    server.add_event_listener("message", lambda e: held.append(server._machine.lock.locked()))
    server.add_event_listener("close", lambda e: held.append(server._machine.lock.locked()))
    client.send("x")
    client.close(1000)
    rec.wait_event("server", "close")
    assert held == [False, False]


# -- D: binaryType ---------------------------------------------------------------------------


@pytest.mark.parametrize("date,flags,default", [
    (None, (), "blob"),
    ("2026-03-16", (), "arraybuffer"),
    ("2026-03-17", (), "blob"),
    ("2026-04-06", (), "blob"),
    (LEGACY, (), "arraybuffer"),
    (LEGACY, ("websocket_standard_binary_type",), "blob"),
    ("2026-11-17", ("no_websocket_standard_binary_type",), "arraybuffer"),
])
def test_D1_default_binary_type_by_date_and_flags(rec, date, flags, default):
    client, server = open_pair(rec, date, flags)
    assert server.binary_type == client.binary_type == default
    client.send(b"\1\2\3")
    (seen,) = rec.wait_count(1)
    if default == "blob":
        assert isinstance(seen.event.data, Blob)
    else:
        assert seen.event.data == b"\1\2\3"


def test_D2_blob_message_has_empty_type_and_payload_size(rec):
    client, server = open_pair(rec)
    client.send(b"\1\2\3")
    (seen,) = rec.wait_count(1)
    blob = seen.event.data
    assert (blob.type, blob.size, blob.bytes()) == ("", 3, b"\1\2\3")


@pytest.mark.parametrize("start,then", [("blob", "arraybuffer"), ("arraybuffer", "blob")])
def test_D3_binary_type_changed_inside_a_listener_applies_to_later_messages(rec, start, then):
    client, server = open_pair(rec)
    server.binary_type = start
    server.add_event_listener("message", lambda e: setattr(server, "binaryType", then))
    for i in range(3):
        client.send(bytes([i]))
    seen = rec.wait_count(3)
    kinds = ["blob" if isinstance(s.event.data, Blob) else "arraybuffer" for s in seen]
    assert kinds == [start, then, then]


def test_D3_text_is_always_str(rec):
    client, server = open_pair(rec)
    for kind in ("blob", "arraybuffer"):
        server.binary_type = kind
        client.send("t")
    assert [s.event.data for s in rec.wait_count(2)] == ["t", "t"]


@pytest.mark.parametrize("value", ["foo", "BLOB", "", None, 1])
def test_D4_other_binary_type_values_are_ignored(value):
    ws = WebSocketPair().server
    ws.binaryType = "arraybuffer"
    ws.binary_type = value
    assert ws.binary_type == "arraybuffer"
    ws.binaryType = "blob"
    ws.binaryType = value
    assert ws.binaryType == "blob"


# -- SPEC §8.6: an exception escaping a listener ---------------------------------------------


def test_SPEC_8_6_listener_exception_other_listeners_run_error_then_close_1011(rec, caplog):
    client, server = open_pair(rec)
    boom = RuntimeError("boom from message listener")
    after = []

    def raising(e):
        raise boom

    server.add_event_listener("message", raising)
    server.add_event_listener("message", lambda e: after.append(e.data))
    with caplog.at_level(logging.ERROR, logger="cfws_sync"):
        client.send("one")
        rec.wait_event("server", "close")
        settle(client, server)
    assert after == ["one"]
    summary = rec.summary()
    assert summary[0] == ("server", "message", 1, "one")
    assert summary[1][:2] == ("server", "error")
    error = rec.of("server", "error")[0].event
    assert error.error is boom
    assert error.message == "Uncaught RuntimeError: boom from message listener"
    assert ("client", "close", 3, (1011, "", True)) in summary
    assert summary[-1] == ("server", "close", 3, (1011, "", True))
    assert any(r.exc_info and r.exc_info[1] is boom for r in caplog.records)


def test_SPEC_8_6_exception_in_on_handler_is_reported_too(rec, caplog):
    client, server = open_pair(rec)
    server.on_message = lambda e: 1 / 0
    with caplog.at_level(logging.CRITICAL, logger="cfws_sync"):
        client.send("x")
        rec.wait_event("client", "close")
    assert isinstance(rec.of("server", "error")[0].event.error, ZeroDivisionError)
    assert rec.of("client", "close")[0].event.code == 1011


def test_SPEC_8_6_exception_in_an_error_listener_does_not_loop(rec, caplog):
    client, server = open_pair(rec)
    server.add_event_listener("message", lambda e: 1 / 0)
    server.add_event_listener("error", lambda e: 1 / 0)
    with caplog.at_level(logging.CRITICAL, logger="cfws_sync"):
        client.send("x")
        rec.wait_event("client", "close")
        settle(client, server)
    assert len(rec.of("server", "error")) == 1


def test_repr_mentions_state():
    assert "ready_state=1" in repr(WebSocketPair().server)


# -- J4, J5: returning an end in a 101 Response ----------------------------------------------


def test_J4_an_accepted_end_cannot_be_returned():
    for which in (0, 1):
        pair = WebSocketPair()
        pair[which].accept()
        with pytest.raises(TypeError) as info:
            pair[which]._release()
        assert str(info.value) == "Can't return WebSocket in a Response after calling accept()."


def test_J5_an_end_cannot_be_returned_twice_nor_accepted_after():
    client, server = WebSocketPair()
    assert client._release() is server
    with pytest.raises(TypeError) as info:
        client._release()
    assert str(info.value) == "Can't return WebSocket that was already used in a response."
    with pytest.raises(TypeError) as info:
        client.accept()
    assert str(info.value) == "Can't accept() WebSocket that was already used in a response."
