"""Dispatch: from an endpoint's request to a worker's answer, within the client's bounds.

A request goes ``POST {base_url}/route/`` (the endpoint's key as Bearer header,
``?api_key=`` and in the body) until the answer carries a worker ``url``, polling
with the protocol's backoff while it is queued; then ``POST {url}{path}`` with
``{"auth_data": <the whole route answer>, "session_id": null, "payload": ...}``.
If that worker refuses the connection, vanishes, or answers 408, 429 or 5xx, the
request is routed afresh, at most ``max_attempts`` times and never past
``timeout_s``. A router that fails (unreachable, 408, 5xx) is asked again after a
pause, at most ``MAX_ROUTER_FAILURES`` times in a row, except that a router which
answered this client before and is now unreachable (a control plane restarting) is
asked again until ``timeout_s``. A session's requests are pinned to its worker instead: one
attempt, never re-routed. The endpoint's API key goes to the control plane only,
never to a worker. See docs/client.md.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from typing import Any, Final

from vespid.client.errors import ControlPlaneError, RequestTimeout, RouteRefused
from vespid.client.response import Response
from vespid.client.retry import Deadline, describe_body, poll_delay_s
from vespid.client.transport import ControlFailed, Failed, Transport, worker_path
from vespid.protocol.wire import ROUTE_PATH

__all__ = ["MAX_ROUTER_FAILURES", "Dispatcher", "Target"]

log = logging.getLogger("vespid.client")

# Router failures in a row (unreachable, 5xx) before a request gives up on it.
MAX_ROUTER_FAILURES: Final = 3


@dataclass(frozen=True, slots=True)
class Target:
    """What a route is asked for: the endpoint's name and the key that routes it."""

    name: str
    api_key: str = field(repr=False)


