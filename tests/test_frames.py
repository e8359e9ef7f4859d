"""The wire codec in memory: bytes in, wire events out (RULES B4, B9, B10, E1–E3, L1,
M1–M4, N1; SPEC §8.1).  The same rules over a real socket are in test_core_socketpair."""

import struct
import tracemalloc
import zlib

import pytest
from wsproto.extensions import PerMessageDeflate

from cfws_sync._deflate import BoundedDeflate, negotiate_deflate
from cfws_sync._frames import DEFAULT_MAX_MESSAGE_SIZE, Failure, Message, PeerClose, Ping, WireCodec
from tests.corekit import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    build_frame,
    close_payload,
    mask_bytes,
)

MiB = 1 << 20


def server_reads(*frames, **options):
    """What a server codec makes of ``frames`` (masked, as a client sends them)."""
    return WireCodec(False, **options).receive(b"".join(frames))


def parse(data):
    """Split bytes written by a codec into ``(first byte, masked, payload)`` per frame."""
    out = []
    while data:
        first, second = data[0], data[1]
        n, at = second & 0x7F, 2
        if n == 126:
            n, at = struct.unpack("!H", data[2:4])[0], 4
        elif n == 127:
            n, at = struct.unpack("!Q", data[2:10])[0], 10
        masked = bool(second & 0x80)
        key = data[at:at + 4] if masked else b""
        at += 4 if masked else 0
        payload = data[at:at + n]
        out.append((first, masked, mask_bytes(key, payload) if masked else payload))
        data = data[at + n:]
    return out


# -- messages ------------------------------------------------------------------------------


def test_A4_text_and_binary_messages():
    events = server_reads(build_frame(TEXT, "héllo 🌍".encode()), build_frame(BINARY, b"\0\1"))
    assert events == [Message("héllo 🌍"), Message(b"\0\1")]


def test_A4_empty_text_and_empty_binary_are_delivered():
    assert server_reads(build_frame(TEXT), build_frame(BINARY)) == [Message(""), Message(b"")]


def test_M1_fragmented_text_is_one_message():
    events = server_reads(build_frame(TEXT, b"hel", fin=False),
                          build_frame(CONT, b"lo ", fin=False), build_frame(CONT, b"world"))
    assert events == [Message("hello world")]


def test_M1_fragmented_binary_is_one_message():
    events = server_reads(build_frame(BINARY, b"\1", fin=False), build_frame(CONT, b"\2"))
    assert events == [Message(b"\1\2")]


def test_M1_utf8_split_across_fragments():
    raw = "café!".encode()
    events = server_reads(build_frame(TEXT, raw[:4], fin=False), build_frame(CONT, raw[4:]))
    assert events == [Message("café!")]


def test_M1_bytes_fed_one_at_a_time():
    data = (build_frame(TEXT, b"ab", fin=False) + build_frame(PING, b"p")
            + build_frame(CONT, b"cd") + build_frame(BINARY, b"x" * 300))
    codec = WireCodec(False)
    events = []
    for i in range(len(data)):
        events += codec.receive(data[i:i + 1])
    assert events == [Ping(b"p"), Message("abcd"), Message(b"x" * 300)]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
def test_RFC6455_5_2_every_length_encoding_round_trips(size):
    payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    server, client = WireCodec(False), WireCodec(True)
    assert server.receive(client.message(payload)) == [Message(payload)]
    assert client.receive(server.message(payload)) == [Message(payload)]


def test_RFC6455_5_3_client_frames_are_masked_server_frames_are_not():
    (first, masked, payload), = parse(WireCodec(True).message("hi"))
    assert (first, masked, payload) == (0x81, True, b"hi")
    (first, masked, payload), = parse(WireCodec(False).message(b"hi"))
    assert (first, masked, payload) == (0x82, False, b"hi")


def test_RFC6455_5_3_each_client_frame_has_its_own_mask_key():
    codec = WireCodec(True)
    keys = {codec.message(b"same")[2:6] for _ in range(8)}
    assert len(keys) > 1


def test_A6_lone_surrogate_goes_out_as_wtf8():
    (first, _, payload), = parse(WireCodec(False).message("\ud800 lone surrogate"))
    assert first == 0x81
    assert payload.hex() == "eda080206c6f6e6520737572726f67617465"  # trace f_sendtypes


