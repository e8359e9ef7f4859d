"""``Headers``, ``Request`` and ``Response`` (RULES J3; traces j_bad_status, f_api_probe)."""

import io

import pytest
from werkzeug.test import EnvironBuilder

from cfws_sync import Blob, Headers, RangeError, Request, Response, WebSocketPair

RANGE = "Responses may only be constructed with status codes in the range 200 to 599, inclusive."
WS_STATUS = "Responses with a WebSocket must have status code 101."
NULL_BODY = "Response with null body status (101, 204, 205, or 304) cannot have a body."
CLONE_101 = "Cannot clone a response to a WebSocket handshake."


# -- J3: constructing a Response -------------------------------------------------------------


def test_J3_status_101_without_a_socket_is_a_range_error():
    with pytest.raises(RangeError) as info:
        Response(None, status=101)
    assert str(info.value) == RANGE
    assert isinstance(info.value, ValueError)


def test_J3_status_101_with_web_socket_none_is_a_range_error():
    with pytest.raises(RangeError, match="^" + RANGE.replace(".", r"\.") + "$"):
        Response(None, status=101, web_socket=None)
    with pytest.raises(RangeError):
        Response(None, status=101, webSocket=None)


@pytest.mark.parametrize("status", [200, 426, 500, 599])
def test_J3_a_socket_with_another_status_is_a_range_error(status):
    with pytest.raises(RangeError) as info:
        Response(None, status=status, web_socket=WebSocketPair().client)
    assert str(info.value) == WS_STATUS


@pytest.mark.parametrize("status", [0, 100, 199, 600, 1000, -1])
def test_J3_status_out_of_range(status):
    with pytest.raises(RangeError, match="in the range 200 to 599"):
        Response("x", status=status)


@pytest.mark.parametrize("status", [200, 201, 299, 302, 404, 599])
def test_J3_statuses_in_range(status):
    assert Response(None, status=status).status == status


def test_J3_101_with_a_socket_keeps_it_under_both_names():
    client = WebSocketPair().client
    response = Response(None, status=101, web_socket=client)
    assert response.web_socket is client and response.webSocket is client
    assert Response(None, status=101, webSocket=client).web_socket is client
    assert response.status_text == response.statusText == "Switching Protocols"


def test_J3_101_with_a_body_is_a_type_error():
    with pytest.raises(TypeError) as info:
        Response("body", status=101, web_socket=WebSocketPair().client)
    assert str(info.value) == NULL_BODY


@pytest.mark.parametrize("status", [204, 205, 304])
def test_J3_other_null_body_statuses(status):
    with pytest.raises(TypeError, match=r"^Response with null body status"):
        Response(b"x", status=status)
    assert Response(None, status=status).bytes() == b""


def test_J3_cloning_a_handshake_response_is_a_type_error():
    response = Response(None, status=101, web_socket=WebSocketPair().client)
    with pytest.raises(TypeError) as info:
        response.clone()
    assert str(info.value) == CLONE_101


def test_J3_status_must_be_an_int():
    for status in ("200", 200.0, True):
        with pytest.raises(TypeError):
            Response(None, status=status)


def test_clone_copies_status_headers_and_body():
    response = Response("hello", status=201, headers={"X-A": "1"}, status_text="Made")
    copy = response.clone()
    assert (copy.status, copy.status_text, copy.text()) == (201, "Made", "hello")
    assert copy.headers.get("x-a") == "1"
    copy.headers.set("X-A", "2")
    assert response.headers.get("X-A") == "1"


# -- Response bodies -------------------------------------------------------------------------


def test_J1_plain_text_response():
    response = Response("Expected Upgrade: websocket", status=426)
    assert response.status == 426 and response.status_text == "Upgrade Required"
    assert response.text() == "Expected Upgrade: websocket"
    assert response.headers.get("Content-Type") == "text/plain;charset=UTF-8"
    assert not response.ok


@pytest.mark.parametrize("body,raw", [
    (b"\0\1", b"\0\1"), (bytearray(b"ab"), b"ab"), (memoryview(b"cd"), b"cd"),
    (Blob([b"ef"]), b"ef"), ("é", "é".encode()), (None, b""),
])
def test_response_body_types(body, raw):
    response = Response(body)
    assert response.bytes() == response.array_buffer() == response.arrayBuffer() == raw
    assert response.blob().bytes() == raw
    assert response.ok


def test_response_body_of_another_type():
    with pytest.raises(TypeError, match="Response.json"):
        Response({"a": 1})


def test_response_json_both_ways():
    response = Response.json({"a": [1, 2]}, status=202)
    assert response.status == 202
    assert response.headers.get("content-type") == "application/json"
    assert response.json() == {"a": [1, 2]}
    assert Response('{"b": 2}').json() == {"b": 2}


def test_explicit_content_type_is_kept():
    assert Response("x", headers={"Content-Type": "text/html"}).headers.get(
        "content-type") == "text/html"


# -- Headers ---------------------------------------------------------------------------------


def test_headers_are_case_insensitive():
    headers = Headers({"Upgrade": "websocket"})
    assert headers.get("upgrade") == headers.get("UPGRADE") == headers["Upgrade"] == "websocket"
    assert "upgrade" in headers and headers.has("UpGrade")
    assert headers.get("missing") is None and headers.get("missing", "d") == "d"
    with pytest.raises(KeyError):
        headers["missing"]


