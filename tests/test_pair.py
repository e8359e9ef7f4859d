"""``WebSocketPair`` with both ends in-process (RULES A1, I1–I5; SPEC §3), and the close
rules seen from both ends in memory (RULES B1–B13, C1–C3).

The expected event sequences are those of the traces i_internal_*__current and
i_internal_*__legacy (cloudflare workerd 2026-11-17), without the "Network connection
lost." error that workerd adds after a clean close (B12; SPEC §8.2).
"""

import pytest

from cfws_sync import Blob, WebSocket, WebSocketPair, _runtime, compatibility
from tests.corekit import Recorder, make_pair, settle

LEGACY = "2025-06-01"


@pytest.fixture
def rec():
    return Recorder()


def open_pair(rec, date=None, flags=(), half_open=None):
    """A pair with both ends watched and accepted (the server end with ``half_open``)."""
    client, server = make_pair(date, flags)
    rec.watch(client, "client")
    rec.watch(server, "server")
    server.accept(allow_half_open=half_open)
    client.accept()
    return client, server


def watched(rec, date=None):
    client, server = make_pair(date)
    rec.watch(client, "client")
    rec.watch(server, "server")
    return client, server


# -- the pair object (A1) --------------------------------------------------------------------


def test_A1_pair_unpacks_indexes_and_names_its_ends():
    pair = WebSocketPair()
    client, server = pair
    assert (pair[0], pair[1]) == (client, server)
    assert (pair["0"], pair["1"]) == (client, server)
    assert (pair.client, pair.server) == (client, server)
    assert list(pair) == [client, server] and len(pair) == 2
    assert client is not server
    assert all(isinstance(ws, WebSocket) for ws in pair)


def test_A1_pair_has_only_two_ends():
    with pytest.raises(IndexError):
        WebSocketPair()[2]


def test_A1_each_pair_is_new():
    a, b = WebSocketPair(), WebSocketPair()
    assert a.client is not b.client and a.server is not b.server


# -- I1 and I2: both ends accepted -----------------------------------------------------------


def exchange(client, server):
    """The exchange of trace i_internal_both, in one turn as the Worker runs it."""
    with _runtime.in_turn():
        server.accept()
        client.accept()
        server.send("s->c text")
        server.send(bytes([1, 2, 3]))
        client.send("c->s text")


def test_I1_both_ends_talk_and_the_close_is_auto_replied(rec):
    client, server = watched(rec)
    exchange(client, server)
    rec.wait_count(3)
    with _runtime.in_turn():
        client.close(4001, "client bye")
        assert (client.ready_state, server.ready_state) == (2, 1)
    rec.wait_event("client", "close")
    settle(client, server)
    summary = rec.summary()
    messages = [s for s in summary if s[1] == "message"]
    assert sorted(m[:3] for m in messages) == [("client", "message", 1)] * 2 + [
        ("server", "message", 1)]
    assert [m[3] for m in messages if m[0] == "client"][0] == "s->c text"
    blob = [m[3] for m in messages if m[0] == "client"][1]
    assert isinstance(blob, Blob) and (blob.size, blob.type) == (3, "")  # receiver's type
    assert [m[3] for m in messages if m[0] == "server"] == ["c->s text"]
    assert summary[3:] == [
        ("server", "close", 3, (4001, "client bye", True)),
        ("client", "close", 3, (4001, "client bye", True)),
    ]
    assert (client.ready_state, server.ready_state) == (3, 3)


def test_I1_binary_follows_the_receivers_binary_type(rec):
    client, server = watched(rec)
    client.binary_type = "arraybuffer"
    exchange(client, server)
    rec.wait_count(3)
    datas = [s.event.data for s in rec.of("client", "message")]
    assert datas == ["s->c text", b"\1\2\3"]


def test_I2_legacy_no_reply_so_the_client_never_gets_close(rec):
    client, server = watched(rec, LEGACY)
    exchange(client, server)
    rec.wait_count(3)
    binary = rec.of("client", "message")[1].event.data
    assert binary == b"\1\2\3"  # legacy default binaryType is arraybuffer (D1)
    client.close(4001, "client bye")
    rec.wait_event("server", "close")
    settle(client, server)
    assert rec.summary()[3:] == [("server", "close", 2, (4001, "client bye", True))]
    assert (client.ready_state, server.ready_state) == (2, 2)


# -- I3, I4: the other end accepts late ------------------------------------------------------


