"""Sessions: reservations of a worker that count as load until they end.

A session is opened by a signed ``POST /session/create`` and lives ``lifetime``
seconds past its last use. Requests that name its ``session_id`` ride it and push
its expiration to ``now + lifetime`` (a sliding window: never more than one
lifetime ahead). Ending it (``/session/end``, expiry, ``/release`` on the null
worker, or shutdown) cancels its in-flight requests, books it as a success, and
POSTs ``on_close_payload`` plus ``session_id`` to ``on_close_route`` in the
background with bounded retries, through ``vespid.worker.callbacks`` (public addresses
only unless the operator allows a host, never the worker's own ports, no redirects).

Session ids come from ``secrets``; ``session_auth`` is compared in constant time.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import orjson

from vespid.errors import Overloaded, RequestInvalid, SessionGone, Unauthorized
from vespid.protocol.wire import AuthData
from vespid.worker.books import Books, Ticket
from vespid.worker.callbacks import (
    CallbackRefused,
    CallbackRoutes,
    check_route_syntax,
    own_addresses,
)
from vespid.worker.settings import WorkerSettings

__all__ = ["Session", "SessionManager", "parse_session_ref"]

log = logging.getLogger("vespid.worker")

CHECK_EVERY_S: Final = 1.0
CALLBACK_ATTEMPTS: Final = 5
CALLBACK_TIMEOUT_S: Final = 10.0
MAX_NESTING: Final = 254  # the deepest JSON orjson writes


def _canonical(auth: Any, what: str = "auth_data") -> bytes:
    """Key-sorted JSON of an auth_data; RequestInvalid (422) for one nested too deep
    to write (over 254 levels: no router signs such a thing)."""
    try:
        return orjson.dumps(auth, option=orjson.OPT_SORT_KEYS)
    except TypeError:
        raise RequestInvalid(
            f"{what} is nested too deep (more than {MAX_NESTING} levels)",
            fields={what: "nested too deep"},
        ) from None


@dataclass(eq=False)
class Session:
    """One open session."""

    session_id: str
    auth_key: bytes  # canonical JSON of the auth_data that opened it
    auth_data: dict[str, Any]
    lifetime_s: float
    expiration: float
    ticket: Ticket
    on_close_route: str | None = None
    on_close_payload: dict[str, Any] | None = None
    created_at: float = field(default_factory=time.time)
    requests: set[asyncio.Task[Any]] = field(default_factory=set)

    def owns(self, auth: AuthData) -> bool:
        """Whether ``auth`` is the auth_data this session was opened with (constant time)."""
        try:
            key = _canonical(auth.raw)
        except RequestInvalid:
            return False  # too deep to have opened a session
        return hmac.compare_digest(key, self.auth_key)

    def describe(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "auth_data": self.auth_data,
            "lifetime": self.lifetime_s,
            "expiration": self.expiration,
            "created_at": self.created_at,
            "on_close_route": self.on_close_route,
            "on_close_payload": self.on_close_payload,
            "requests_in_flight": len(self.requests),
        }


def parse_session_ref(body: bytes) -> tuple[str, Any]:
    """``{"session_id", "session_auth"}`` of /session/get, /health and /end."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise RequestInvalid(
            'body is not valid JSON; send {"session_id": "...", "session_auth": {...}}'
        ) from None
    if not isinstance(data, dict):
        raise RequestInvalid('body must be {"session_id": "...", "session_auth": {...}}')
    problems: dict[str, str] = {}
    if not isinstance(data.get("session_id"), str):
        problems["session_id"] = "expected a string"
    if "session_auth" not in data:
        problems["session_auth"] = "missing (the auth_data the session was created with)"
    if problems:
        raise RequestInvalid.listing("session reference", problems)
    return data["session_id"], data["session_auth"]