# -- control frames ------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"", b"p1", b"z" * 125])
def test_L1_pings_are_reported_with_their_payload(payload):
    assert server_reads(build_frame(PING, payload)) == [Ping(payload)]


def test_L1_unsolicited_pong_is_ignored():
    assert server_reads(build_frame(PONG, b"unsolicited"), build_frame(TEXT, b"t")) == [
        Message("t")]


def test_L1_ping_between_fragments_does_not_disturb_reassembly():
    events = server_reads(build_frame(TEXT, b"hel", fin=False), build_frame(PING, b"p"),
                          build_frame(CONT, b"lo"))
    assert events == [Ping(b"p"), Message("hello")]


def test_L1_pong_carries_the_payload():
    (first, masked, payload), = parse(WireCodec(False).pong(b"p1"))
    assert (first, masked, payload) == (0x8A, False, b"p1")
    (first, masked, payload), = parse(WireCodec(True).pong(b"p1"))
    assert (first, masked, payload) == (0x8A, True, b"p1")


def test_B4_empty_close_payload_is_1005():
    assert server_reads(build_frame(CLOSE)) == [PeerClose(1005, "")]


def test_B4_one_byte_close_payload_is_1005():
    assert server_reads(build_frame(CLOSE, b"\x03")) == [PeerClose(1005, "")]


@pytest.mark.parametrize("code", [1000, 1003, 1005, 1007, 1014, 3000, 4321, 4999])
def test_B4_a_close_code_is_passed_through(code):
    assert server_reads(build_frame(CLOSE, close_payload(code, b"why"))) == [
        PeerClose(code, "why")]


@pytest.mark.parametrize("code", [0, 999, 1004, 1006, 1015, 1016, 2999, 5000, 65535])
def test_SPEC_8_1_a_close_code_RFC_6455_forbids_fails_with_1002(code):
    # workerd echoes these (B4); RFC 6455 §7.4 makes them a protocol error.
    assert server_reads(build_frame(CLOSE, close_payload(code, b"why"))) == [
        Failure(1002, "Received a Close frame with invalid code %d" % code)]


def test_B9_nothing_is_read_after_the_peers_close():
    codec = WireCodec(False)
    events = codec.receive(build_frame(TEXT, b"x") + build_frame(CLOSE)
                           + build_frame(TEXT, b"after") + build_frame(PING, b"p"))
    assert events == [Message("x"), PeerClose(1005, "")]
    assert codec.finished
    assert codec.receive(build_frame(TEXT, b"later")) == []


def test_B10_close_in_the_middle_of_a_fragmented_message():
    events = server_reads(build_frame(TEXT, b"part", fin=False),
                          build_frame(CLOSE, close_payload(1000, b"mid")))
    assert events == [PeerClose(1000, "mid")]


def test_C1_close_without_code_is_an_empty_frame():
    codec = WireCodec(False)
    assert parse(codec.close()) == [(0x88, False, b"")]
    assert parse(codec.close(None, "")) == [(0x88, False, b"")]


def test_C1_close_with_code_only_is_two_bytes():
    assert parse(WireCodec(False).close(1000)) == [(0x88, False, b"\x03\xe8")]
    assert parse(WireCodec(False).close(1000, "")) == [(0x88, False, b"\x03\xe8")]


def test_B4_echo_of_1005_is_an_empty_frame_and_odd_codes_are_written():
    codec = WireCodec(False)
    assert parse(codec.close(1005, "")) == [(0x88, False, b"")]
    assert parse(codec.close(999, "x")) == [(0x88, False, b"\x03\xe7x")]
    assert parse(codec.close(5000, "")) == [(0x88, False, b"\x13\x88")]


def test_close_reason_over_123_bytes_is_cut_at_a_character_boundary():
    # C10 allows any length on old dates; the frame must stay valid UTF-8 and <= 125 bytes.
    (_, _, payload), = parse(WireCodec(False).close(1000, "é" * 62))
    assert len(payload) == 2 + 122
    assert payload[2:].decode("utf-8") == "é" * 61
    (_, _, payload), = parse(WireCodec(False).close(1000, "x" * 200))
    assert payload[2:] == b"x" * 123


