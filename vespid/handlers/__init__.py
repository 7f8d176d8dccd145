"""Custom handlers: typed worker routes that parse, weigh, rewrite and shape requests.

See ``vespid.handlers.base`` for the API, ``vespid.handlers.tgi`` for a built-in one,
and ``vespid.compat.pyworker`` for running PyWorker-style ``EndpointHandler`` modules.
"""

from __future__ import annotations

from vespid.handlers.base import JSON_HEADERS, BackendCall, Handler, relay
from vespid.handlers.loader import check_handlers, load_handlers

__all__ = ["JSON_HEADERS", "BackendCall", "Handler", "check_handlers", "load_handlers", "relay"]
