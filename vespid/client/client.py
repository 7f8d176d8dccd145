"""The client's facade: construction, the HTTP session, and the endpoint listing.

``Client`` checks its settings, owns the ``aiohttp`` session (no cookie jar: a
cookie the control plane sets must not travel to workers), lists endpoints with
``GET {console_url}/api/v0/endptjobs/`` and hands each ``Endpoint`` the
``Dispatcher`` that routes and sends its requests (``vespid.client.dispatch``).
See docs/client.md.
"""

from __future__ import annotations

import random
from types import TracebackType
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp

from vespid.client.dispatch import Dispatcher
from vespid.client.endpoint import Endpoint
from vespid.client.errors import ClientError, ControlPlaneError, EndpointNotFound
from vespid.client.retry import Deadline, Limits, describe_body
from vespid.client.transport import ControlFailed, Transport
from vespid.errors import ConfigError

__all__ = ["LISTING_PATH", "Client"]

LISTING_PATH: Final = "/api/v0/endptjobs/"


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
        checked_base_url = _check_url("base_url", base_url)
        self.console_url = _check_url("console_url", console_url or base_url)
        if not api_key:
            raise ConfigError(
                "api_key is empty: pass the account or endpoint API key "
                "(vespid call: --api-key or VESPID_API_KEY)"
            )
        self.limits = Limits(
            timeout_s=timeout_s,
            max_poll_interval_s=max_poll_interval_s,
            max_attempts=max_attempts,
            connect_timeout_s=connect_timeout_s,
            control_timeout_s=control_timeout_s,
        )
        self._api_key = api_key
        self._http: aiohttp.ClientSession | None = None
        self._transport = Transport(self._open_http, self.limits)
        self._dispatcher = Dispatcher(self._transport, checked_base_url, rng or random.Random())

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
        """The open HTTP session; ``ClientError`` outside ``async with``."""
        return self._open_http()

    def _open_http(self) -> aiohttp.ClientSession:
        if self._http is None:
            raise ClientError("the client is not open: use `async with Client(...) as client:`")
        return self._http

    # -- settings (read-only: the dispatcher holds them) -------------------------

    @property
    def base_url(self) -> str:
        return self._dispatcher.base_url

    @property
    def timeout_s(self) -> float:
        return self.limits.timeout_s

    @property
    def max_poll_interval_s(self) -> float:
        return self.limits.max_poll_interval_s

    @property
    def max_attempts(self) -> int:
        return self.limits.max_attempts

    @property
    def connect_timeout_s(self) -> float:
        return self.limits.connect_timeout_s

    @property
    def control_timeout_s(self) -> float:
        return self.limits.control_timeout_s

    # -- endpoints -------------------------------------------------------------

    async def list_endpoints(self) -> list[Endpoint]:
        """Every endpoint the API key can see (``GET /api/v0/endptjobs/``)."""
        url = self.console_url + LISTING_PATH
        deadline = Deadline(self.limits.control_timeout_s)
        try:
            status, body = await self._transport.control(
                "GET", url, self._api_key, params={"client_id": "me"}, deadline=deadline
            )
        except ControlFailed as exc:
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
        return [
            self._listed(item)
            for item in results
            if isinstance(item, dict) and isinstance(item.get("endpoint_name"), str)
        ]

    def _listed(self, item: dict[str, Any]) -> Endpoint:
        """An endpoint from its listing entry; the entry's key stays out of ``info``."""
        key = item.get("api_key")
        info = {k: v for k, v in item.items() if k != "api_key"}
        own_key = key if isinstance(key, str) and key else None
        return self._endpoint(item["endpoint_name"], own_key, item.get("id"), info)

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
        return self._endpoint(name, api_key, id, None)

    def _endpoint(
        self, name: str, api_key: str | None, id: Any, info: dict[str, Any] | None
    ) -> Endpoint:
        """An endpoint routed with its own key, else with the client's."""
        return Endpoint(self._dispatcher, name, api_key=api_key or self._api_key, id=id, info=info)


def _check_url(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"{name} must be an http(s) URL such as http://127.0.0.1:8080 (got {url!r})"
        )
    return url.rstrip("/")