def test_I3_message_waits_until_the_other_end_accepts(rec):
    client, server = watched(rec)
    server.accept()
    server.send("queued")
    settle(client, server)
    assert rec.seen == []
    assert (client.ready_state, server.ready_state) == (1, 1)
    client.accept()
    rec.wait_count(1)
    settle(client, server)
    assert rec.summary() == [("client", "message", 1, "queued")]
    assert (client.ready_state, server.ready_state) == (1, 1)


def test_I3_many_waiting_messages_arrive_in_order(rec):
    client, server = watched(rec)
    server.accept()
    for i in range(100):
        server.send("m%d" % i)
    client.accept()
    rec.wait_count(100)
    assert [s.event.data for s in rec.seen] == ["m%d" % i for i in range(100)]


def test_I_neither_accepted_both_sends_raise():
    client, server = WebSocketPair()
    for ws in (server, client):
        with pytest.raises(TypeError, match="You must call one of accept"):
            ws.send("x")


def test_I4_close_before_the_peer_accepts_is_delivered_at_accept(rec):
    client, server = watched(rec)
    server.accept()
    server.close(1000, "early")
    settle(client, server)
    assert rec.seen == [] and server.ready_state == 2
    client.accept()  # trace f_api_probe: "client.accept() after server.close()" is fine
    rec.wait_event("server", "close")
    settle(client, server)
    assert rec.summary() == [
        ("client", "close", 3, (1000, "early", True)),
        ("server", "close", 3, (1000, "early", True)),
    ]


def test_I4_legacy_close_before_accept_gets_no_reply(rec):
    client, server = watched(rec, LEGACY)
    server.accept()
    server.close(1000, "early")
    client.accept()
    rec.wait_event("client", "close")
    settle(client, server)
    assert rec.summary() == [("client", "close", 2, (1000, "early", True))]
    assert (client.ready_state, server.ready_state) == (2, 2)


# -- I5: half-open inside the process --------------------------------------------------------


@pytest.mark.parametrize("date", [None, LEGACY])
def test_I5_half_open_server_sends_after_the_clients_close(rec, date):
    client, server = watched(rec, date)
    server.accept(allow_half_open=True)
    client.accept()
    client.close(1000, "c")
    rec.wait_event("server", "close")
    settle(client, server)
    assert (client.ready_state, server.ready_state) == (2, 2)
    server.send("after peer close")
    server.close(1000, "s")
    rec.wait_event("client", "close")
    settle(client, server)
    assert rec.summary() == [
        ("server", "close", 2, (1000, "c", True)),
        ("client", "message", 2, "after peer close"),
        ("client", "close", 3, (1000, "s", True)),
    ]
    assert (client.ready_state, server.ready_state) == (3, 3)


def test_I_both_ends_close_at_once_each_gets_one_close_event(rec):
    client, server = watched(rec)
    with _runtime.in_turn():
        server.accept()
        client.accept()
        client.close(4001, "from client")
        server.close(4002, "from server")
    rec.wait_for(lambda seen: len([s for s in seen if s.type == "close"]) == 2)
    settle(client, server)
    closes = {s.tag: s.event.code for s in rec.of(kind="close")}
    assert closes == {"client": 4002, "server": 4001}
    assert (client.ready_state, server.ready_state) == (3, 3)


# -- B: the peer closes, in memory -----------------------------------------------------------


def test_B2_auto_reply_echoes_code_and_reason(rec):
    client, server = open_pair(rec)
    with _runtime.in_turn():  # deliveries start when the turn ends, as in a Worker
        client.close(4001, "client bye")
        assert (client.ready_state, server.ready_state) == (2, 1)
    rec.wait_event("client", "close")
    assert rec.summary() == [
        ("server", "close", 3, (4001, "client bye", True)),
        ("client", "close", 3, (4001, "client bye", True)),
    ]


def test_B3_close_in_the_close_handler_is_ignored_under_auto_reply(rec):
    client, server = open_pair(rec)
    results = []

    def close_in_handler(e):
        server.close(4000, "from handler")
        results.append(server.ready_state)

    server.add_event_listener("close", close_in_handler)
    client.close(1000, "bye")
    rec.wait_event("client", "close")
    settle(client, server)
    assert results == [3]
    assert rec.summary() == [
        ("server", "close", 3, (1000, "bye", True)),
        ("client", "close", 3, (1000, "bye", True)),
    ]


def test_B3_send_after_auto_reply_raises(rec):
    client, server = open_pair(rec)
    client.close(1000)
    rec.wait_event("server", "close")
    with pytest.raises(TypeError, match="after close"):
        server.send("late")


