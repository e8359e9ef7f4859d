"""The state machine and the argument rules of ``close()`` and ``send()`` (RULES A2, A3,
A6, B1–B3, B6, C1–C10, D4; SPEC §8.5), checked on ``_protocol`` directly."""

import array

import pytest

from cfws_sync import Blob, DOMException
from cfws_sync import errors
from cfws_sync._frames import Failure, Message, PeerClose
from cfws_sync._protocol import (
    FINAL,
    READY_STATE,
    TRANSITIONS,
    ConnectFailed,
    Do,
    Gone,
    Input,
    Machine,
    Opened,
    Phase,
    coerce_message,
    js_string,
    validate_close,
)
from cfws_sync.compat import Compatibility
from cfws_sync.events import CloseEvent, ErrorEvent, MessageEvent

CURRENT = Compatibility.resolve("2026-11-17")
LEGACY = Compatibility.resolve("2025-06-01")
PEDANTIC = Compatibility.resolve("2026-11-17", ["pedantic_wpt"])

# From trace f_api_probe__current / __pedantic (cloudflare workerd 2026-11-17): code -> ok.
PROBED_CODES = {
    999: (False, False), 1000: (True, True), 1001: (True, False), 1003: (True, False),
    1004: (False, False), 1005: (False, False), 1006: (False, False), 1007: (True, False),
    1011: (True, False), 1012: (True, False), 1014: (True, False), 1015: (False, False),
    1016: (True, False), 2999: (True, False), 3000: (True, True), 4999: (True, True),
    5000: (False, False), 0: (False, False), -1: (False, False), 66536: (False, False),
}


class RecordingLink:
    """The peer of a machine, recording what it is asked to do."""

    def __init__(self):
        self.calls = []

    def message(self, data):
        self.calls.append(("message", data))

    def close(self, code, reason):
        self.calls.append(("close", code, reason))

    def finish(self):
        self.calls.append(("finish",))

    def cancel(self):
        self.calls.append(("cancel",))


class Target:
    protocol = ""
    extensions = ""


def machine(compat=CURRENT, accept=True, half_open=None, phase=Phase.OPEN):
    m = Machine(compat, phase)
    m.link = RecordingLink()
    if accept:
        m.accept(half_open)
    return m


# -- close() validation (C5–C10) -----------------------------------------------------------


@pytest.mark.parametrize("code", sorted(PROBED_CODES))
def test_C5_close_codes_as_probed(code):
    ok = PROBED_CODES[code][0]
    if ok:
        assert validate_close(code, None, CURRENT) == (code, "")
    else:
        with pytest.raises(DOMException) as info:
            validate_close(code, None, CURRENT)
        assert info.value.name == "InvalidAccessError"
        assert str(info.value) == "Invalid WebSocket close code: %d." % code
        assert info.value.message == str(info.value)


@pytest.mark.parametrize("code", sorted(PROBED_CODES))
def test_C6_pedantic_wpt_close_codes_as_probed(code):
    ok = PROBED_CODES[code][1]
    if ok:
        assert validate_close(code, None, PEDANTIC) == (code, "")
    else:
        with pytest.raises(DOMException, match=r"^Invalid WebSocket close code: %d\.$" % code):
            validate_close(code, None, PEDANTIC)


@pytest.mark.parametrize("code", [1000, 1004, 1999, 2000, 3999, 4000, 4998])
def test_C5_range_edges(code):
    ok = code != 1004
    if ok:
        validate_close(code, None, CURRENT)
    else:
        with pytest.raises(DOMException):
            validate_close(code, None, CURRENT)


@pytest.mark.parametrize("code", [1000.9, 1000.0, "1000", "abc", True, float("nan"), b"1000"])
def test_C7_SPEC_8_5_code_must_be_an_int(code):
    # JS converts these through WebIDL; the Python API takes an int (SPEC §8.5).
    with pytest.raises(TypeError, match="close\\(\\) code must be an int"):
        validate_close(code, None, CURRENT)


def test_C7_no_code_means_no_code():
    assert validate_close(None, None, CURRENT) == (None, "")


def test_C9_reason_without_code():
    with pytest.raises(DOMException) as info:
        validate_close(None, "why", CURRENT)
    assert info.value.name == "InvalidAccessError"
    assert str(info.value) == (
        "If you specify a WebSocket close reason, you must also specify a code.")