def test_headers_repeat_join_set_delete():
    headers = Headers([("Accept", "a"), ("accept", "b"), ("X", "1")])
    assert headers.get("ACCEPT") == "a, b"
    assert headers.get_all("accept") == ["a", "b"]
    assert headers.keys() == ["accept", "x"] and list(headers) == ["accept", "x"]
    assert len(headers) == 2
    headers.set("Accept", "c")
    assert headers.get_all("accept") == ["c"]
    headers["X"] = "2"
    headers.delete("x")
    assert "x" not in headers
    assert headers.items() == [("accept", "c")]
    assert headers.raw_items() == [("Accept", "c")]


def test_headers_from_headers_and_values_stringified():
    headers = Headers(Headers({"A": "1"}))
    headers.append("N", 5)
    assert headers.get("a") == "1" and headers.get("n") == "5"
    assert "Headers(" in repr(headers)


@pytest.mark.parametrize("name,value", [("X", "a\r\nB: c"), ("X\n", "v"), ("X", "a\0")])
def test_headers_refuse_injection(name, value):
    with pytest.raises(TypeError):
        Headers().append(name, value)


# -- Request ---------------------------------------------------------------------------------


def test_request_from_environ():
    environ = EnvironBuilder(
        path="/ws/echo", query_string="id=1", method="POST", data=b"payload",
        headers={"Upgrade": "websocket", "Sec-WebSocket-Key": "k"},
        base_url="http://127.0.0.1:8787/").get_environ()
    request = Request.from_environ(environ)
    assert request.method == "POST"
    assert request.url == "http://127.0.0.1:8787/ws/echo?id=1"
    assert request.headers.get("upgrade") == "websocket"
    assert request.headers.get("sec-websocket-key") == "k"
    assert request.headers.get("content-length") == "7"
    assert request.environ is environ
    assert request.bytes() == b"payload" and request.text() == "payload"


def test_request_body_is_read_only_when_asked():
    stream = io.BytesIO(b"abc")
    environ = {"REQUEST_METHOD": "GET", "SERVER_NAME": "example.org", "SERVER_PORT": "80",
               "PATH_INFO": "/a b", "CONTENT_LENGTH": "3", "wsgi.input": stream,
               "wsgi.url_scheme": "http"}
    request = Request.from_environ(environ)
    assert request.url == "http://example.org/a%20b"
    assert stream.tell() == 0
    assert request.bytes() == b"abc" and request.bytes() == b"abc"


def test_request_built_by_hand():
    request = Request("http://h/x", method="get", headers={"A": "1"}, body='{"k": 1}')
    assert request.method == "GET" and request.json() == {"k": 1}
    assert request.environ is None
    assert "GET http://h/x" in repr(request)


@pytest.mark.parametrize("char", [chr(c) for c in range(32, 127)] + ["é", "\u2603"])
def test_request_url_path_quoted_as_quote_does(char):
    from urllib.parse import quote

    environ = {"REQUEST_METHOD": "GET", "HTTP_HOST": "h", "PATH_INFO": "/a" + char + "b",
               "wsgi.url_scheme": "http"}
    expected = quote("/a" + char + "b", safe="/:@!$&'()*+,;=~-._%")
    assert Request.from_environ(environ).url == "http://h" + expected


def test_request_header_names_stay_the_same_from_request_to_request():
    environ = {"REQUEST_METHOD": "GET", "HTTP_HOST": "h", "HTTP_X_CUSTOM_THING": "1",
               "HTTP_SEC_WEBSOCKET_KEY": "k", "CONTENT_TYPE": "text/plain"}
    first = Request.from_environ(environ).headers.raw_items()
    second = Request.from_environ(dict(environ)).headers.raw_items()
    assert first == second
    assert ("X-Custom-Thing", "1") in first and ("Sec-Websocket-Key", "k") in first
    assert ("Content-Type", "text/plain") in first


def test_request_header_with_nul_from_the_server_is_refused():
    request = Request.from_environ({"REQUEST_METHOD": "GET", "HTTP_HOST": "h", "HTTP_X": "a\0b"})
    assert request.headers.get("Host") == "h"
    with pytest.raises(TypeError):
        request.headers.get("X")
    with pytest.raises(TypeError):
        request.headers.items()


def test_request_headers_read_from_the_environ_answer_as_copied_ones():
    environ = {"REQUEST_METHOD": "GET", "HTTP_HOST": "h", "HTTP_X_CUSTOM_THING": "1",
               "HTTP_ACCEPT": "a, b", "HTTP_NUMBER": 7, "CONTENT_TYPE": "text/plain",
               "CONTENT_LENGTH": ""}
    names = ["host", "X-Custom-Thing", "x_custom_thing", "ACCEPT", "number", "content-type",
             "Content-Length", "missing"]
    copied = Headers(Request.from_environ(environ).headers.raw_items())
    for name in names:  # each lookup on a fresh request, before anything is copied
        assert Request.from_environ(environ).headers.get(name, "-") == copied.get(name, "-")
        assert (name in Request.from_environ(environ).headers) == (name in copied)
    assert copied.get("number") == "7" and copied.get("x_custom_thing") is None
    headers = Request.from_environ(environ).headers
    headers.set("Host", "other")
    headers.append("X-New", "2")
    assert headers.get("host") == "other" and headers.get("x-new") == "2"
    assert headers.get("accept") == "a, b" and environ["HTTP_HOST"] == "h"
    assert len(headers) == len(copied) + 1
