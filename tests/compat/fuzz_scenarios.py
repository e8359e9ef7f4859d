"""Seeded random frame sequences, as oracle scenarios (``z_fuzz_<seed>``).

Not a test module: :mod:`tests.compat.difffuzz` copies it into a private copy of the
oracle, whose runner loads it beside its own scenarios.  ``FUZZ_FIRST`` and
``FUZZ_SEEDS`` (environment) choose the seeds.  Each scenario opens ``/ws/echo``
(half-open or not), sends one to six frames (any opcode, RSV bits, final or not, text
kept valid UTF-8 so that SPEC §8.1 stays out of the way), sometimes a Close, and reads
until the Close and the end of TCP.
"""

import os
import random

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


_FIRST = int(os.environ.get("FUZZ_FIRST", "0"))
for _seed in range(_FIRST, _FIRST + int(os.environ.get("FUZZ_SEEDS", "150"))):
    _register(_seed)
