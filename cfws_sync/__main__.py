"""``python -m cfws_sync``: the ``cfws-sync`` command line (see :mod:`cfws_sync.cli`)."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
