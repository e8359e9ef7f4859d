"""Oracle scenarios beyond the shared set: the app's calls once the connection ended
without its Close.

Loaded by the oracle's runner beside its own scenarios (``tests/compat/test_oracle.py``
copies this file into its copy of the oracle).  The traces next to this file were
recorded on workerd with these scenarios: npm ``workerd`` 1.20261117.1 (``workerd
2026-11-17``, the version of the shared traces), ``WORKERD=... ./run_oracle.sh -k a_end_``.
What they show: after a drop (H1) or a protocol failure (M5), ``send()`` and ``close()``
do not throw (workerd's outgoing side is still open; nothing reaches the peer); and a
half-open socket (B6) whose peer sends its FIN after its Close stays open (workerd has
stopped reading, B9), which cfws_sync does not do (README difference 16).
"""

from harness.runner import scenario  # the oracle's own


@scenario("a_end_drop_then_send_and_close", variants=("current", "legacy"),
          doc="Peer FINs without a Close; the close handler sends, then closes 1000.")
async def _(ctx):
    p = await ctx.connect("echo", sendInHandler="in handler", closeInHandler="1000:bye")
    await p.text("hi")
    await p.recv(timeout=1)
    await p.drop("half")
    await p.expect_eof(1.5)


@scenario("a_end_failure_then_send", variants=("current",),
          doc="A protocol error; the error handler sends.")
async def _(ctx):
    p = await ctx.connect("echo", sendAfter="1")
    await p.send_frame(3, b"x")
    await p.recv(until_close=True, timeout=1)
    await p.expect_eof(1.0)


@scenario("a_end_half_open_then_fin", variants=("current",),
          doc="Half-open: the peer's Close, then its FIN; the close handler sends.")
async def _(ctx):
    p = await ctx.connect("echo", half="1", sendInHandler="in handler")
    await p.close(1000, "peer")
    await p.drop("half")
    await p.expect_eof(1.5)
