"""Oracle scenarios beyond the shared set: frames with several faults, and the
compression bit on control frames, without permessage-deflate.

Loaded by the oracle's runner beside its own scenarios (``tests/compat/test_oracle.py``
copies this file into its copy of the oracle).  The traces next to this file were
recorded on workerd with these scenarios: npm ``workerd`` 1.20261117.1 (``workerd
2026-11-17``, the version of the shared traces), ``WORKERD=... ./run_oracle.sh -k f_``.
What they show: kj words a frame with several faults by the first it checks (RSV2/3,
then the fragmentation, then RSV1, then the opcode), and reads a ping or pong that
carries the compression bit (a Close that carries it fails).
"""

from harness.runner import scenario  # the oracle's own


def _one_frame(name, doc, *frames):
    @scenario(name, variants=("current",), doc=doc)
    async def _(ctx):
        p = await ctx.connect("echo")
        for opcode, payload, fin, rsv in frames:
            await p.send_frame(opcode, payload, fin=fin, rsv=rsv)
        await p.recv(until_close=True, timeout=1.0)
        await p.expect_eof(1.0)


_one_frame("f_op11_rsv2", "Reserved control opcode 11 with RSV2.", (11, b"x", True, 2))
_one_frame("f_op11_fragmented_rsv1", "Opcode 11, not final, with RSV1.", (11, b"x", False, 4))
_one_frame("f_op11_rsv1", "Opcode 11, final, with RSV1.", (11, b"x", True, 4))
_one_frame("f_op3_inside_a_message", "Opcode 3 while a fragmented text is open.",
           (1, b"a", False, 0), (3, b"b", True, 0))
_one_frame("f_cont_rsv1_unexpected", "A continuation with RSV1 and no message open.",
           (0, b"", True, 4))
_one_frame("f_close_rsv1", "A Close 1000 with RSV1.", (8, b"\x03\xe8bye", True, 4))
_one_frame("f_ping_rsv1", "A ping with RSV1.", (9, b"flagged", True, 4))


@scenario("f_pong_rsv1_then_text", variants=("current",), doc="A pong with RSV1, then a text.")
async def _(ctx):
    p = await ctx.connect("echo")
    await p.send_frame(10, b"flagged", rsv=4)
    await p.text("after")
    await p.recv(timeout=1)
    await p.close(1000)
    await p.recv(until_close=True, timeout=1)
    await p.expect_eof(1.0)
