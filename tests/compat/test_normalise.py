"""The SPEC §8 normalisation on small traces: each rule removes its difference and no other."""

from __future__ import annotations

from typing import Any

from .normalise import DROP_REASON, normalise

SERVER_OPEN = [{"note": "request", "upgrade": "websocket", "secExt": None}]
LOST = {"ev": "error", "on": "server", "rs": 3,
        "message": "Uncaught Error: Network connection lost.",
        "error": {"name": "Error", "ctor": "Error", "message": "Network connection lost."}}


def trace(peer: list[dict[str, Any]], worker: list[dict[str, Any]]) -> dict[str, Any]:
    return {"scenario": "x", "peer": peer, "worker": SERVER_OPEN + worker}


def send(op: str, **fields: Any) -> dict[str, Any]:
    return {"action": "send", "op": op, **fields}


def test_untouched_trace_is_returned_equal_and_unmarked():
    t = trace([send("text", len=2, text="hi")],
              [{"ev": "message", "on": "server", "rs": 1, "type": "string", "len": 2}])
    assert normalise(t) == t


def test_8_2_drops_network_lost_only_after_a_clean_close():
    close = {"ev": "close", "on": "server", "rs": 3, "code": 1000, "reason": "", "wasClean": True}
    after = normalise(trace([], [close, LOST]))
    assert after["worker"] == SERVER_OPEN + [close] and after["normalised"] == ["§8.2"]
    before = trace([], [LOST, dict(close, code=1006, wasClean=False)])  # K5: kept
    assert normalise(before) == before


def test_8_3_sets_ready_state_3_in_and_after_a_drop_only():
    drop = {"ev": "close", "on": "server", "rs": 1, "code": 1006, "reason": DROP_REASON,
            "wasClean": False}
    note = {"note": "client_ws finished", "how": "close", "rs": 2}
    after = normalise(trace([], [drop, note]))
    assert [e["rs"] for e in after["worker"][1:]] == [3, 3]
    failed = dict(drop, reason="Failed to establish websocket connection", rs=3)
    assert normalise(trace([], [failed, note]))["worker"][2]["rs"] == 2


def test_8_1_cuts_both_sides_at_invalid_utf8_across_fragments():
    peer = [send("text", len=3, text="ok!"),
            send("text", fin=False, len=2, hex="6f6b"), send("cont", len=1, hex="ff"),
            {"event": "recv", "op": "close", "code": 1007}]
    worker = [{"ev": "message", "on": "server", "rs": 1, "type": "string", "len": 3},
              {"ev": "error", "on": "server", "rs": 3, "message": "1007"}]
    after = normalise(trace(peer, worker))
    assert after["peer"][:3] == peer[:3] and after["peer"][3]["normalised"] == "SPEC §8.1"
    assert after["worker"][:2] == SERVER_OPEN + worker[:1]
    assert after["worker"][2]["normalised"] == "SPEC §8.1"


def test_8_1_leaves_a_character_split_across_fragments_alone():
    peer = [send("text", fin=False, len=4, hex="636166c3"), send("cont", len=2, hex="a921")]
    t = trace(peer, [])
    assert normalise(t) == t


def test_8_1_unmasked_frames_and_oversized_control_frames():
    for frame in (send("text", masked=False, len=1, text="x"), send("ping", len=200, hex="79" * 200)):
        after = normalise(trace([frame, {"event": "recv", "op": "pong"}], []))
        assert after["peer"][-1]["normalised"] == "SPEC §8.1"
        assert len(after["peer"]) == 2


def test_8_1_close_we_receive_is_cut_to_125_bytes_on_both_sides():
    long = {"event": "recv", "op": "close", "len": 129, "code": 1002, "reason": "r" * 127}
    short = dict(long, len=125, reason="r" * 123)
    assert normalise(trace([long], []))["peer"] == normalise(trace([short], []))["peer"]


def test_8_5_removes_coerced_sends_and_their_frames():
    worker = [{"call": 'server.send("a")', "ok": True},
              {"call": "server.send({a:1})", "ok": True},
              {"call": 'server.send(new Blob(["blob"]))', "ok": True}]
    peer = [{"event": "recv", "op": "text", "len": 1, "text": "a"},
            {"event": "recv", "op": "text", "len": 15, "text": "[object Object]"},
            {"event": "recv", "op": "text", "len": 13, "text": "[object Blob]"}]
    ours_worker = [worker[0], {"call": "server.send({a:1})", "threw": {"name": "TypeError"}},
                   worker[2]]
    ours_peer = [peer[0], {"event": "recv", "op": "binary", "len": 4, "hex": "626c6f62"}]
    assert normalise(trace(peer, worker)) == normalise(trace(ours_peer, ours_worker))
    assert normalise(trace(peer, worker))["peer"] == peer[:1]


def test_8_5_close_codes_javascript_coerces():
    worker = [{"call": 'close("1000")', "ok": True}, {"call": "close(1000)", "ok": True}]
    after = normalise(trace([], worker))
    assert after["worker"][1] == {"call": 'close("1000")', "normalised": "SPEC §8.5"}
    assert after["worker"][2] == worker[1]


def test_8_6_cuts_after_the_listener_error():
    peer = [send("text", len=3, text="one"), {"event": "tcp_eof", "after": "<0.25s"},
            send("text", len=3, text="two")]
    worker = [{"ev": "message", "on": "server", "rs": 1},
              {"note": "throwing from message listener #1"},
              {"ev": "error", "on": "server", "rs": 3, "message": "Uncaught Error: boom"},
              {"ev": "close", "on": "server", "rs": 3, "code": 1000}]
    after = normalise(trace(peer, worker))
    assert after["peer"][0] == peer[0] and after["peer"][1]["normalised"] == "SPEC §8.6"
    assert after["worker"][3] == {"ev": "error", "on": "server", "message": "Uncaught Error: boom"}
    assert len(after["worker"]) == 5


def test_8_4_only_after_an_unanswered_close():
    peer = [{"event": "recv", "op": "close", "code": 1000},
            {"event": "tcp_still_open", "waited": "12s"}]
    assert normalise(trace(peer, []))["peer"][1]["normalised"] == "SPEC §8.4"
    short = [peer[0], {"event": "tcp_still_open", "waited": "3s"}]
    assert normalise(trace(short, []))["peer"] == short