class SessionManager:
    """Open sessions, their expiry, and on-close callbacks. Event-loop only."""

    def __init__(self, settings: WorkerSettings, books: Books) -> None:
        self.settings = settings
        self.books = books
        self.sessions: dict[str, Session] = {}
        self._callbacks: set[asyncio.Task[None]] = set()
        self._http: aiohttp.ClientSession | None = None
        # Where callbacks may go; serve.py adds the ports the worker listens on.
        self.routes = CallbackRoutes(
            settings.on_close_hosts, own_addresses(settings.host, settings.public_ipaddr)
        )
        self.callbacks_delivered = 0
        self.callbacks_failed = 0

    @property
    def limit(self) -> int | None:
        return self.settings.session_limit

    # -- opening -------------------------------------------------------------

    def _check_payload(self, payload: Any) -> tuple[float, str | None, dict[str, Any] | None]:
        s = self.settings
        if not isinstance(payload, dict):
            raise RequestInvalid(
                'payload must be {"lifetime": seconds, "on_close_route"?: url, '
                '"on_close_payload"?: {...}}',
                fields={"payload": "expected an object"},
            )
        lifetime = payload.get("lifetime", 600)
        if not isinstance(lifetime, int | float) or isinstance(lifetime, bool) or lifetime <= 0:
            raise RequestInvalid(
                "payload.lifetime must be a number of seconds > 0",
                fields={"payload.lifetime": "expected a positive number"},
            )
        if lifetime > s.max_session_lifetime_s:
            raise RequestInvalid(
                f"payload.lifetime {lifetime:g} s exceeds the cap of "
                f"{s.max_session_lifetime_s:g} s (VESPID_MAX_SESSION_LIFETIME_S)",
                fields={"payload.lifetime": f"at most {s.max_session_lifetime_s:g}"},
            )
        route = payload.get("on_close_route")
        if route is not None:
            self.routes.check_route(route)
        close_payload = payload.get("on_close_payload")
        if close_payload is not None:
            if not isinstance(close_payload, dict):
                raise RequestInvalid(
                    "payload.on_close_payload must be a JSON object",
                    fields={"payload.on_close_payload": "expected an object"},
                )
            size = len(_canonical(close_payload, "payload.on_close_payload"))
            if size > s.max_on_close_payload_bytes:
                raise RequestInvalid(
                    f"payload.on_close_payload is {size} bytes; the limit is "
                    f"{s.max_on_close_payload_bytes} (VESPID_MAX_ON_CLOSE_PAYLOAD_BYTES)",
                    fields={"payload.on_close_payload": "too large"},
                )
        return float(lifetime), route, close_payload

    def create(self, auth: AuthData, payload: Any) -> Session:
        """Open a session for a verified request; Overloaded (429) at the cap."""
        lifetime, route, close_payload = self._check_payload(payload)
        if self.limit is not None and len(self.sessions) >= self.limit:
            raise Overloaded(
                f"this worker already holds {len(self.sessions)} session(s) "
                f"(MAX_SESSIONS={self.limit}); try another worker",
                max_sessions=self.limit,
            )
        session_id = secrets.token_urlsafe(24)
        ticket = self.books.receive(auth.request_idx, auth.cost, is_session=True)
        session = Session(
            session_id=session_id,
            auth_key=_canonical(auth.raw),
            auth_data=auth.raw,
            lifetime_s=lifetime,
            expiration=time.time() + lifetime,
            ticket=ticket,
            on_close_route=route,
            on_close_payload=close_payload,
        )
        self.sessions[session_id] = session
        log.info(
            "session opened", extra={"fields": {"session_id": session_id, "lifetime": lifetime}}
        )
        return session

    # -- using ---------------------------------------------------------------

    def lookup(self, session_id: str) -> Session:
        """The open session named ``session_id``; SessionGone (410) if unknown or closed."""
        session = self.sessions.get(session_id)
        if session is None:
            raise SessionGone(
                f"session {session_id!r} is unknown or closed; open a new one with /session/create"
            )
        return session

    @staticmethod
    def touch(session: Session) -> None:
        """A request rode the session: its expiration moves to now + lifetime."""
        session.expiration = max(session.expiration, time.time() + session.lifetime_s)

    def authorised(self, session_id: str, session_auth: Any) -> Session | None:
        """The session if ``session_auth`` matches; None if unknown; Unauthorized if not."""
        session = self.sessions.get(session_id)
        if session is None:
            return None
        if not hmac.compare_digest(_canonical(session_auth, "session_auth"), session.auth_key):
            raise Unauthorized(
                "session_auth does not match the auth_data this session was opened with"
            )
        return session

    # -- closing -------------------------------------------------------------

    def close(self, session: Session, reason: str) -> None:
        """End a session once: cancel its requests, book it, send its callback."""
        if self.sessions.pop(session.session_id, None) is None:
            return
        for task in list(session.requests):
            task.cancel()
        self.books.finish(session.ticket, 200)
        log.info(
            "session closed", extra={"fields": {"session_id": session.session_id, "reason": reason}}
        )
        if session.on_close_route:
            task = asyncio.create_task(self._deliver(session))
            self._callbacks.add(task)
            task.add_done_callback(self._callbacks.discard)

    def close_all(self, reason: str) -> list[str]:
        ids = list(self.sessions)
        for session_id in ids:
            self.close(self.sessions[session_id], reason)
        return ids

    async def _deliver(self, session: Session) -> None:
        assert session.on_close_route is not None
        body = {**(session.on_close_payload or {}), "session_id": session.session_id}
        if self._http is None:
            self._http = self.routes.client()
        timeout = aiohttp.ClientTimeout(total=CALLBACK_TIMEOUT_S)
        delay_s = 0.2
        route = session.on_close_route
        for attempt in range(1, CALLBACK_ATTEMPTS + 1):
            try:
                host, port = check_route_syntax(route)
                self.routes.check_address(host, port, host)  # an IP literal is not resolved
                async with self._http.post(
                    route, json=body, timeout=timeout, allow_redirects=False
                ) as r:
                    await r.read()
                    if r.status < 500:
                        self.callbacks_delivered += 1
                        if r.status >= 300:
                            log.warning("on_close_route answered %d; not retried, no redirect "
                                        "followed", r.status)  # fmt: skip
                        return
                    problem = f"answered {r.status}"
            except CallbackRefused as exc:
                self._refused(route, exc)
                return
            except (aiohttp.ClientError, TimeoutError) as exc:
                refused = getattr(exc, "os_error", None)  # a ClientConnectorError's cause
                if isinstance(refused, CallbackRefused):
                    self._refused(route, refused)
                    return
                problem = str(exc) or type(exc).__name__
            log.warning(
                "on-close callback to %s failed (%s), attempt %d of %d",
                session.on_close_route, problem, attempt, CALLBACK_ATTEMPTS,
            )  # fmt: skip
            if attempt < CALLBACK_ATTEMPTS:
                await asyncio.sleep(delay_s)
                delay_s *= 2
        self.callbacks_failed += 1

    def _refused(self, route: str, exc: BaseException) -> None:
        self.callbacks_failed += 1
        log.warning("on-close callback to %s not sent: %s", route, exc)

    async def expire_forever(self) -> None:
        """Close expired sessions every second."""
        while True:
            await asyncio.sleep(CHECK_EVERY_S)
            now = time.time()
            for session in [s for s in self.sessions.values() if s.expiration <= now]:
                self.close(session, "expired")

    async def shutdown(self) -> None:
        """Close every session and give pending callbacks a moment to leave."""
        self.close_all("shutdown")
        if self._callbacks:
            _, pending = await asyncio.wait(self._callbacks, timeout=2)
            for task in pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)
        if self._http is not None:
            await self._http.close()