def test_C9_empty_reason_without_code_is_still_a_reason():
    with pytest.raises(DOMException, match="must also specify a code"):
        validate_close(None, "", CURRENT)


@pytest.mark.parametrize("reason,text", [(None, ""), (123, "123"), (True, "true"),
                                         (1.5, "1.5"), ("", "")])
def test_C9_reason_is_stringified(reason, text):
    assert validate_close(1000, reason, CURRENT) == (1000, text)


def test_C9_reason_of_another_type_raises_type_error():
    with pytest.raises(TypeError, match="json.dumps"):
        validate_close(1000, {"a": 1}, CURRENT)


@pytest.mark.parametrize("reason,ok", [
    ("x" * 123, True), ("x" * 124, False), ("é" * 61, True), ("é" * 62, False),
    ("\ud800", True), ("🌍" * 30, True), ("🌍" * 31, False),
])
def test_C10_reason_limit_counts_utf8_bytes(reason, ok):
    if ok:
        assert validate_close(4000, reason, CURRENT) == (4000, reason)
    else:
        with pytest.raises(DOMException) as info:
            validate_close(4000, reason, CURRENT)
        assert info.value.name == "SyntaxError"
        assert str(info.value) == (
            "WebSocket close reason must not be longer than 123 bytes when UTF-8 encoded.")


@pytest.mark.parametrize("date,limited", [("2025-06-01", False), ("2026-03-02", False),
                                          ("2026-03-03", True), ("2026-03-16", True)])
def test_C10_limit_follows_the_date(date, limited):
    compat = Compatibility.resolve(date)
    if limited:
        with pytest.raises(DOMException):
            validate_close(1000, "x" * 124, compat)
    else:
        assert validate_close(1000, "é" * 62, compat) == (1000, "é" * 62)


def test_C10_limit_flag_on_an_old_date():
    compat = Compatibility.resolve("2025-06-01", ["websocket_close_reason_byte_limit"])
    with pytest.raises(DOMException, match="123 bytes"):
        validate_close(1000, "x" * 124, compat)


def test_C8_code_is_checked_before_the_reason():
    with pytest.raises(DOMException, match="close code: 999"):
        validate_close(999, "x" * 200, CURRENT)


# -- send() coercion (A6, SPEC §8.5) -------------------------------------------------------


@pytest.mark.parametrize("data,wire", [
    ("str", "str"),
    ("", ""),
    (b"\1\2\3", b"\1\2\3"),
    (bytearray(b"\4\5"), b"\4\5"),
    (memoryview(b"\1\2\3\4\5\6")[2:4], b"\3\4"),
    (array.array("H", [0x0102]), b"\2\1"),
    (Blob([b"blob"]), b"blob"),
    (Blob(), b""),
    (42, "42"),
    (-7, "-7"),
    (1.5, "1.5"),
    (2.0, "2"),
    (True, "true"),
    (False, "false"),
])
def test_A6_send_coercions(data, wire):
    result = coerce_message(data)
    assert result == wire and type(result) is type(wire)


def test_A6_memoryview_of_a_multibyte_array_sends_its_window():
    view = memoryview(array.array("H", [1, 2, 3]))[1:]
    assert coerce_message(view) == b"\2\0\3\0"


@pytest.mark.parametrize("data", [None, {"a": 1}, [1, 2], object(), {1, 2}])
def test_SPEC_8_5_send_refuses_other_types_and_suggests_json(data):
    with pytest.raises(TypeError) as info:
        coerce_message(data)
    text = str(info.value)
    assert text.startswith(errors.SEND_BAD_TYPE)
    assert "json.dumps" in text


@pytest.mark.parametrize("value,text", [
    (1.5, "1.5"), (0.1 + 0.2, "0.30000000000000004"), (1e21, "1e+21"),
    (1e20, "100000000000000000000"), (1e-6, "0.000001"), (1e-7, "1e-7"),
    (0.00001, "0.00001"), (-0.0, "0"), (float("nan"), "NaN"), (float("inf"), "Infinity"),
    (float("-inf"), "-Infinity"), (1.5e-7, "1.5e-7"), (123.456, "123.456"),
    (1.2345e25, "1.2345e+25"), (5e-324, "5e-324"), (-2.5, "-2.5"),
])
def test_A6_numbers_are_written_as_javascript_does(value, text):
    assert js_string(value, "x") == text


# -- the machine ---------------------------------------------------------------------------


