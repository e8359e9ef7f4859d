"""Seeded random scenarios for the oracle's runner, in three families.

Not a test module: :mod:`tests.compat.difffuzz` copies it into a private copy of the
oracle, whose runner loads it beside its own scenarios.  ``FUZZ_FIRST`` and
``FUZZ_SEEDS`` (environment) choose the seeds.

``z_fuzz_<seed>`` (frames): opens ``/ws/echo`` (half-open or not), sends one to six
frames (any opcode, RSV bits, final or not, text kept valid UTF-8 so that SPEC §8.1
stays out of the way), sometimes a Close, and reads until the Close and the end of TCP.

``z_deflate_<seed>``: permessage-deflate offered; compressed messages (whole, or in two
fragments with a control frame between), plain ones, damaged ones, and control frames
with the compression bit.

``z_app_<seed>`` (the app's side): well-formed frames from the peer, and the echo
Worker's knobs drawn at random (``closeOnMessage``, ``closeInHandler``, ``closeLater``,
``sendInHandler``, ``sendLater``, ``half``, ``greet``, ``bt``) under a random
compatibility variant, so that the close rules (B, C) and binaryType (D) meet.
"""

import os
import random
import zlib

from harness.runner import scenario  # the oracle's own

OPCODES = (1, 2, 0, 8, 9, 10, 3, 11)
CLOSE_CODES = (1000, 1001, 1002, 1003, 1007, 1008, 1011, 3000, 4000, 4999)


def frames_for(rnd: random.Random) -> list:
    """``(opcode, payload, fin, rsv)`` of each frame to send."""
    frames = []
    for _ in range(rnd.randint(1, 6)):
        opcode = rnd.choice(OPCODES) if rnd.random() < 0.5 else rnd.choice((1, 2, 9))
        fin = rnd.random() < 0.8
        rsv = rnd.choice((0,) * 8 + (4, 2, 1))
        kind = rnd.random()
        if opcode == 8:
            payload = b"" if kind < 0.2 else (rnd.choice(CLOSE_CODES).to_bytes(2, "big")
                                              + "bye ✓".encode("utf-8")[:rnd.randint(0, 7)])
        elif kind < 0.4:
            payload = "héllo ✓ 😀".encode("utf-8")[:rnd.randint(0, 16)]
        elif kind < 0.7:
            payload = bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 40)))
            payload = payload.decode("utf-8", "replace").encode("utf-8")
        else:
            payload = b"x" * rnd.choice((0, 1, 125, 126, 300))
        frames.append((opcode, payload, fin, rsv))
    return frames


def _register(seed: int) -> None:
    @scenario("z_fuzz_%04d" % seed, variants=("current",), doc="random frames, seed %d" % seed)
    async def _(ctx):
        rnd = random.Random(seed)
        params = {"half": "1"} if rnd.random() < 0.3 else {}
        peer = await ctx.connect("echo", **params)
        for opcode, payload, fin, rsv in frames_for(rnd):
            await peer.send_frame(opcode, payload, fin=fin, rsv=rsv)
            if peer.eof:
                break
        if rnd.random() < 0.5:
            await peer.close(1000, "end")
        await peer.recv(until_close=True, timeout=1.0)
        await peer.expect_eof(1.0)


APP_CODES = ("1000", "1000:bye", "3000:x", "4999:" + "é" * 61, "4000:" + "y" * 124, "1001",
             "999", "1005", "1006:z", "5000", "none")
PEER_CODES = (1000, 1001, 3000, 4000, 4999, None)