# -- protocol errors: kj's reasons (M4) and RFC 6455 (SPEC §8.1) ---------------------------


M4_CASES = [
    ("reserved_opcode_3", [build_frame(3, b"x")], "Unknown opcode 3"),
    ("reserved_opcode_11", [build_frame(11, b"x")], "Unknown opcode 11"),
    ("rsv2", [build_frame(TEXT, b"x", rsv=2)], "Received frame had RSV bits 2 or 3 set"),
    ("rsv3", [build_frame(TEXT, b"x", rsv=1)], "Received frame had RSV bits 2 or 3 set"),
    ("rsv1_without_extension", [build_frame(TEXT, b"x", rsv=4)],
     "Received a WebSocket frame whose compression bit was set, but the compression "
     "extension was not negotiated for this connection."),
    ("unexpected_continuation", [build_frame(CONT, b"x")], "Unexpected continuation frame"),
    ("missing_continuation", [build_frame(TEXT, b"a", fin=False), build_frame(TEXT, b"b")],
     "Missing continuation frame"),
    ("fragmented_ping", [build_frame(PING, b"p", fin=False)],
     "Received fragmented control frame"),
]


@pytest.mark.parametrize("frames,reason", [c[1:] for c in M4_CASES],
                         ids=[c[0] for c in M4_CASES])
def test_M4_protocol_errors_fail_with_1002_and_kj_reason(frames, reason):
    codec = WireCodec(False)
    assert codec.receive(b"".join(frames) + build_frame(TEXT, b"after")) == [
        Failure(1002, reason)]
    assert codec.finished
    assert codec.receive(build_frame(TEXT, b"later")) == []


def test_M4_events_before_the_error_are_kept():
    events = server_reads(build_frame(TEXT, b"ok"), build_frame(3, b"x"))
    assert events == [Message("ok"), Failure(1002, "Unknown opcode 3")]


@pytest.mark.parametrize("opcode", [PING, CLOSE, PONG])
def test_SPEC_8_1_control_frame_over_125_bytes_fails_with_1002(opcode):
    payload = close_payload(1000, b"r" * 198) if opcode == CLOSE else b"y" * 200
    assert server_reads(build_frame(opcode, payload)) == [
        Failure(1002, "Received control frame longer than 125 bytes")]


@pytest.mark.parametrize("raw", [b"ok\xff\xfeok", b"\xc0\xafx", b"\xed\xa0\x80"],
                         ids=["invalid", "overlong", "surrogate"])
def test_SPEC_8_1_invalid_utf8_text_fails_with_1007(raw):
    assert server_reads(build_frame(TEXT, raw)) == [
        Failure(1007, "Invalid UTF-8 in text message")]


def test_SPEC_8_1_invalid_utf8_is_found_before_the_message_ends():
    codec = WireCodec(False)
    assert codec.receive(build_frame(TEXT, b"ok\xff", fin=False)) == [
        Failure(1007, "Invalid UTF-8 in text message")]


def test_SPEC_8_1_text_truncated_inside_a_character_fails_with_1007():
    raw = "é".encode()
    assert server_reads(build_frame(TEXT, raw[:1], fin=False), build_frame(CONT, b"")) == [
        Failure(1007, "Invalid UTF-8 in text message")]


def test_SPEC_8_1_invalid_utf8_close_reason_fails_with_1007():
    assert server_reads(build_frame(CLOSE, close_payload(1000, b"\xff\xfe"))) == [
        Failure(1007, "Invalid UTF-8 in Close reason")]


def test_SPEC_8_1_unmasked_frame_from_a_client_fails_with_1002():
    assert server_reads(build_frame(TEXT, b"x", mask=False)) == [
        Failure(1002, "Received unmasked frame from client")]


def test_SPEC_8_1_masked_frame_from_a_server_fails_with_1002():
    assert WireCodec(True).receive(build_frame(TEXT, b"x", mask=True)) == [
        Failure(1002, "Received masked frame from server")]


def test_client_codec_reads_unmasked_server_frames():
    assert WireCodec(True).receive(build_frame(TEXT, b"x", mask=False)) == [Message("x")]


# -- size limits (E1–E3) -------------------------------------------------------------------


def header_only(opcode, length, fin=True):
    """A masked frame header declaring ``length`` bytes, without the payload."""
    frame = build_frame(opcode, b"", fin=fin, length=length)
    return frame  # with an empty payload the frame *is* the header and mask key