def test_ready_states():
    assert READY_STATE == {Phase.CONNECTING: 0, Phase.OPEN: 1, Phase.CLOSE_SENT: 2,
                           Phase.CLOSE_RECEIVED: 2, Phase.CLOSED: 3,
                           Phase.GONE: 3,  # SPEC §8.3
                           Phase.CANCELLED: 1}  # K4: workerd's quirk


def test_transition_table_never_leaves_a_final_phase_and_never_dispatches_there():
    for (phase, what), (after, effects) in TRANSITIONS.items():
        if phase in FINAL:
            assert after is phase
            assert not effects & (Do.DISPATCH | Do.SEND_CLOSE | Do.ECHO_CLOSE | Do.FORWARD)


def test_transition_table_sends_at_most_one_close_per_end():
    # A Close leaves only from OPEN or CLOSE_RECEIVED, and lands where no Close is sent.
    senders = {phase for (phase, _), (_, effects) in TRANSITIONS.items()
               if effects & (Do.SEND_CLOSE | Do.ECHO_CLOSE)}
    assert senders == {Phase.OPEN, Phase.CLOSE_RECEIVED}
    for (phase, _), (after, effects) in TRANSITIONS.items():
        if effects & (Do.SEND_CLOSE | Do.ECHO_CLOSE):
            assert after in (Phase.CLOSE_SENT, Phase.CLOSED)


def test_B9_nothing_is_delivered_after_the_peers_close_in_half_open():
    for what in (Input.PEER_MESSAGE, Input.PEER_CLOSE_REPLY, Input.PEER_CLOSE_HALF_OPEN,
                 Input.FAILURE):
        assert (Phase.CLOSE_RECEIVED, what) not in TRANSITIONS


def test_A2_send_and_close_before_accept():
    m = machine(accept=False)
    for call in (lambda: m.send("x"), lambda: m.close(1000, "")):
        with pytest.raises(TypeError) as info:
            call()
        assert str(info.value) == (
            "You must call one of accept() or state.acceptWebSocket() on this WebSocket "
            "before sending messages.")
    assert m.ready_state == 1 and m.link.calls == []


def test_A3_second_accept_changes_nothing():
    m = machine(half_open=None)
    assert m.allow_half_open is False
    assert m.accept(True) is False
    assert m.allow_half_open is False


@pytest.mark.parametrize("compat,option,half_open", [
    (CURRENT, None, False), (LEGACY, None, True), (CURRENT, True, True),
    (LEGACY, False, False),
])
def test_B1_accept_option_overrides_the_date_either_way(compat, option, half_open):
    assert machine(compat, half_open=option).allow_half_open is half_open


def test_B2_auto_reply_echoes_code_and_reason_before_the_event():
    m = machine()
    events = m.receive(PeerClose(4321, "bye"), Target())
    assert m.link.calls == [("close", 4321, "bye"), ("finish",)]
    assert m.phase is Phase.CLOSED
    (event,) = events
    assert isinstance(event, CloseEvent)
    assert (event.code, event.reason, event.was_clean) == (4321, "bye", True)


def test_B3_close_after_auto_reply_is_ignored():
    m = machine()
    m.receive(PeerClose(1000, "bye"), Target())
    m.close(4000, "late")
    assert m.link.calls == [("close", 1000, "bye"), ("finish",)]


def test_B6_half_open_waits_for_close_then_sends_it():
    m = machine(half_open=True)
    (event,) = m.receive(PeerClose(1000, "c"), Target())
    assert m.ready_state == 2 and event.code == 1000
    m.send("still")
    m.close(1000, "done")
    assert m.ready_state == 3
    assert m.link.calls == [("message", "still"), ("close", 1000, "done"), ("finish",)]
    assert m.receive(Gone(), Target()) == []  # B6: no second close event


def test_C2_close_then_send_raises_and_second_close_is_silent():
    m = machine()
    m.close(1000, "a")
    assert m.ready_state == 2
    m.close(1000, "b")
    with pytest.raises(TypeError, match=r"^Can't call WebSocket send\(\) after close\(\)\.$"):
        m.send("x")
    assert m.link.calls == [("close", 1000, "a")]


def test_C3_peer_reply_gives_its_own_code_and_data_before_it_is_delivered():
    m = machine()
    m.close(4000, "mine")
    (message,) = m.receive(Message("late data"), Target())
    assert isinstance(message, MessageEvent) and m.ready_state == 2
    (event,) = m.receive(PeerClose(4999, "different"), Target())
    assert (event.code, event.reason, m.ready_state) == (4999, "different", 3)
    assert m.link.calls == [("close", 4000, "mine"), ("finish",)]


