"""The client: endpoints from the console API, routes from the router, answers from workers.

A request goes ``POST {base_url}/route/`` (the endpoint's key as Bearer header,
``?api_key=`` and in the body) until the answer carries a worker ``url``, polling
with the protocol's backoff while it is queued; then ``POST {url}{path}`` with
``{"auth_data": <the whole route answer>, "session_id": null, "payload": ...}``.
If that worker refuses the connection, vanishes, or answers 408, 429 or 5xx, the
request is routed afresh, at most ``max_attempts`` times and never past
``timeout_s``. The endpoint's API key goes to the control plane only, never to a
worker. See docs/client.md.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import orjson

from vespid.client.endpoint import Endpoint
from vespid.client.errors import (
    ClientError,
    ControlPlaneError,
    EndpointNotFound,
    RequestTimeout,
    RouteRefused,
    WorkerError,
    WorkerUnavailable,
)
from vespid.client.response import Response
from vespid.client.retry import Deadline, describe_body, is_retryable, poll_delay_s
from vespid.errors import ConfigError
from vespid.protocol.wire import ROUTE_PATH, dumps

__all__ = ["LISTING_PATH", "Client", "Failed"]

log = logging.getLogger("vespid.client")

LISTING_PATH: Final = "/api/v0/endptjobs/"
# Router failures in a row (unreachable, 5xx) before a request gives up on it.
MAX_ROUTER_FAILURES: Final = 3
_JSON_HEADERS: Final = {"Content-Type": "application/json"}


@dataclass(frozen=True, slots=True)
class Failed:
    """One worker attempt that did not give a 2xx answer."""

    url: str
    status: int | None  # None: the worker could not be reached or vanished
    body: Any
    problem: str

    @property
    def retryable(self) -> bool:
        return self.status is None or is_retryable(self.status)

    def error(self, path: str, attempts: int, advice: str | None = None) -> ClientError:
        """The error to raise when this failure is the last one."""
        if self.status is None:
            return WorkerUnavailable(
                f"no worker answered POST {path} in {attempts} attempt(s); last: {self.url}: "
                f"{self.problem}. "
                + (
                    advice
                    or "The endpoint may have no live worker: retry later, or raise max_attempts"
                ),
                url=self.url,
                attempts=attempts,
            )
        tried = f" (gave up after {attempts} attempts)" if attempts > 1 else ""
        return WorkerError(
            f"worker {self.url} answered {self.status} to POST {path}{tried}: {self.problem}"
            + (f". {advice}" if advice else ""),
            status=self.status,
            body=self.body,
            url=self.url,
            attempts=attempts,
        )


def _parse_body(raw: bytes, content_type: str) -> Any:
    """An error body for messages: JSON if it is JSON, else (truncated) text."""
    if "json" in content_type or raw.lstrip()[:1] in (b"{", b"["):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    text = raw[:2000].decode("utf-8", "replace")
    return text if len(raw) <= 2000 else text + "..."


class _RouterFailed(Exception):
    """A transient router failure: unreachable, 408 or 5xx (internal)."""

    def __init__(self, problem: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(problem)
        self.status = status
        self.body = body


class Client:
    """An async client for a vespid (or Vast) control plane; use ``async with``.

    ``base_url`` serves ``/route/`` and, unless ``console_url`` is given, the
    endpoint listing. ``api_key`` lists endpoints (and routes for endpoints whose
    listing entry has no key of its own).
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        console_url: str | None = None,
        timeout_s: float = 600.0,
        max_poll_interval_s: float = 5.0,
        max_attempts: int = 5,
        connect_timeout_s: float = 10.0,
        control_timeout_s: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = _check_url("base_url", base_url)
        self.console_url = _check_url("console_url", console_url or base_url)
        if not api_key:
            raise ConfigError(
                "api_key is empty: pass the account or endpoint API key "
                "(vespid call: --api-key or VESPID_API_KEY)"
            )
        for name, value in (
            ("timeout_s", timeout_s),
            ("max_poll_interval_s", max_poll_interval_s),
            ("connect_timeout_s", connect_timeout_s),
            ("control_timeout_s", control_timeout_s),
        ):
            if not value > 0:
                raise ConfigError(f"{name} must be > 0 seconds (got {value!r})")
        if max_attempts < 1:
            raise ConfigError(f"max_attempts must be at least 1 (got {max_attempts!r})")
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.max_poll_interval_s = max_poll_interval_s
        self.max_attempts = max_attempts
        self.connect_timeout_s = connect_timeout_s
        self.control_timeout_s = control_timeout_s
        self._rng = rng or random.Random()
        self._http: aiohttp.ClientSession | None = None

    def __repr__(self) -> str:
        return f"<Client {self.base_url}>"

    # -- lifecycle -------------------------------------------------------------

    async def __aenter__(self) -> Client:
        if self._http is None or self._http.closed:
            # No cookie jar: a cookie the control plane sets must not travel to workers.
            self._http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    @property
    def http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise ClientError("the client is not open: use `async with Client(...) as client:`")
        return self._http

    # -- endpoints -------------------------------------------------------------

    async def list_endpoints(self) -> list[Endpoint]:
        """Every endpoint the API key can see (``GET /api/v0/endptjobs/``)."""
        url = self.console_url + LISTING_PATH
        deadline = Deadline(self.control_timeout_s)
        try:
            status, body = await self._control(
                "GET", url, self._api_key, params={"client_id": "me"}, deadline=deadline
            )
        except _RouterFailed as exc:
            raise ControlPlaneError(
                f"the endpoint listing at {url} failed ({exc}); check that the control plane "
                "is up at --url / VESPID_URL",
                status=exc.status,
                body=exc.body,
            ) from None
        if status in (401, 403):
            raise ControlPlaneError(
                f"the endpoint listing at {url} refused the API key ({status}: "
                f"{describe_body(body)}); check --api-key / VESPID_API_KEY",
                status=status,
                body=body,
            )
        results = body.get("results") if isinstance(body, dict) else None
        if status != 200 or not isinstance(results, list):
            raise ControlPlaneError(
                f"the endpoint listing at {url} answered {status} without a results list "
                f"({describe_body(body)}); is --url a vespid control plane?",
                status=status,
                body=body,
            )
        endpoints = []
        for item in results:
            if isinstance(item, dict) and isinstance(item.get("endpoint_name"), str):
                key = item.get("api_key")
                info = {k: v for k, v in item.items() if k != "api_key"}
                endpoints.append(
                    Endpoint(
                        self,
                        item["endpoint_name"],
                        api_key=key if isinstance(key, str) and key else None,
                        id=item.get("id"),
                        info=info,
                    )
                )
        return endpoints

    async def get_endpoint(self, name: str) -> Endpoint:
        """The endpoint called ``name``; ``EndpointNotFound`` if the listing lacks it."""
        endpoints = await self.list_endpoints()
        for endpoint in endpoints:
            if endpoint.name == name:
                return endpoint
        known = ", ".join(sorted(e.name for e in endpoints)) or "none"
        raise EndpointNotFound(
            f"no endpoint named {name!r} at {self.console_url} (known: {known}); "
            "check the name, or create the endpoint first",
            name=name,
        )

    def endpoint(self, name: str, *, api_key: str | None = None, id: Any = None) -> Endpoint:
        """An endpoint by name, without asking the listing (routes with ``api_key``)."""
        return Endpoint(self, name, api_key=api_key, id=id)

    # -- the control plane -----------------------------------------------------

    async def _control(
        self,
        method: str,
        url: str,
        key: str,
        *,
        deadline: Deadline,
        params: dict[str, str] | None = None,
        body: Any = None,
    ) -> tuple[int, Any]:
        """One call to the control plane: (status, parsed body); _RouterFailed if
        unreachable or answering 408/5xx; RequestTimeout once the deadline passed."""
        headers = {"Authorization": f"Bearer {key}"}
        if body is not None:
            headers.update(_JSON_HEADERS)
        try:
            async with asyncio.timeout(min(self.control_timeout_s, deadline.remaining_s())):
                async with self.http.request(
                    method,
                    url,
                    params=params,
                    data=None if body is None else dumps(body),
                    headers=headers,
                    allow_redirects=False,
                ) as resp:
                    status, raw, ctype = resp.status, await resp.read(), resp.content_type
        except aiohttp.ClientError as exc:
            raise _RouterFailed(f"{url} unreachable: {type(exc).__name__}: {exc}") from None
        except TimeoutError:
            if deadline.remaining_s() <= 0:
                raise RequestTimeout(
                    f"no answer within timeout_s={deadline.timeout_s:g} s "
                    f"(waiting on {url}); raise the timeout or retry later",
                    timeout_s=deadline.timeout_s,
                ) from None
            raise _RouterFailed(
                f"{url} did not answer within {self.control_timeout_s:g} s"
            ) from None
        parsed = _parse_body(raw, ctype)
        if status == 408 or status >= 500:
            raise _RouterFailed(f"{url} answered {status}: {describe_body(parsed)}", status, parsed)
        return status, parsed

    async def _route_once(
        self, endpoint: Endpoint, cost: float, request_idx: int, deadline: Deadline
    ) -> dict[str, Any]:
        key = endpoint.api_key
        status, body = await self._control(
            "POST",
            self.base_url + ROUTE_PATH,
            key,
            params={"api_key": key},
            body={
                "endpoint": endpoint.name,
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
            raise _refused(endpoint.name, status, body)
        raise ControlPlaneError(
            f"the router answered {status} with {describe_body(body)!r}, not a JSON object; "
            "is --url a vespid or Vast control plane?",
            status=status,
            body=body,
        )

    async def _route(self, endpoint: Endpoint, cost: float, deadline: Deadline) -> dict[str, Any]:
        """Ask ``/route/`` until a worker is assigned; the answer is the auth_data."""
        request_idx, polls, failures = 0, 0, 0
        while True:
            try:
                answer = await self._route_once(endpoint, cost, request_idx, deadline)
            except _RouterFailed as exc:
                failures += 1
                if failures >= MAX_ROUTER_FAILURES:
                    raise ControlPlaneError(
                        f"the router failed {failures} times in a row (last: {exc}); check "
                        "that the control plane is up at --url / VESPID_URL",
                        status=exc.status,
                        body=exc.body,
                    ) from None
                await self._pause(failures - 1, deadline, f"the router failing ({exc})")
                continue
            failures = 0
            url = answer.get("url")
            if isinstance(url, str) and url:
                return _without_key(answer, endpoint.api_key)
            idx = answer.get("request_idx")
            if isinstance(idx, int) and not isinstance(idx, bool) and idx:
                request_idx = idx
            waiting = answer.get("status") or "queued"
            await self._pause(polls, deadline, f"no worker yet (router: {waiting})")
            polls += 1

    async def _pause(self, attempt: int, deadline: Deadline, waiting_for: str) -> None:
        """Back off before asking again; RequestTimeout if that would pass the deadline."""
        delay_s = poll_delay_s(attempt, self.max_poll_interval_s, self._rng)
        if delay_s >= deadline.remaining_s():
            raise RequestTimeout(
                f"gave up after {deadline.elapsed_s():.1f} s (timeout_s="
                f"{deadline.timeout_s:g}): {waiting_for}; raise the timeout or retry later",
                timeout_s=deadline.timeout_s,
            )
        await asyncio.sleep(delay_s)

    # -- workers ----------------------------------------------------------------

    async def _send(
        self,
        worker_url: str,
        path: str,
        envelope: dict[str, Any],
        *,
        auth_data: dict[str, Any],
        stream: bool,
        deadline: Deadline,
        attempts: int,
    ) -> Response | Failed:
        """POST one envelope to one worker. No API key, no cookies, no redirects."""
        url = worker_url.rstrip("/") + path
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.connect_timeout_s)
        resp: aiohttp.ClientResponse | None = None
        handed_off = False
        try:
            async with asyncio.timeout(deadline.remaining_s()):
                resp = await self.http.post(
                    url,
                    data=dumps(envelope),
                    headers=_JSON_HEADERS,
                    timeout=timeout,
                    allow_redirects=False,
                )
                ok = 200 <= resp.status < 300
                raw = None if stream and ok else await resp.read()
        except aiohttp.ClientError as exc:
            return Failed(worker_url, None, None, f"{type(exc).__name__}: {exc}")
        except TimeoutError:
            raise RequestTimeout(
                f"no answer from worker {url} within timeout_s={deadline.timeout_s:g} s "
                f"(attempt {attempts}); raise the timeout or retry later",
                timeout_s=deadline.timeout_s,
                url=url,
            ) from None
        else:
            if not ok:
                body = _parse_body(raw or b"", resp.content_type)
                return Failed(worker_url, resp.status, body, describe_body(body))
            handed_off = raw is None
            return Response(
                status=resp.status,
                headers=resp.headers,
                content_type=resp.content_type,
                charset=resp.charset,
                worker_url=worker_url,
                auth_data=auth_data,
                attempts=attempts,
                body=raw,
                raw=resp if raw is None else None,
                idle_timeout_s=deadline.timeout_s,
            )
        finally:
            if resp is not None and not handed_off:
                resp.release()

    async def _dispatch(
        self,
        endpoint: Endpoint,
        path: str,
        payload: Any,
        *,
        cost: float,
        stream: bool,
        timeout_s: float | None,
        max_attempts: int | None,
    ) -> Response:
        """Route, send, and re-route on a retryable failure, within both bounds."""
        deadline = Deadline(timeout_s or self.timeout_s)
        limit = max_attempts or self.max_attempts
        path = path if path.startswith("/") else "/" + path
        attempt = 1
        while True:
            auth = await self._route(endpoint, cost, deadline)
            envelope = {"auth_data": auth, "session_id": None, "payload": payload}
            outcome = await self._send(
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


def _check_url(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"{name} must be an http(s) URL such as http://127.0.0.1:8080 (got {url!r})"
        )
    return url.rstrip("/")


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