class Dispatcher:
    """Routes requests through ``base_url`` and sends them to workers over ``transport``;
    ``rng`` draws the pauses between tries."""

    def __init__(self, transport: Transport, base_url: str, rng: random.Random) -> None:
        self.base_url = base_url
        self.limits = transport.limits
        self._transport = transport
        self._rng = rng
        self._router_answered = False  # a router that answered once may be restarting

    async def request(
        self,
        target: Target,
        path: str,
        payload: Any,
        *,
        cost: float,
        stream: bool,
        timeout_s: float | None,
        max_attempts: int | None,
    ) -> Response:
        """Route, send, and re-route on a retryable failure, within both bounds."""
        deadline = Deadline(timeout_s or self.limits.timeout_s)
        limit = max_attempts or self.limits.max_attempts
        path = worker_path(path)
        attempt = 1
        while True:
            auth = await self._route(target, cost, deadline)
            envelope = {"auth_data": auth, "session_id": None, "payload": payload}
            outcome = await self._transport.post(
                auth["url"],
                path,
                envelope,
                auth_data=auth,
                stream=stream,
                deadline=deadline,
                attempts=attempt,
            )
            if isinstance(outcome, Response):
                return outcome
            if not outcome.retryable or attempt >= limit:
                raise outcome.error(path, attempt)
            log.info(
                "re-routing",
                extra={
                    "fields": {"url": outcome.url, "problem": outcome.problem, "attempt": attempt}
                },
            )
            await self._pause(attempt - 1, deadline, f"worker {outcome.url}: {outcome.problem}")
            attempt += 1

    async def pinned(
        self,
        worker_url: str,
        path: str,
        envelope: dict[str, Any],
        *,
        auth_data: dict[str, Any],
        stream: bool = False,
        timeout_s: float | None = None,
    ) -> Response | Failed:
        """One attempt at one worker (a session's), never re-routed; ``timeout_s``
        defaults to the client's."""
        return await self._transport.post(
            worker_url,
            path,
            envelope,
            auth_data=auth_data,
            stream=stream,
            deadline=Deadline(timeout_s or self.limits.timeout_s),
            attempts=1,
        )

    # -- the router ---------------------------------------------------------------

    async def _route(self, target: Target, cost: float, deadline: Deadline) -> dict[str, Any]:
        """Ask ``/route/`` until a worker is assigned; the answer is the auth_data."""
        request_idx, polls, failures = 0, 0, 0
        while True:
            try:
                answer = await self._route_once(target, cost, request_idx, deadline)
            except ControlFailed as exc:
                failures += 1
                restarting = self._router_answered and exc.status is None
                if failures >= MAX_ROUTER_FAILURES and not restarting:
                    raise ControlPlaneError(
                        f"the router failed {failures} times in a row (last: {exc}); check "
                        "that the control plane is up at --url / VESPID_URL",
                        status=exc.status,
                        body=exc.body,
                    ) from None
                await self._pause(failures - 1, deadline, f"the router failing ({exc})")
                continue
            failures, self._router_answered = 0, True
            url = answer.get("url")
            if isinstance(url, str) and url:
                return _without_key(answer, target.api_key)
            idx = answer.get("request_idx")
            if isinstance(idx, int) and not isinstance(idx, bool) and idx:
                request_idx = idx
            waiting = answer.get("status") or "queued"
            await self._pause(polls, deadline, f"no worker yet (router: {waiting})")
            polls += 1

    async def _route_once(
        self, target: Target, cost: float, request_idx: int, deadline: Deadline
    ) -> dict[str, Any]:
        key = target.api_key
        status, body = await self._transport.control(
            "POST",
            self.base_url + ROUTE_PATH,
            key,
            params={"api_key": key},
            body={
                "endpoint": target.name,
                "api_key": key,
                "cost": cost,
                "request_idx": request_idx,
                "replay_timeout": deadline.timeout_s,
            },
            deadline=deadline,
        )
        if 200 <= status < 300 and isinstance(body, dict):
            return body
        if 400 <= status < 500:
            raise _refused(target.name, status, body)
        raise ControlPlaneError(
            f"the router answered {status} with {describe_body(body)!r}, not a JSON object; "
            "is --url a vespid or Vast control plane?",
            status=status,
            body=body,
        )

    async def _pause(self, attempt: int, deadline: Deadline, waiting_for: str) -> None:
        """Back off before asking again; RequestTimeout if that would pass the deadline."""
        delay_s = poll_delay_s(attempt, self.limits.max_poll_interval_s, self._rng)
        if delay_s >= deadline.remaining_s():
            raise RequestTimeout(
                f"gave up after {deadline.elapsed_s():.1f} s (timeout_s="
                f"{deadline.timeout_s:g}): {waiting_for}; raise the timeout or retry later",
                timeout_s=deadline.timeout_s,
            )
        await asyncio.sleep(delay_s)


def _refused(name: str, status: int, body: Any) -> RouteRefused:
    detail = describe_body(body)
    if status in (401, 403):
        message = (
            f"the router refused the API key for endpoint {name!r} ({status}: {detail}); "
            "check --api-key / VESPID_API_KEY, or the endpoint's own key"
        )
    elif status == 404:
        message = (
            f"the router does not know endpoint {name!r} ({detail}); check the name "
            "against the endpoint listing"
        )
    elif status == 429:
        message = (
            f"the router's queue for endpoint {name!r} is full ({detail}); retry later "
            "or give the endpoint more workers"
        )
    else:
        message = f"the router refused the request with {status}: {detail}"
    return RouteRefused(message, status=status, body=body)


def _without_key(answer: dict[str, Any], api_key: str) -> dict[str, Any]:
    """The route answer minus any field holding the API key: it must not reach a worker."""
    leaked = [k for k, v in answer.items() if v == api_key]
    if not leaked:
        return answer
    log.warning("the router's answer carried the API key in %s; dropped before the worker", leaked)
    return {k: v for k, v in answer.items() if k not in leaked}