def test_H1_drop_is_one_close_1006_and_SPEC_8_3_closed():
    m = machine()
    (event,) = m.receive(Gone(), Target())
    assert (event.code, event.reason, event.was_clean) == (
        1006, "WebSocket disconnected without sending Close frame.", False)
    assert m.ready_state == 3
    assert m.receive(Gone(), Target()) == []


def test_M5_failure_is_only_an_error_event():
    m = machine()
    (event,) = m.receive(Failure(1002, "Unknown opcode 3"), Target())
    assert isinstance(event, ErrorEvent)
    assert event.message == (
        "Uncaught Error: WebSocket protocol error; protocolError.statusCode = 1002; "
        "protocolError.description = Unknown opcode 3")
    assert m.ready_state == 3
    assert m.receive(PeerClose(1000, ""), Target()) == []


def test_nothing_is_dispatched_after_closed():
    m = machine()
    m.receive(PeerClose(1000, ""), Target())
    for item in (Message("x"), PeerClose(1000, ""), Gone(), Failure(1002, "x")):
        assert m.receive(item, Target()) == []


def test_D4_binary_type_ignores_other_values():
    m = machine()
    for value in ("foo", "BLOB", None, 1, "arraybuffer ", b"blob"):
        m.set_binary_type(value)
        assert m.binary_type == "blob"
    m.set_binary_type("arraybuffer")
    assert m.binary_type == "arraybuffer"


def test_D3_binary_type_is_read_per_message():
    m = machine()
    (first,) = m.receive(Message(b"\0"), Target())
    m.set_binary_type("arraybuffer")
    (second,) = m.receive(Message(b"\1"), Target())
    assert isinstance(first.data, Blob) and first.data.bytes() == b"\0"
    assert second.data == b"\1"
    (text,) = m.receive(Message("t"), Target())
    assert text.data == "t"


def test_K1_client_open_and_K3_send_before_open():
    m = machine(phase=Phase.CONNECTING)
    assert m.ready_state == 0
    with pytest.raises(TypeError, match="You must call one of accept"):
        m.send("early")
    target = Target()
    (event,) = m.receive(Opened(None, None), target)
    assert event.type == "open" and m.ready_state == 1
    assert (target.protocol, target.extensions) == (None, None)


def test_K4_close_before_open_cancels():
    m = machine(phase=Phase.CONNECTING)
    m.close(None, "")
    assert m.link.calls == [("cancel",)]


def test_K5_connect_failure_is_error_then_close_1006():
    m = machine(phase=Phase.CONNECTING)
    error, close = m.receive(ConnectFailed(OSError("refused")), Target())
    assert error.type == "error" and isinstance(error.error, OSError)
    assert (close.code, close.reason, close.was_clean) == (
        1006, "Failed to establish websocket connection", False)
    assert m.ready_state == 3


def test_only_final_phases_drop_what_arrives_unpumped():
    # An end drops inbound items in these phases without pumping them: only where the
    # table would ignore every one of them, and no transition ever leaves.
    assert FINAL == {Phase.CLOSED, Phase.GONE}
    machine = Machine(Compatibility.resolve())
    machine.accept(None)
    machine.receive(Gone(), None)
    assert machine.phase is Phase.GONE
    for item in (Message("late"), PeerClose(1000, ""), Gone(), Failure(1002, "x")):
        assert machine.receive(item, None) == [] and machine.phase is Phase.GONE


@pytest.mark.parametrize("ending", [Gone(), Failure(1002, "Unknown opcode 3")],
                         ids=["drop", "protocol-failure"])
def test_after_the_connection_ends_without_our_close_send_and_close_reach_no_one(ending):
    # workerd's outgoing side stays open after a drop (H1) or a protocol failure (M5):
    # its send() and close() succeed, and nothing is sent (the a_end_* traces in
    # tests/compat/extra).  ready_state reads 3 all the same (SPEC §8.3).
    link = RecordingLink()
    machine = Machine(Compatibility.resolve())
    machine.link = link
    machine.accept(None)
    machine.receive(ending, None)
    machine.send("into nothing")
    machine.close(1000, "bye")
    assert machine.ready_state == 3 and link.calls == [("finish",)]
