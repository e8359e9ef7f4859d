"""Event objects and ``Blob`` (RULES D2, E4, M5; trace f_api_probe for CloseEvent)."""

import pytest

from cfws_sync import Blob, CloseEvent, ErrorEvent, Event, MessageEvent, ProtocolError
from cfws_sync.errors import NetworkError


def test_close_event_defaults_as_in_f_api_probe():
    event = CloseEvent("close")
    assert (event.type, event.code, event.reason, event.was_clean, event.wasClean) == (
        "close", 0, "", False, False)
    assert event.target is None


def test_close_event_with_values_and_the_js_keyword():
    event = CloseEvent("close", code=4000, reason="r", wasClean=True)
    assert (event.code, event.reason, event.was_clean, event.wasClean) == (4000, "r", True, True)
    assert CloseEvent("close", 1000, "x", True).was_clean is True
    assert "4000" in repr(event)


def test_message_event_carries_data():
    event = MessageEvent("message", "hi")
    assert (event.type, event.data) == ("message", "hi")
    assert "hi" in repr(event)
    long = MessageEvent(data="x" * 500)
    assert len(repr(long)) < 100


def test_event_type_and_repr():
    event = Event("open")
    assert event.type == "open" and "open" in repr(event)


def test_M5_error_event_message_for_a_protocol_error():
    error = ProtocolError(1002, "Unknown opcode 3")
    event = ErrorEvent("error", error)
    assert event.error is error
    assert (error.status_code, error.description) == (1002, "Unknown opcode 3")
    assert error.message == str(error) == (
        "WebSocket protocol error; protocolError.statusCode = 1002; "
        "protocolError.description = Unknown opcode 3")
    assert event.message == "Uncaught Error: " + error.message


def test_E4_error_event_message_for_a_size_failure():
    event = ErrorEvent("error", ProtocolError(1009, "Message is too large: 33554433 > 33554432"))
    assert event.message == (
        "Uncaught Error: WebSocket protocol error; protocolError.statusCode = 1009; "
        "protocolError.description = Message is too large: 33554433 > 33554432")


def test_K5_error_event_message_for_a_network_error():
    assert ErrorEvent("error", NetworkError("Network connection lost.")).message == (
        "Uncaught Error: Network connection lost.")


def test_SPEC_8_6_error_event_names_a_python_exception():
    error = ValueError("boom")
    event = ErrorEvent("error", error)
    assert event.error is error and event.message == "Uncaught ValueError: boom"
    assert ErrorEvent("error", KeyError()).message == "Uncaught KeyError"
    assert ErrorEvent("error", error, message="custom").message == "custom"
    assert ErrorEvent("error").message == ""


# -- Blob ------------------------------------------------------------------------------------


def test_blob_from_parts():
    blob = Blob([b"ab", bytearray(b"c"), memoryview(b"d"), "é", Blob([b"!"])], type="text/x")
    assert blob.bytes() == b"abcd\xc3\xa9!"
    assert (blob.size, len(blob), blob.type) == (7, 7, "text/x")


def test_blob_empty():
    blob = Blob()
    assert (blob.size, blob.type, blob.bytes(), blob.text()) == (0, "", b"", "")


def test_blob_readers_are_synchronous():
    blob = Blob([b"hi \xff"])
    assert blob.array_buffer() == blob.arrayBuffer() == b"hi \xff"
    assert blob.text() == "hi \ufffd"


@pytest.mark.parametrize("start,end,expected", [
    (0, None, b"012345"), (1, 3, b"12"), (-2, None, b"45"), (2, -1, b"234"), (5, 2, b""),
])
def test_blob_slice(start, end, expected):
    part = Blob([b"012345"], type="a/b").slice(start, end)
    assert part.bytes() == expected and part.type == ""


def test_blob_slice_content_type():
    assert Blob([b"x"]).slice(0, 1, "text/plain").type == "text/plain"


def test_blob_rejects_other_parts():
    with pytest.raises(TypeError, match="Blob parts"):
        Blob([1])


def test_blob_equality_and_hash():
    assert Blob([b"a"]) == Blob(["a"])
    assert Blob([b"a"]) != Blob([b"a"], type="x")
    assert hash(Blob([b"a"])) == hash(Blob([b"a"]))
    assert Blob([b"a"]).__eq__(b"a") is NotImplemented
    assert "size=1" in repr(Blob([b"a"]))


def test_blob_is_a_copy_of_its_parts():
    data = bytearray(b"abc")
    blob = Blob([data])
    data[0] = ord("z")
    assert blob.bytes() == b"abc"
