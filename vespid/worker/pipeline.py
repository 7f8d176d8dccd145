"""The request pipeline both of the worker's servers share: accept, admit, book, release.

A request that reaches the backend goes through, in order: its checks (the signature,
unless it rides its session with the auth_data that opened it; readiness; its
session, if it names one), then the books (``Books.receive``), admission (a slot, or
429), the backend call, the slot's release, the books again (``Books.finish``, which
counts its metric), and one log line. A request refused before the books is counted
once as ``refused`` and logged with the reason.

``Flight`` is that sequence as an async context manager (a class, not a generator:
this is the hot path), so the aiohttp app (``vespid.worker.app``) and the lean front
(``vespid.worker.front``) keep only their own ways of reading and answering::

    async with Flight(pipeline, method, path, started) as flight:
        session = await flight.accept(auth, session_id)
        await flight.admit(workload)
        status, outcome = await relay(...)
        flight.done(status, outcome)

An ``HTTPFacingError`` raised in the block is booked (or counted as refused) and
left to the caller to answer; a cancelled request (its client went away) is booked
as 499, cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final

from vespid.errors import HTTPFacingError, NotFound
from vespid.protocol.wire import AuthData, parse_auth_data, parse_unsecured_auth_data
from vespid.worker.admission import Admission
from vespid.worker.books import Books, Outcome, Ticket
from vespid.worker.lifecycle import Lifecycle, WorkerState
from vespid.worker.metrics import WorkerMetrics
from vespid.worker.router_key import RouterKey
from vespid.worker.sessions import Session, SessionManager
from vespid.worker.settings import WorkerSettings

__all__ = ["Flight", "Pipeline", "log_request"]

req_log = logging.getLogger("vespid.request")

REFUSED: Final = "refused"  # the outcome logged and counted for a request refused at its checks
_CANCELLED: Final = Outcome.CANCELLED  # read per request: an enum member costs a lookup
_READY: Final = WorkerState.READY


def log_request(
    method: str,
    target: str,
    status: int,
    outcome: str,
    auth: AuthData | None,
    started: float,
    error: str | None,
) -> None:
    """One ``vespid.request`` log line (built only when it is logged)."""
    if not req_log.isEnabledFor(logging.INFO):
        return
    fields: dict[str, object] = {
        "method": method,
        "path": target.partition("?")[0],
        "status": status,
        "outcome": outcome,
        "ms": round((time.monotonic() - started) * 1000, 2),
    }
    if auth is not None:
        fields["request_idx"] = auth.request_idx
        fields["cost"] = auth.cost
    if error is not None:
        fields["error"] = error
    req_log.info("request", extra={"fields": fields})


class Pipeline:
    """The checks, books and slots every request passes, whichever server took it."""

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        router_key: RouterKey,
        lifecycle: Lifecycle,
        admission: Admission,
        books: Books,
        sessions: SessionManager,
        metrics: WorkerMetrics,
    ) -> None:
        self.router_key = router_key
        self.lifecycle = lifecycle
        self.admission = admission
        self.books = books
        self.sessions = sessions
        self.metrics = metrics
        self._verifier = router_key.verifier
        # The RSA key may still be on its way only when it is fetched from REPORT_ADDR.
        self._key_may_come = bool(settings.report_addr)
        self._ready_wait_s = settings.ready_wait_s
        self.null = settings.backend == "null"
        # How a request's auth_data is read: all fields required, unless UNSECURED.
        self.parse_auth: Callable[[Any], AuthData] = (
            parse_unsecured_auth_data if settings.unsecured else parse_auth_data
        )

    async def check(self, auth: AuthData, *, presented_by_session: bool = False) -> None:
        """Verify the signature (unless the auth_data is its session's own), then wait
        until ready; raises HTTPFacingError when refused."""
        verifier = self._verifier
        if verifier is not None and not presented_by_session:
            if self._key_may_come and verifier.needs_public_key(auth):
                await self.router_key.wait_loaded(self._ready_wait_s)
            verifier.verify(auth)
        lifecycle = self.lifecycle
        if lifecycle.state is not _READY:
            await lifecycle.wait_ready()
        self.admission.max_perf = lifecycle.max_perf


class Flight:
    """One request from its checks to its log line; see the module docstring."""

    __slots__ = (
        "_entered",
        "_label",
        "_pipeline",
        "auth",
        "method",
        "outcome",
        "session",
        "started",
        "status",
        "target",
        "ticket",
    )

    def __init__(self, pipeline: Pipeline, method: str, target: str, started: float) -> None:
        self._pipeline = pipeline
        self.method = method
        self.target = target  # the path, with or without its query (logged without)
        self.started = started
        self.auth: AuthData | None = None
        self.session: Session | None = None
        self.ticket: Ticket | None = None
        self._entered = False
        self._label: str | None = None  # set when answered without the backend
        self.status = 499  # until told otherwise: the client went away
        self.outcome: Outcome | None = _CANCELLED

    async def __aenter__(self) -> Flight:
        return self

    async def accept(self, auth: AuthData, session_id: str | None) -> Session | None:
        """Check a parsed request and find the session it rides, if any; raises
        HTTPFacingError when it is refused."""
        pipeline = self._pipeline
        if session_id is None:
            await pipeline.check(auth)
            if pipeline.null:
                raise NotFound(
                    "this is a null worker: it has no model server; open a session with "
                    "/session/create, then send requests with its session_id"
                )
            self.auth = auth
            return None
        # A request may ride its session with the auth_data that opened it (already
        # verified, then; its signature would otherwise count as a replay) or with a
        # freshly signed one.
        session = pipeline.sessions.lookup(session_id)
        await pipeline.check(auth, presented_by_session=session.owns(auth))
        pipeline.sessions.touch(session)
        self.auth = auth
        self.session = session
        return session

    async def admit(self, workload: float) -> None:
        """Book the request, then wait for a backend slot (Overloaded: 429)."""
        pipeline = self._pipeline
        auth, session = self.auth, self.session
        assert auth is not None, "admit() follows accept()"
        self.ticket = ticket = pipeline.books.receive(
            auth.request_idx, workload, is_session=session is not None
        )
        if session is not None:
            task = asyncio.current_task()
            if task is not None:
                session.requests.add(task)  # ending the session cancels it
        await pipeline.admission.enter(ticket)
        self._entered = True

    def done(self, status: int, outcome: Outcome | None = None) -> None:
        """The backend's answer was relayed with ``status``; ``outcome`` when not by status."""
        self.status = status
        self.outcome = outcome

    def answered(self, status: int, label: str, auth: AuthData | None = None) -> None:
        """Answered by the worker itself, with nothing booked (a session's own routes)."""
        self.status = status
        self._label = label
        if auth is not None:
            self.auth = auth

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        pipeline = self._pipeline
        ticket = self.ticket
        if ticket is None:
            if isinstance(exc, HTTPFacingError):
                pipeline.metrics.count_request(exc.status_code, REFUSED)
                log_request(
                    self.method, self.target, exc.status_code, REFUSED, None, self.started,
                    exc.message,
                )  # fmt: skip
            elif self._label is not None and exc is None:
                log_request(
                    self.method, self.target, self.status, self._label, self.auth, self.started,
                    None,
                )  # fmt: skip
            return
        if self._entered:
            pipeline.admission.leave(ticket)
        if isinstance(exc, HTTPFacingError):
            self.status, self.outcome = exc.status_code, None
        session = self.session
        if session is not None:
            task = asyncio.current_task()
            if task is not None:
                session.requests.discard(task)
        recorded = pipeline.books.finish(ticket, self.status, self.outcome)
        log_request(
            self.method, self.target, self.status, recorded.value, self.auth, self.started, None
        )
