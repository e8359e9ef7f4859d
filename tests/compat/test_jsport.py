"""The port's JavaScript helpers log what the Worker's JavaScript logs."""

from __future__ import annotations

import math

import pytest

from cfws_sync import Blob, DOMException, ProtocolError, RangeError

from .jsport import (
    Error, Params, describe_data, err_info, fmt_call, js_json, js_number, js_typeof,
    parse_code_reason, utf16_len,
)


def test_js_json_is_json_stringify():
    assert js_json({"allowHalfOpen": True}) == '{"allowHalfOpen":true}'
    assert js_json(["é", None, math.nan, 1000]) == '["é",null,null,1000]'
    assert js_json("\ud800 lone") == '"\\ud800 lone"'


@pytest.mark.parametrize("text, number", [
    ("1000", 1000), ("1000.0", 1000), ("1.5", 1.5), ("", 0), (" 7 ", 7), ("-1", -1)])
def test_js_number(text, number):
    assert js_number(text) == number and type(js_number(text)) is type(number)


def test_js_number_nan():
    assert math.isnan(js_number("abc")) and math.isnan(js_number("inf"))
    assert js_number("Infinity") == math.inf


def test_length_is_utf16_code_units():
    assert utf16_len("héllo ✓ 😀") == 10
    assert describe_data("😀") == {"type": "string", "len": 2, "text": "😀"}
    assert "text" not in describe_data("x" * 201)


def test_describe_binary():
    assert describe_data(b"\x01\x02") == {"type": "ArrayBuffer", "byteLength": 2, "hex": "0102"}
    assert "hex" not in describe_data(b"\0" * 65)
    assert describe_data(Blob([b"abc"])) == {"type": "Blob", "size": 3, "blobType": ""}


def test_err_info_shows_errors_as_javascript_does():
    assert err_info(TypeError("t")) == {"name": "TypeError", "ctor": "TypeError", "message": "t"}
    assert err_info(DOMException("d", "SyntaxError")) == {
        "name": "SyntaxError", "ctor": "DOMException", "message": "d"}
    assert err_info(RangeError("r"))["ctor"] == "RangeError"
    protocol = err_info(ProtocolError(1002, "Unknown opcode 3"))
    assert (protocol["name"], protocol["ctor"]) == ("Error", "Error")
    assert protocol["message"].endswith("protocolError.description = Unknown opcode 3")
    assert err_info(Error("boom")) == {"name": "Error", "ctor": "Error", "message": "boom"}
    assert err_info(None) == {"value": "undefined"}


def test_labels_and_arguments():
    assert parse_code_reason("1000:bye:x") == [1000, "bye:x"]
    assert parse_code_reason("none") == [] and parse_code_reason(None) == []
    assert parse_code_reason("1000") == [1000]
    assert fmt_call("server.close", [4000, "from handler"]) == 'server.close(4000, "from handler")'
    assert js_typeof(None) == "undefined" and js_typeof(len) == "function"
    q = Params("a=1&a=2&b=&c=x+y")
    assert (q.get("a"), q.get("b"), q.get("c"), q.get("d")) == ("1", "", "x y", None)
    assert q.has("b") and not q.has("d")
