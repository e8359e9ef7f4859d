"""Remove the deliberate differences of SPEC §8 from an oracle trace, and nothing else.

``normalise(trace)`` is applied to the workerd trace and to cfws_sync's before they are
compared.  Each rule implements one SPEC §8 item and rewrites only what that item makes
differ; everything else must match as recorded.  ``NORMALISE.rst`` explains each rule.
A rule that changed something leaves a marker ``{"normalised": "SPEC §8.N", ...}`` in the
section it changed, so a reader sees where the comparison was relaxed, and
``trace["normalised"]`` lists the rules that applied.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Callable, Iterable, Optional

Entry = dict[str, Any]
Trace = dict[str, Any]

DROP_REASON = "WebSocket disconnected without sending Close frame."  # RULES H1
CLOSE_TIMEOUT_REASON = "WebSocket closing handshake timed out."  # cfws_sync, SPEC §8.4
NETWORK_LOST = "Network connection lost."  # RULES B12
CLOSE_TIMEOUT_SECONDS = 10.0  # cfws_sync's default close_timeout (SPEC §8.4)
_DATA_OPS = ("text", "binary")


def normalise(trace: Trace) -> Trace:
    """A copy of ``trace`` with the SPEC §8 differences removed (see ``NORMALISE.rst``)."""
    out = copy.deepcopy(trace)
    applied: list[str] = []
    for rule in RULES:
        name = rule(out)
        if name:
            applied.append(name)
    if applied:
        out["normalised"] = applied
    return out


def _marker(item: str, what: str) -> Entry:
    return {"normalised": "SPEC " + item, "what": what}


def _sections(trace: Trace) -> list[str]:
    return [s for s in ("peer", "backend") if s in trace]


# -- SPEC §8.1: RFC 6455 is enforced ----------------------------------------------------------

def _payload(entry: Entry) -> Optional[bytes]:
    if "text" in entry:
        return str(entry["text"]).encode("utf-8", "surrogatepass")
    if "hex" in entry:
        return bytes.fromhex(entry["hex"])
    return None


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _violation(entry: Entry, section: str, text_parts: list[bytes]) -> Optional[str]:
    """Why a frame this actor sent breaks RFC 6455 where workerd is lax, or ``None``."""
    if entry.get("action") != "send":
        return None
    op = entry.get("op")
    client = section == "peer"  # the peer is a client, the backend a server
    if client and entry.get("masked") is False:
        return "unmasked frame from a client"
    if not client and entry.get("masked") is True:
        return "masked frame from a server"
    if op in ("ping", "pong", "close") and int(entry.get("len", 0)) > 125:
        return "control frame over 125 bytes"
    if op == "close":
        if "reason_hex" in entry:
            return "invalid UTF-8 in a Close reason"
        code = entry.get("code")
        if isinstance(code, int) and code != 1005 and not (
                1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999):
            return "a Close code RFC 6455 §7.4 forbids"
    if op == "text" or (op == "cont" and text_parts):
        payload = _payload(entry)
        if payload is None:
            return None
        text_parts.append(payload)
        if entry.get("fin", True):
            message = b"".join(text_parts)
            text_parts.clear()
            if not _valid_utf8(message):
                return "invalid UTF-8 in a text message"
    elif op in _DATA_OPS:
        text_parts.clear()
    return None


def _complete_messages(entries: Iterable[Entry]) -> int:
    count = 0
    for entry in entries:
        if entry.get("action") == "send" and entry.get("op") in ("text", "binary", "cont") \
                and entry.get("fin", True):
            count += 1
    return count


def _cut_worker_after_messages(worker: list[Entry], tags: tuple[str, ...], count: int,
                               marker: Entry) -> list[Entry]:
    """The worker log up to the events the first ``count`` messages caused."""
    seen = 0
    for i, entry in enumerate(worker):
        if entry.get("ev") and entry.get("on") in tags:
            if entry.get("ev") == "message" and seen < count:
                seen += 1
                continue
            if seen >= count:
                return worker[:i] + [marker]
    return worker


def first_violation(trace: Trace) -> Optional[tuple[str, int, str]]:
    """The first frame an actor sent that RFC 6455 forbids and workerd accepts:
    ``(section, index, why)``, or ``None``."""
    for section in _sections(trace):
        text_parts: list[bytes] = []
        for i, entry in enumerate(trace[section]):
            why = _violation(entry, section, text_parts)
            if why is not None:
                return section, i, why
    return None


def rule_8_1_rfc_enforced(trace: Trace) -> Optional[str]:
    """SPEC §8.1: from a frame RFC 6455 forbids, the two runtimes part ways (workerd
    accepts it, cfws_sync fails the connection); compare up to that frame."""
    found = first_violation(trace)
    if found is None:
        return None
    section, i, why = found
    entries = trace[section]
    marker = _marker("§8.1", why)
    trace[section] = entries[:i + 1] + [marker]
    tags = ("server",) if section == "peer" else ("client", "backend", "newws")
    trace["worker"] = _cut_worker_after_messages(
        trace.get("worker", []), tags, _complete_messages(entries[:i]), marker)
    return "§8.1"


def rule_8_1_control_frames_fit(trace: Trace) -> Optional[str]:
    """SPEC §8.1, on the sending side: a Close frame we send fits in 125 bytes (RFC 6455
    §5.5), so a reason over 123 UTF-8 bytes is cut there; workerd sends it whole."""
    changed = False
    for section in _sections(trace):
        for entry in trace[section]:
            if entry.get("event") == "recv" and entry.get("op") == "close" \
                    and int(entry.get("len", 0)) >= 125 and "reason" in entry:
                # at the limit on one side, over it on the other: marked on both
                raw = str(entry["reason"]).encode("utf-8")[:123]
                entry["reason"] = raw.decode("utf-8", "ignore")
                entry["len"] = 2 + len(entry["reason"].encode("utf-8"))
                entry["normalised"] = "SPEC §8.1"
                changed = True
    return "§8.1 (sent)" if changed else None


# -- SPEC §8.2: no spurious error after a clean close ---------------------------------------------

def rule_8_2_no_error_after_clean_close(trace: Trace) -> Optional[str]:
    """SPEC §8.2 (RULES B12): drop workerd's ``Network connection lost.`` error that
    follows a clean close event on the same socket."""
    cleanly_closed: set[Any] = set()
    kept: list[Entry] = []
    dropped = False
    for entry in trace.get("worker", []):
        ev, tag = entry.get("ev"), entry.get("on")
        if ev == "close" and entry.get("wasClean") is True:
            cleanly_closed.add(tag)
        if ev == "error" and tag in cleanly_closed and \
                (entry.get("error") or {}).get("message") == NETWORK_LOST:
            dropped = True
            continue
        kept.append(entry)
    if dropped:
        trace["worker"] = kept
        return "§8.2"
    return None


# -- SPEC §8.3: CLOSED after an abrupt drop --------------------------------------------------------

def rule_8_3_closed_after_drop(trace: Trace) -> Optional[str]:
    """SPEC §8.3 (RULES H2): in and after the 1006 close event of a drop, ``rs`` is 3."""
    worker = trace.get("worker", [])
    dropped: Optional[Any] = None
    changed = False
    for entry in worker:
        if dropped is None:
            if entry.get("ev") == "close" and entry.get("code") == 1006 \
                    and entry.get("wasClean") is False and entry.get("reason") == DROP_REASON:
                dropped = entry.get("on")
                if entry.get("rs") != 3:
                    entry["rs"], changed = 3, True
            continue
        if entry.get("on") == dropped and entry.get("rs") in (1, 2):
            entry["rs"], changed = 3, True
        elif "note" in entry and entry.get("rs") in (1, 2):
            entry["rs"], changed = 3, True  # a later sample of the same socket
    return "§8.3" if changed else None


# -- SPEC §8.4: a close handshake ends -------------------------------------------------------------

def _seconds(text: str) -> float:
    match = re.match(r"[<>=]*([\d.]+)s$", text)
    return float(match.group(1)) if match else 0.0


def rule_8_4_close_timeout(trace: Trace) -> Optional[str]:
    """SPEC §8.4: once a Close the peer never answers has waited ``close_timeout``,
    workerd keeps TCP open and cfws_sync drops it with close 1006."""
    changed = False
    for section in _sections(trace):
        unanswered = False
        for i, entry in enumerate(trace[section]):
            if entry.get("event") == "recv" and entry.get("op") == "close":
                unanswered = True
            elif entry.get("action") == "send" and entry.get("op") == "close":
                unanswered = False
            elif unanswered and (
                    (entry.get("event") == "tcp_still_open"
                     and _seconds(entry.get("waited", "")) >= CLOSE_TIMEOUT_SECONDS)
                    or (entry.get("event") == "tcp_eof" and entry.get("after") in ("<10s", ">=10s")
                        and _seconds(entry["after"]) >= CLOSE_TIMEOUT_SECONDS)):
                trace[section][i] = _marker("§8.4", "TCP after an unanswered Close")
                changed = True
    for entry in trace.get("worker", []):
        if entry.get("ev") == "close" and entry.get("reason") == CLOSE_TIMEOUT_REASON:
            entry["reason"], changed = DROP_REASON, True
    return "§8.4" if changed else None


# -- SPEC §8.5: send() and close() types ---------------------------------------------------------------

# JavaScript values Python sends differently: an object, null, undefined, a Blob.
_SEND_COERCED = re.compile(r"^(\w+)\.send\((\{.*\}|null|undefined|new Blob\(.*\))\)$")
_SEND = re.compile(r"^(\w+)\.send\((.*)\)$")
# close() codes JavaScript coerces: a non-integer number, a string, NaN, null.
_CLOSE_COERCED = re.compile(r"(?:^|\.)close\((-?\d+\.\d+|\"[^\"]*\"|NaN|null)(?:,|\))")


def _data_frames(entries: list[Entry]) -> list[int]:
    return [i for i, e in enumerate(entries)
            if e.get("event") == "recv" and e.get("op") in _DATA_OPS]


def rule_8_5_send_close_types(trace: Trace) -> Optional[str]:
    """SPEC §8.5: a Blob is sent as binary; objects and None raise TypeError; close()
    takes an int code.  The outcome of those calls, and the frame they produced, go."""
    worker = trace.get("worker", [])
    sends = [e for e in worker if "call" in e and _SEND.match(e["call"])]
    ok_sends = [e for e in sends if e.get("ok")]
    drop_frames: set[int] = set()
    peer = trace.get("peer", [])
    frames = _data_frames(peer)
    changed = False
    if len(frames) == len(ok_sends):  # every frame came from a logged send, in order
        for entry, index in zip(ok_sends, frames):
            if _SEND_COERCED.match(entry["call"]):
                drop_frames.add(index)
    for entry in worker:
        label = entry.get("call")
        if isinstance(label, str) and (_SEND_COERCED.match(label) or _CLOSE_COERCED.search(label)):
            for key in ("ok", "ret", "threw"):
                entry.pop(key, None)
            entry["normalised"] = "SPEC §8.5"
            changed = True
    if drop_frames:
        trace["peer"] = [e for i, e in enumerate(peer) if i not in drop_frames]
    return "§8.5" if changed else None


# -- SPEC §8.6: an exception escaping a listener ------------------------------------------------------------

_THROWING = re.compile(r"^throwing from message listener #(\d+)$")


def rule_8_6_listener_exception(trace: Trace) -> Optional[str]:
    """SPEC §8.6 (RULES A9): after the error event of an exception escaping a listener,
    workerd drops TCP and cfws_sync closes with 1011; compare up to that error."""
    worker = trace.get("worker", [])
    for i, entry in enumerate(worker):
        match = _THROWING.match(str(entry.get("note", "")))
        if not match:
            continue
        for j in range(i + 1, len(worker)):
            if worker[j].get("ev") == "error":
                marker = _marker("§8.6", "exception escaping a listener")
                error = dict(worker[j])
                error.pop("rs", None)  # workerd: 3 (torn down); cfws_sync: still open
                trace["worker"] = worker[:j] + [error, marker]
                nth = int(match.group(1))
                peer = trace.get("peer", [])
                for k, sent in enumerate(peer):
                    if _complete_messages([sent]) and _complete_messages(peer[:k + 1]) == nth:
                        trace["peer"] = peer[:k + 1] + [marker]
                        break
                return "§8.6"
    return None


RULES: list[Callable[[Trace], Optional[str]]] = [
    rule_8_1_rfc_enforced,
    rule_8_1_control_frames_fit,
    rule_8_6_listener_exception,
    rule_8_2_no_error_after_clean_close,
    rule_8_3_closed_after_drop,
    rule_8_4_close_timeout,
    rule_8_5_send_close_types,
]