def test_E1_default_limit_is_32_MiB():
    assert DEFAULT_MAX_MESSAGE_SIZE == 33554432


def test_E1_exactly_32_MiB_in_one_frame_is_delivered():
    payload = b"\1" * DEFAULT_MAX_MESSAGE_SIZE
    events = WireCodec(True).receive(build_frame(BINARY, payload, mask=False))
    assert len(events) == 1 and events[0].data == payload


def test_E1_exactly_32_MiB_in_four_fragments_is_delivered():
    part = b"\2" * (8 * MiB)
    codec = WireCodec(False)
    events = []
    for i in range(4):
        events += codec.receive(build_frame(BINARY if i == 0 else CONT, part, fin=i == 3))
    assert len(events) == 1 and len(events[0].data) == 32 * MiB


def test_E2_a_header_over_the_limit_fails_before_the_payload():
    codec = WireCodec(False)
    assert codec.receive(header_only(BINARY, 32 * MiB + 1)) == [
        Failure(1009, "Message is too large: 33554433 > 33554432")]
    assert codec.finished


def test_E2_text_header_over_the_limit_fails_too():
    assert server_reads(header_only(TEXT, 32 * MiB + 1) + b"\0" * 16) == [
        Failure(1009, "Message is too large: 33554433 > 33554432")]


def test_E2_a_header_at_the_limit_waits_for_the_payload():
    codec = WireCodec(False)
    assert codec.receive(header_only(BINARY, 32 * MiB) + b"\0" * 16) == []
    assert not codec.finished


def test_E3_fragments_share_one_budget():
    codec = WireCodec(False)
    part = b"\3" * (12 * MiB)
    assert codec.receive(build_frame(BINARY, part, fin=False)) == []
    assert codec.receive(build_frame(CONT, part, fin=False)) == []
    assert codec.receive(header_only(CONT, 12 * MiB)) == [
        Failure(1009, "Message is too large: 12582912 > 8388608")]


def test_E3_the_budget_is_per_message():
    codec = WireCodec(False, max_message_size=10)
    events = codec.receive(build_frame(TEXT, b"x" * 10) + build_frame(TEXT, b"y" * 6, fin=False)
                           + build_frame(CONT, b"y" * 4))
    assert events == [Message("x" * 10), Message("y" * 10)]


@pytest.mark.parametrize("frames,reason", [
    ([build_frame(BINARY, b"x" * 11)], "Message is too large: 11 > 10"),
    ([build_frame(BINARY, b"x" * 6, fin=False), build_frame(CONT, b"x" * 5)],
     "Message is too large: 5 > 4"),
])
def test_E1_max_message_size_option(frames, reason):
    assert server_reads(*frames, max_message_size=10) == [Failure(1009, reason)]


# -- permessage-deflate (N1) ---------------------------------------------------------------


@pytest.mark.parametrize("offer,response", [
    ("permessage-deflate; client_max_window_bits",
     "permessage-deflate; client_max_window_bits=15"),
    ("permessage-deflate; client_no_context_takeover; server_no_context_takeover",
     "permessage-deflate; client_no_context_takeover; server_no_context_takeover"),
    ("permessage-deflate", "permessage-deflate"),
    ("x-webkit-foo", None),
    ("x-foo, permessage-deflate", "permessage-deflate"),
    ("", None),
    (None, None),
])
def test_N1_deflate_negotiation(offer, response):
    extension, value = negotiate_deflate(offer)
    assert value == response
    assert (extension is None) == (response is None)


def deflate_codecs(offer="permessage-deflate; client_max_window_bits"):
    extension, value = negotiate_deflate(offer)
    client_extension = PerMessageDeflate()
    client_extension.finalize(value)
    return WireCodec(False, extension), WireCodec(True, client_extension)


def test_N1_compressed_messages_round_trip_both_ways():
    server, client = deflate_codecs()
    for message in ["hello hello hello hello", "plain " * 10, b"\0" * 1000, "", b""]:
        data = client.message(message)
        assert data[0] & 0x40, "client frames are compressed (RSV1)"
        assert server.receive(data) == [Message(message)]
        data = server.message(message)
        assert data[0] & 0x40, "server frames are compressed (RSV1)"
        assert client.receive(data) == [Message(message)]


