"""Compatibility dates and flags (SPEC §4; RULES B1, C6, C10, D1, K6, N1)."""

import threading

import pytest

from cfws_sync import Compatibility, WebSocketPair, compatibility
from cfws_sync.compat import KNOWN_FLAGS, current_compatibility


def test_no_date_is_the_newest_behaviour():
    newest = Compatibility.resolve()
    assert newest == Compatibility()
    assert (newest.auto_reply_to_close, newest.standard_binary_type,
            newest.close_reason_byte_limit, newest.compression, newest.pedantic_wpt) == (
        True, True, True, True, False)
    assert newest.default_binary_type == "blob"


@pytest.mark.parametrize("field,day_before,day_on", [
    ("auto_reply_to_close", "2026-04-06", "2026-04-07"),  # B1
    ("standard_binary_type", "2026-03-16", "2026-03-17"),  # D1
    ("close_reason_byte_limit", "2026-03-02", "2026-03-03"),  # C10
    ("compression", "2023-08-14", "2023-08-15"),  # K6, N1
])
def test_each_behaviour_turns_on_at_its_date(field, day_before, day_on):
    assert getattr(Compatibility.resolve(day_before), field) is False
    assert getattr(Compatibility.resolve(day_on), field) is True


def test_legacy_date_of_the_oracle():
    legacy = Compatibility.resolve("2025-06-01")
    assert (legacy.auto_reply_to_close, legacy.standard_binary_type,
            legacy.close_reason_byte_limit, legacy.compression) == (False, False, False, True)
    assert legacy.default_binary_type == "arraybuffer"


@pytest.mark.parametrize("flag,field,value", [
    ("web_socket_auto_reply_to_close", "auto_reply_to_close", True),
    ("websocket_standard_binary_type", "standard_binary_type", True),
    ("websocket_close_reason_byte_limit", "close_reason_byte_limit", True),
    ("pedantic_wpt", "pedantic_wpt", True),
    ("web_socket_compression", "compression", True),
])
def test_flags_turn_behaviour_on_at_an_old_date(flag, field, value):
    assert getattr(Compatibility.resolve("2020-01-01", [flag]), field) is value


@pytest.mark.parametrize("flag,field", [
    ("web_socket_manual_reply_to_close", "auto_reply_to_close"),
    ("no_websocket_standard_binary_type", "standard_binary_type"),
    ("no_web_socket_compression", "compression"),
])
def test_flags_turn_behaviour_off_at_a_new_date(flag, field):
    assert getattr(Compatibility.resolve("2026-11-17", [flag]), field) is False
    assert getattr(Compatibility.resolve(None, [flag]), field) is False


def test_the_oracle_variants():
    # shared/oracle README's variants table: legacy_optin turns the three on by flag.
    optin = Compatibility.resolve("2025-06-01", [
        "web_socket_auto_reply_to_close", "websocket_standard_binary_type",
        "websocket_close_reason_byte_limit"])
    assert optin.auto_reply_to_close and optin.standard_binary_type
    assert optin.close_reason_byte_limit


def test_a_single_flag_may_be_a_string():
    assert Compatibility.resolve(None, "pedantic_wpt").pedantic_wpt is True


def test_unknown_flag_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="unknown compatibility flag 'websocket_auto'"):
        Compatibility.resolve(None, ["websocket_auto"])
    assert "pedantic_wpt" in KNOWN_FLAGS


@pytest.mark.parametrize("date", ["2026-13-01", "yesterday", "2026/04/07", 20260407, ""])
def test_malformed_date_is_refused(date):
    with pytest.raises(ValueError, match="compatibility date must be 'YYYY-MM-DD'"):
        Compatibility.resolve(date)


def test_other_iso_spellings_of_a_date_compare_as_that_date():
    try:
        basic = Compatibility.resolve("20250601")
    except ValueError:
        pytest.skip("this Python accepts only YYYY-MM-DD")  # Python < 3.11
    assert basic == Compatibility.resolve("2025-06-01")


def test_compatibility_block_applies_inside_only_and_nests():
    assert current_compatibility() == Compatibility()
    with compatibility(date="2025-06-01") as outer:
        assert current_compatibility() is outer and not outer.auto_reply_to_close
        with compatibility(flags=["pedantic_wpt"]) as inner:
            assert current_compatibility() is inner
            assert inner.pedantic_wpt and inner.auto_reply_to_close
        assert current_compatibility() is outer
    assert current_compatibility() == Compatibility()


def test_compatibility_block_resets_after_an_exception():
    with pytest.raises(KeyError):
        with compatibility(date="2025-06-01"):
            raise KeyError
    assert current_compatibility() == Compatibility()


def test_compatibility_block_is_per_thread():
    seen = []
    with compatibility(date="2025-06-01"):
        thread = threading.Thread(target=lambda: seen.append(current_compatibility()))
        thread.start()
        thread.join(5)
    assert seen == [Compatibility()]


def test_sockets_take_the_settings_in_force_when_created():
    with compatibility(date="2025-06-01"):
        legacy = WebSocketPair()
    newest = WebSocketPair()
    assert legacy.server.binary_type == "arraybuffer"
    assert newest.server.binary_type == "blob"
    assert legacy.server._machine.allow_half_open is True
    assert newest.server._machine.allow_half_open is False
