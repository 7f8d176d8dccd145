"""Load tests of an endpoint through its control plane: the engine of ``vespid loadtest``.

- ``payloads``: what each request sends (a file, cycled, or generated per API).
- ``runner``: N requests at a rate or a concurrency, bounded in count and time.
- ``sessions``: the session demo: open sessions one by one, hold, close one by one.
- ``workers``: the endpoint's workers over time, from ``GET /api/v0/status``.
- ``report``, ``plot``, ``display``: the closing report (text, JSON), its charts
  (SVG or HTML), and the live view.

``load_test`` and ``session_test`` tie them together (see docs/loadtest.md).
"""

from __future__ import annotations

from vespid.loadtest.payloads import (
    APIS,
    CycledPayloads,
    GeneratedPayloads,
    Payload,
    PayloadSource,
    load_payload_file,
)
from vespid.loadtest.report import render_text, request_report, session_report
from vespid.loadtest.run import load_test, save_outputs, session_test
from vespid.loadtest.runner import LoadPlan, RequestRecord, RequestRun
from vespid.loadtest.sessions import SessionPlan, SessionRecord, SessionRun

__all__ = [
    "APIS",
    "CycledPayloads",
    "GeneratedPayloads",
    "LoadPlan",
    "Payload",
    "PayloadSource",
    "RequestRecord",
    "RequestRun",
    "SessionPlan",
    "SessionRecord",
    "SessionRun",
    "load_payload_file",
    "load_test",
    "render_text",
    "request_report",
    "save_outputs",
    "session_report",
    "session_test",
]