def test_N1_compression_shrinks_repetitive_messages():
    server, _ = deflate_codecs()
    assert len(server.message("hello " * 1000)) < 100


@pytest.mark.parametrize("offer", [
    "permessage-deflate",
    "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
])
def test_N1_context_takeover_settings_keep_round_trips_working(offer):
    server, client = deflate_codecs(offer)
    for i in range(5):
        text = "message %d " % i * 20
        assert server.receive(client.message(text)) == [Message(text)]
        assert client.receive(server.message(text)) == [Message(text)]


def test_N1_compressed_fragmented_message():
    server, _ = deflate_codecs("permessage-deflate")
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    body = compressor.compress(b"fragmented " * 50) + compressor.flush(zlib.Z_SYNC_FLUSH)
    body = body[:-4]
    half = len(body) // 2
    events = server.receive(build_frame(TEXT, body[:half], fin=False, rsv=4)
                            + build_frame(CONT, body[half:]))
    assert events == [Message("fragmented " * 50)]


def test_N1_uncompressed_frames_still_accepted_after_negotiation():
    server, _ = deflate_codecs()
    assert server.receive(build_frame(TEXT, b"plain")) == [Message("plain")]


def test_N1_a_plain_extension_given_to_the_codec_is_bounded_too():
    extension = PerMessageDeflate()
    extension.finalize("permessage-deflate")
    codec = WireCodec(True, extension)
    assert isinstance(codec.deflate, BoundedDeflate)


def bomb(size):
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = compressor.compress(b"\0" * size) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return body[:-4]


