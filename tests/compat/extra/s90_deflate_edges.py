"""Oracle scenarios beyond the shared set: permessage-deflate's edges.

Loaded by the oracle's runner beside its own scenarios (``tests/compat/test_oracle.py``
copies this file into its copy of the oracle).  The traces next to this file were
recorded on workerd with these scenarios: npm ``workerd`` 1.20261117.1 (``workerd
2026-11-17``, the version of the shared traces), ``WORKERD=... ./run_oracle.sh -k
n_deflate_``.  What they show: data that does not inflate, and a compressed continuation
frame, fail with 1002 ``Invalid compressed data``; a compression bit on a control frame
is ignored; a control frame in the middle of a compressed message does not disturb it.
"""

import zlib

from harness.runner import scenario  # the oracle's own


OFFER = {"Sec-WebSocket-Extensions": "permessage-deflate"}


def _frames_then_wait(name, doc, *frames):
    """Compression negotiated; send ``frames`` ``(opcode, payload, fin, rsv)``, then read
    until a Close."""
    @scenario(name, variants=("current",), doc=doc)
    async def _(ctx):
        p = await ctx.connect("echo", headers=OFFER)
        for opcode, payload, fin, rsv in frames:
            await p.send_frame(opcode, payload, fin=fin, rsv=rsv)
        await p.recv(until_close=True, timeout=2)


_frames_then_wait(
    "n_deflate_corrupt",
    "Compression negotiated; a text frame with RSV1 whose payload is not deflate data.",
    (1, b"\xff\xff\xff\xff\xfe\xfd garbage", True, 4))
_frames_then_wait(
    "n_deflate_rsv1_continuation", "Compression negotiated; RSV1 set on a continuation frame.",
    (1, b"abc", False, 0), (0, b"def", True, 4))
_frames_then_wait(
    "n_deflate_rsv1_ping", "Compression negotiated; RSV1 set on a ping.", (9, b"hi", True, 4))
_frames_then_wait(
    "n_deflate_rsv1_close", "Compression negotiated; RSV1 set on a Close 1000.",
    (8, b"\x03\xe8bye", True, 4))


@scenario("n_deflate_rsv1_pong_then_text", variants=("current",),
          doc="Compression negotiated; RSV1 set on a pong, then a plain text.")
async def _(ctx):
    p = await ctx.connect("echo", headers=OFFER)
    await p.send_frame(10, b"hi", rsv=4)
    await p.text("after")
    await p.recv(timeout=1)
    await p.close(1000)
    await p.recv(until_close=True, timeout=2)


@scenario("n_deflate_rsv1_ping_long", variants=("current",),
          doc="Compression negotiated; RSV1 set on a ping with 20 bytes, then a plain text.")
async def _(ctx):
    p = await ctx.connect("echo", headers=OFFER)
    await p.send_frame(9, b"0123456789abcdefghij", rsv=4)
    await p.recv(timeout=1)
    await p.text("after")
    await p.recv(timeout=1)
    await p.close(1000)
    await p.recv(until_close=True, timeout=2)


@scenario("n_deflate_no_context_corrupt_later", variants=("current",),
          doc="Compression negotiated; a good compressed message, then a corrupt one.")
async def _(ctx):
    p = await ctx.connect("echo", headers=OFFER)
    await p.send_compressed(1, b"hello hello hello")
    await p.recv(timeout=1)
    await p.send_frame(2, b"\x00\x01\x02\x03", rsv=4)
    await p.recv(until_close=True, timeout=2)


def _deflated(data: bytes) -> bytes:
    """``data`` as one permessage-deflate message body (RFC 7692 §7.2.1)."""
    compressor = zlib.compressobj(wbits=-15)
    body = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(b"\x00\x00\xff\xff")
    return body[:-4]


@scenario("n_deflate_fragmented_with_ping", variants=("current",),
          doc="Compression negotiated; a compressed text in two fragments with a ping between.")
async def _(ctx):
    p = await ctx.connect("echo", headers=OFFER)
    body = _deflated(b"fragmented and compressed, " * 4)
    half = len(body) // 2
    await p.send_frame(1, body[:half], fin=False, rsv=4)
    await p.send_frame(9, b"mid")
    await p.send_frame(0, body[half:])
    await p.recv(timeout=1)
    await p.recv(timeout=1)
    await p.close(1000)
    await p.recv(until_close=True, timeout=2)


@scenario("n_deflate_plain_ping", variants=("current",),
          doc="Compression negotiated; a plain ping, then a plain close.")
async def _(ctx):
    p = await ctx.connect("echo", headers=OFFER)
    await p.send_frame(9, b"hello")
    await p.recv(timeout=1)
    await p.close(1000, "done")
    await p.recv(until_close=True, timeout=2)