def _register_app(seed: int) -> None:
    rnd = random.Random("app-%d" % seed)
    variant = rnd.choice(("current", "legacy", "manual_reply", "pre_autoreply"))

    @scenario("z_app_%04d" % seed, variants=(variant,), doc="random app knobs, seed %d" % seed)
    async def _(ctx):
        knobs = random.Random("knobs-%d" % seed)
        params = {}
        if knobs.random() < 0.4:
            params["half"] = knobs.choice(("1", "0"))
        if knobs.random() < 0.3:
            params["closeOnMessage"] = knobs.choice(APP_CODES)
        if knobs.random() < 0.4:
            params["closeInHandler"] = knobs.choice(APP_CODES)
        if knobs.random() < 0.3:
            params["closeLater"] = "300;" + knobs.choice(APP_CODES)
            if knobs.random() < 0.5:
                params["sendLater"] = "later"
        if knobs.random() < 0.3:
            params["sendInHandler"] = "in handler"
        if knobs.random() < 0.2:
            params["greet"] = "hello"
        if knobs.random() < 0.3:
            params["bt"] = knobs.choice(("blob", "arraybuffer", "nonsense"))
        peer = await ctx.connect("echo", **params)
        for _ in range(knobs.randint(0, 3)):
            kind = knobs.random()
            if kind < 0.4:
                await peer.text("héllo %d" % knobs.randrange(100))
            elif kind < 0.8:
                await peer.binary(bytes(knobs.randrange(256) for _ in range(knobs.randint(0, 8))))
            else:
                await peer.ping(b"p")
            await peer.recv(timeout=0.3)
        code = knobs.choice(PEER_CODES)
        if knobs.random() < 0.8:
            await peer.close(code, "peer" if code else b"")
        await peer.recv(until_close=True, timeout=1.5)
        await peer.expect_eof(1.5)


def _deflated(data: bytes) -> bytes:
    """``data`` as one permessage-deflate message body (RFC 7692 §7.2.1), with its own
    compressor (so without context takeover from the peer's point of view: kj and
    cfws_sync both accept a fresh stream per message when the window allows)."""
    compressor = zlib.compressobj(wbits=-15)
    body = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return body[:-4]


def _register_deflate(seed: int) -> None:
    @scenario("z_deflate_%04d" % seed, variants=("current",),
              doc="random frames under permessage-deflate, seed %d" % seed)
    async def _(ctx):
        rnd = random.Random("deflate-%d" % seed)
        offer = rnd.choice(("permessage-deflate", "permessage-deflate; client_no_context_takeover",
                            "permessage-deflate; client_max_window_bits"))
        peer = await ctx.connect("echo", headers={"Sec-WebSocket-Extensions": offer})
        for _ in range(rnd.randint(1, 5)):
            kind = rnd.random()
            opcode = rnd.choice((1, 2))
            text = "héllo ✓ %d " % rnd.randrange(1000) * rnd.randint(1, 30)
            if kind < 0.35:
                body = _deflated(text.encode("utf-8"))
                if rnd.random() < 0.5:  # in two fragments, maybe with a control frame between
                    cut = rnd.randint(0, len(body))
                    await peer.send_frame(opcode, body[:cut], fin=False, rsv=4)
                    if rnd.random() < 0.5:
                        await peer.send_frame(rnd.choice((9, 10)), b"c")
                    await peer.send_frame(0, body[cut:])
                else:
                    await peer.send_frame(opcode, body, rsv=4)
            elif kind < 0.6:
                await peer.send_frame(opcode, text.encode("utf-8"))  # not compressed
            elif kind < 0.7:
                body = bytearray(_deflated(text.encode("utf-8")))
                if body:
                    body[rnd.randrange(len(body))] ^= 1 << rnd.randrange(8)
                await peer.send_frame(opcode, bytes(body), rsv=4)  # damaged
            elif kind < 0.8:
                await peer.send_frame(rnd.choice((0, 8, 9, 10)), b"\x03\xe8",
                                      rsv=rnd.choice((4, 0)), fin=rnd.random() < 0.8)
            else:
                await peer.ping(b"p")
            if peer.eof:
                break
            await peer.recv(timeout=0.3)
        if rnd.random() < 0.7:
            await peer.close(1000, "end")
        await peer.recv(until_close=True, timeout=1.0)
        await peer.expect_eof(1.0)


_FIRST = int(os.environ.get("FUZZ_FIRST", "0"))
for _seed in range(_FIRST, _FIRST + int(os.environ.get("FUZZ_SEEDS", "150"))):
    _register(_seed)
    _register_app(_seed)
    _register_deflate(_seed)