def test_B6_half_open_close_handler_sees_closing_and_may_still_send(rec):
    client, server = open_pair(rec, half_open=True)
    client.close(1000, "c")
    rec.wait_event("server", "close")
    settle(client, server)
    assert (client.ready_state, server.ready_state) == (2, 2)
    server.send("after peer close")
    server.close(1000, "s")
    assert server.ready_state == 3
    rec.wait_event("client", "close")
    settle(client, server)
    assert rec.summary() == [  # trace i_internal_half__current
        ("server", "close", 2, (1000, "c", True)),
        ("client", "message", 2, "after peer close"),
        ("client", "close", 3, (1000, "s", True)),
    ]
    assert (client.ready_state, server.ready_state) == (3, 3)


@pytest.mark.parametrize("date,flags", [(LEGACY, ()), ("2026-04-06", ()),
                                        ("2026-11-17", ("web_socket_manual_reply_to_close",))])
def test_B1_B6_no_reply_on_old_dates_and_with_the_manual_flag(rec, date, flags):
    client, server = open_pair(rec, date, flags)
    client.close(1000, "bye")
    rec.wait_event("server", "close")
    settle(client, server)
    assert rec.summary() == [("server", "close", 2, (1000, "bye", True))]


def test_B1_auto_reply_flag_on_an_old_date(rec):
    client, server = open_pair(rec, LEGACY, ("web_socket_auto_reply_to_close",))
    client.close(1000, "bye")
    rec.wait_event("client", "close")
    assert rec.of("server", "close")[0].rs == 3


def test_B1_accept_false_forces_auto_reply_on_a_legacy_date(rec):
    client, server = open_pair(rec, LEGACY, half_open=False)
    client.close(1000, "bye")
    rec.wait_event("client", "close")
    assert rec.of("server", "close")[0].rs == 3


def test_B1_mode_is_fixed_when_the_socket_is_constructed(rec):
    with compatibility(date=LEGACY):
        client, server = WebSocketPair()
    rec.watch(server, "server")
    server.accept()  # accepted outside the block: still legacy
    client.accept()
    client.close(1000)
    assert rec.wait_event("server", "close").rs == 2


def test_B8_legacy_close_in_handler_sends_that_frame(rec):
    client, server = open_pair(rec, LEGACY)
    after = []

    def reply(e):
        server.close(4000, "from handler")
        after.append(server.ready_state)

    server.add_event_listener("close", reply)
    client.close(1000, "bye")
    rec.wait_event("client", "close")
    settle(client, server)
    assert after == [3]
    assert rec.summary() == [
        ("server", "close", 2, (1000, "bye", True)),
        ("client", "close", 3, (4000, "from handler", True)),
    ]


def test_B13_legacy_send_after_the_peers_close_is_delivered(rec):
    client, server = open_pair(rec, LEGACY)
    client.close(1000, "bye")
    rec.wait_event("server", "close")
    server.send("late")
    rec.wait_for(lambda seen: len(seen) == 2)
    settle(client, server)
    assert rec.summary()[1] == ("client", "message", 2, "late")


# -- C: this end closes first ----------------------------------------------------------------


def test_C1_close_without_code_arrives_as_1005(rec):
    client, server = open_pair(rec)
    server.close()
    rec.wait_event("server", "close")
    assert rec.summary() == [
        ("client", "close", 3, (1005, "", True)),
        ("server", "close", 3, (1005, "", True)),
    ]


def test_C2_rs_closing_right_after_close_and_first_frame_wins(rec):
    client, server = open_pair(rec, LEGACY)
    server.close(4000, "first")
    assert server.ready_state == 2
    server.close(1000, "second")
    rec.wait_event("client", "close")
    assert rec.of("client", "close")[0].event.reason == "first"


def test_C3_peer_reply_with_another_code_and_data_before_it(rec):
    client, server = open_pair(rec, LEGACY)
    client.add_event_listener("close", lambda e: (client.send("between"),
                                                  client.close(4999, "different")))
    server.close(4000, "mine")
    rec.wait_event("server", "close")
    settle(client, server)
    assert rec.summary() == [
        ("client", "close", 2, (4000, "mine", True)),
        ("server", "message", 2, "between"),
        ("server", "close", 3, (4999, "different", True)),
    ]


def test_C_everything_sent_before_close_arrives_before_it(rec):
    client, server = open_pair(rec)
    for i in range(50):
        client.send("m%d" % i)
    client.close(1000, "end")
    rec.wait_event("server", "close")
    kinds = [s.type for s in rec.of("server")]
    assert kinds == ["message"] * 50 + ["close"]
