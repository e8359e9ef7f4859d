"""Test setup.  ``CFWS_GEVENT=1`` runs the whole suite under gevent monkey-patching."""

import os

if os.environ.get("CFWS_GEVENT") == "1":
    from gevent import monkey

    monkey.patch_all()