def test_E1_decompression_bomb_refused_with_1009_in_bounded_memory():
    server, _ = deflate_codecs("permessage-deflate")
    frame = build_frame(BINARY, bomb(256 * MiB), rsv=4)  # ~250 KB that inflates to 256 MiB
    assert len(frame) < MiB
    tracemalloc.start()
    try:
        events = server.receive(frame)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(events) == 1 and isinstance(events[0], Failure)
    assert events[0].code == 1009
    assert events[0].reason.startswith("Message is too large: ")
    assert events[0].reason.endswith(" > 33554432")
    assert peak < 160 * MiB, "inflated far past the limit: %d MiB" % (peak // MiB)


def test_E1_deflate_bomb_in_small_chunks_is_refused_as_soon_as_it_passes_the_limit():
    server, _ = deflate_codecs("permessage-deflate")
    server.max_message_size = 1 * MiB
    frame = build_frame(BINARY, bomb(64 * MiB), rsv=4)
    events = []
    fed = 0
    while not events and fed < len(frame):
        events = server.receive(frame[fed:fed + 4096])
        fed += 4096
    assert len(events) == 1 and events[0].code == 1009
    assert fed < len(frame), "refused before the whole frame arrived"


@pytest.mark.parametrize("accelerated", [True, False])
def test_masking_with_and_without_the_optional_C_unmask(monkeypatch, accelerated):
    # RFC 6455 §5.3: masked frames round-trip whichever unmask runs, across chunk
    # boundaries that fall inside the 4-byte key cycle.
    from cfws_sync import _masking

    if not accelerated:
        monkeypatch.setattr(_masking, "_apply_mask", None)
    elif _masking._apply_mask is None:
        pytest.fail("websockets.speedups is a test dependency and should be importable")
    client, server = WireCodec(client=True), WireCodec(client=False)
    payload = bytes(range(256)) * 1000 + b"tail"
    wire = client.message(payload) + client.message("é" * 1000)
    events = []
    for start in range(0, len(wire), 4093):  # odd chunk sizes
        events.extend(server.receive(wire[start:start + 4093]))
    assert events == [Message(payload), Message("é" * 1000)]


# -- the plain path agrees with wsproto's general path -------------------------------------


class _GeneralOnly(WireCodec):
    """A codec that never takes the plain path: every byte goes through wsproto."""

    def _receive_plain(self, data, events):
        self._plain = False
        return data


def _random_stream(rng, mask):
    """Frames of every kind the plain path must take or hand over, in a random order."""
    frames = []
    for _ in range(rng.randrange(1, 30)):
        kind = rng.random()
        size = rng.choice([0, 1, 125, 126, 127, 65535, 65536, 70000, rng.randrange(300)])
        if kind < 0.4:
            frames.append(build_frame(BINARY, rng.randbytes(size), mask=mask))
        elif kind < 0.65:
            text = "é€x"[rng.randrange(3)] * (size // 3)
            frames.append(build_frame(TEXT, text.encode(), mask=mask))
        elif kind < 0.75:
            frames.append(build_frame(rng.choice([PING, PONG]), rng.randbytes(rng.randrange(126)),
                                      mask=mask))
        elif kind < 0.85:  # a fragmented message with a ping inside
            frames.append(build_frame(BINARY, b"head", fin=False, mask=mask))
            frames.append(build_frame(PING, b"p", mask=mask))
            frames.append(build_frame(CONT, rng.randbytes(size), mask=mask))
        elif kind < 0.9:  # 126-byte length encoding used for a short frame: RFC 6455 §5.2
            frames.append(b"\x82" + (b"\xfe" if mask else b"\x7e") + b"\x00\x05"
                          + (b"\x00" * 4 if mask else b"") + b"short")
        elif kind < 0.93:
            frames.append(build_frame(TEXT, b"\xff\xfe", mask=mask))  # invalid UTF-8
        elif kind < 0.95:  # a control frame over 125 bytes: RFC 6455 §5.5
            frames.append(build_frame(PING, bytes(126), mask=mask))
        else:
            frames.append(build_frame(CLOSE, close_payload(1000, b"bye"), mask=mask))
    return b"".join(frames)


def _read_all(codec, wire, rng, into):
    events, at = [], 0
    while at < len(wire) and not codec.finished:
        if into and codec.pending_size:
            view = codec.pending_view()
            n = min(len(view), rng.randrange(1, 100000), len(wire) - at)
            view[:n] = wire[at:at + n]
            events.extend(codec.received_into(n))
        else:
            n = rng.choice([1, 2, 7, 100, 4096, 70000, len(wire)])
            events.extend(codec.receive(wire[at:at + n]))
        at += n
    return events


@pytest.mark.parametrize("seed", range(40))
def test_the_plain_path_reads_exactly_what_wsproto_reads(seed):
    import random

    rng = random.Random(seed)
    client = bool(seed % 2)  # a client reads unmasked frames, a server masked ones
    wire = _random_stream(rng, mask=not client)
    expected = _GeneralOnly(client).receive(wire)
    assert _read_all(WireCodec(client), wire, rng, into=False) == expected
    assert _read_all(WireCodec(client), wire, rng, into=True) == expected


def test_the_same_message_sent_by_many_server_codecs_is_framed_alike():
    # A broadcast reuses the frame of the last message object a plain server framed;
    # nothing else may see it: another object, a client (masked), or a compressing codec.
    text, data = "hello " * 10, b"\x00\x01" * 10
    servers = [WireCodec(False) for _ in range(3)]
    for message, first in ((text, 0x81), (data, 0x82), (text, 0x81)):
        frames = {codec.message(message) for codec in servers}
        assert len(frames) == 1
        assert parse(frames.pop()) == [(first, False, message.encode() if first == 0x81 else message)]
    for other in ("a" * 10, "b" * 10, b"a" * 10):  # each object gets its own frame
        assert parse(WireCodec(False).message(other))[0][2] == (
            other.encode() if isinstance(other, str) else other)
    client = WireCodec(True)
    client.message(text)
    (first, masked, payload), = parse(client.message(text))
    assert masked and payload == text.encode()
    deflate, _ = negotiate_deflate("permessage-deflate")
    compressing = WireCodec(False, deflate)
    WireCodec(False).message(text)
    assert compressing.message(text)[0] & 0x40  # RSV1: compressed, not the cached frame


@pytest.mark.parametrize("client", [False, True])
def test_messages_read_from_a_bytearray_are_immutable_bytes(client):
    writer = WireCodec(not client)  # a client reads unmasked frames: nothing copies them
    wire = writer.message(b"abc") + writer.message("déf") + writer.ping(b"p")
    events = WireCodec(client).receive(bytearray(wire))
    assert events == [Message(b"abc"), Message("déf"), Ping(b"p")]
    assert type(events[0].data) is bytes and type(events[2].payload) is bytes
