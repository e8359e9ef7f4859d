"""Fidelity checks against Cloudflare's runtime.

``worker_app`` ports the differential oracle's Worker (``shared/oracle/workers/worker.js``)
to cfws_sync; ``oracle_target`` serves it to the oracle's scenarios, and ``test_oracle``
compares each resulting trace with the one recorded on workerd, after ``normalise`` has
removed the documented deliberate differences (SPEC §8, see ``NORMALISE.rst``).
"""
