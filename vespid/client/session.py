"""Sessions: a reservation of one worker, opened through the router, ended on exit.

Opening routes like any request and POSTs ``/session/create`` with
``{"auth_data", "session_id": null, "payload": {"lifetime", "on_close_route"?,
"on_close_payload"?}}``; a worker at its session cap answers 429 and the
session is routed to another worker (bounded like any request). Requests in the
session go to that worker only, with ``session_id`` set and the session's
``auth_data``; they are never re-routed, since no other worker knows the session.
``/session/health`` and ``/session/end`` send ``{"session_id", "session_auth"}``.
Ending is idempotent, and a session the worker no longer knows counts as ended.
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Final

from vespid.client.dispatch import Dispatcher, Target
from vespid.client.errors import ClientError, SessionClosed, WorkerError
from vespid.client.response import Response
from vespid.client.transport import worker_path

__all__ = ["Session"]

log = logging.getLogger("vespid.client")

# Answers to /session/end meaning "already gone": 400 unknown (vespid), 404, 410.
_GONE: Final = frozenset({400, 404, 410})


class Session:
    """One session on ``target``'s endpoint; its fields are set once it is open.

    Made by ``Endpoint.session``, which gives it the dispatcher that opens it and
    pins its requests to its worker.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        target: Target,
        *,
        cost: float,
        lifetime: float,
        on_close_route: str | None,
        on_close_payload: dict[str, Any] | None,
        timeout_s: float | None,
        max_attempts: int | None,
    ) -> None:
        self.target = target
        self.cost = cost
        self.lifetime = lifetime
        self.on_close_route = on_close_route
        self.on_close_payload = on_close_payload
        self._dispatcher = dispatcher
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        self._opened: tuple[str, float, str, dict[str, Any]] | None = None
        self.closed = False

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open" if self._opened else "not opened"
        return f"<Session {self.target.name!r} {state}>"

    # -- what the worker gave us ----------------------------------------------

    def _fields(self) -> tuple[str, float, str, dict[str, Any]]:
        if self._opened is None:
            raise ClientError("the session is not open yet: use `async with endpoint.session()`")
        return self._opened

    @property
    def session_id(self) -> str:
        return self._fields()[0]

    @property
    def expiration(self) -> float:
        """Unix time the worker closes the session unless it is used (as of opening;
        each request pushes it to now + lifetime on the worker)."""
        return self._fields()[1]

    @property
    def url(self) -> str:
        """Base URL of the worker holding the session."""
        return self._fields()[2]

    @property
    def auth_data(self) -> dict[str, Any]:
        """The route answer the session was opened with; it is also the session_auth."""
        return self._fields()[3]

    # -- opening and using ----------------------------------------------------

    async def open(self) -> Session:
        if self._opened is not None:
            return self
        payload: dict[str, Any] = {"lifetime": self.lifetime}
        if self.on_close_route is not None:
            payload["on_close_route"] = self.on_close_route
        if self.on_close_payload is not None:
            payload["on_close_payload"] = self.on_close_payload
        resp = await self._dispatcher.request(
            self.target,
            "/session/create",
            payload,
            cost=self.cost,
            stream=False,
            timeout_s=self._timeout_s,
            max_attempts=self._max_attempts,
        )
        created = await resp.json()
        session_id = created.get("session_id") if isinstance(created, dict) else None
        if not isinstance(session_id, str):
            raise ClientError(
                f"worker {resp.worker_url} answered /session/create without a session_id "
                f"({created!r}); is it a vespid or Vast worker?"
            )
        try:
            expiration = float(created.get("expiration") or 0.0)
        except (TypeError, ValueError):
            expiration = 0.0  # a worker that sends no usable expiration
        self._opened = (
            session_id,
            expiration,
            resp.worker_url,
            resp.auth_data,
        )
        return self

    async def request(
        self, path: str, payload: Any, *, stream: bool = False, timeout_s: float | None = None
    ) -> Response:
        """Send ``payload`` to ``path`` on the session's worker, riding the session."""
        session_id, _, url, auth = self._fields()
        if self.closed:
            raise SessionClosed(
                f"session {session_id} is closed; open a new one",
                status=410,
                body=None,
                url=url,
            )
        path = worker_path(path)
        outcome = await self._dispatcher.pinned(
            url,
            path,
            {"auth_data": auth, "session_id": session_id, "payload": payload},
            auth_data=auth,
            stream=stream,
            timeout_s=timeout_s,
        )
        if isinstance(outcome, Response):
            return outcome
        if outcome.status == 410:
            self.closed = True
            raise SessionClosed(
                f"worker {url} no longer knows session {session_id} (410: {outcome.problem}); "
                "it expired or was ended: open a new session",
                status=410,
                body=outcome.body,
                url=url,
            )
        raise outcome.error(
            path, 1, "A session's requests stay on its worker (not re-routed): open a new session"
        )

    async def _ref(self, route: str) -> Response | None:
        """POST ``{"session_id", "session_auth"}``; None if the worker is gone or
        no longer knows the session."""
        session_id, _, url, auth = self._fields()
        outcome = await self._dispatcher.pinned(
            url,
            route,
            {"session_id": session_id, "session_auth": auth},
            auth_data=auth,
            timeout_s=self._dispatcher.limits.control_timeout_s,
        )
        if isinstance(outcome, Response):
            return outcome
        if outcome.status is None or outcome.status in _GONE:
            log.debug("session %s: %s answered %s", session_id, route, outcome.problem)
            return None
        raise WorkerError(
            f"worker {url} answered {outcome.status} to {route} for session {session_id}: "
            f"{outcome.problem}",
            status=outcome.status,
            body=outcome.body,
            url=url,
        )

    async def health(self) -> bool:
        """Whether the worker still holds the session (False once closed or gone)."""
        if self.closed:
            return False
        resp = await self._ref("/session/health")
        if resp is None:
            return False
        answer = await resp.json()
        return isinstance(answer, dict) and answer.get("ok") is True

    async def close(self) -> None:
        """End the session on its worker; calling it again, or on a gone session, is fine."""
        if self._opened is None or self.closed:
            return
        self.closed = True
        await self._ref("/session/end")

    async def __aenter__(self) -> Session:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            await self.close()
            return
        try:
            await self.close()
        except ClientError as close_error:  # keep the error that ended the block
            log.warning("could not end session %s: %s", self.session_id, close_error)
