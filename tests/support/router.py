"""A control-plane stand-in for client tests: the endpoint listing and ``/route/``.

It speaks the exact wire format of Vast's router (PROTOCOL.md sections 5 and 7):
``GET /api/v0/endptjobs/`` with a Bearer account key lists endpoints with their
keys; ``POST /route/`` checks the endpoint key (Bearer, ``?api_key=`` or body;
401 if wrong), the endpoint (404 if unknown) and, when told, refuses with 429. A
new request (``request_idx`` 0) gets a fresh index and is answered "queued"
``queue_first`` times, then with a signed auth_data for the next worker: those
in ``plan`` first, then ``workers`` in turn. ``scheme`` picks vespid's signature
or Vast's current one (which binds only the url, so a session's auth_data can be
sent again). Every call is recorded.

``RecordingProxy`` sits in front of a worker and records exactly what reaches
it (method, path, query, headers, body) before passing the request on.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import aiohttp
from aiohttp import web

from vespid.protocol.signing import Signer, vast_current_message

__all__ = ["Recorded", "RecordingProxy", "Router"]


@dataclass(frozen=True)
class Recorded:
    """One request as a server received it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON, or the raw bytes when not JSON


async def _record(request: web.Request) -> Recorded:
    raw = await request.read()
    try:
        body: Any = await request.json() if raw else None
    except ValueError:
        body = raw
    return Recorded(request.method, request.path, dict(request.query), dict(request.headers), body)


@dataclass
class Router:
    signer: Signer
    account_key: str = "account-key"
    endpoints: dict[str, str] = field(default_factory=lambda: {"llm": "endpoint-key"})
    workers: list[str] = field(default_factory=list)
    plan: deque[str] = field(default_factory=deque)
    queue_first: int = 0
    refuse_with: int | None = None
    scheme: Literal["vespid", "vast"] = "vespid"
    extra: dict[str, Any] = field(default_factory=dict)  # added to every ready answer
    calls: list[Recorded] = field(default_factory=list)
    listings: list[Recorded] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    _polls: dict[int, int] = field(default_factory=dict)
    _next_idx: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _turn: itertools.count[int] = field(default_factory=itertools.count)

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/v0/endptjobs/", self._listing)
        app.router.add_post("/route/", self._route)
        return app

    @property
    def route_bodies(self) -> list[dict[str, Any]]:
        return [c.body for c in self.calls]

    async def _listing(self, request: web.Request) -> web.Response:
        self.listings.append(await _record(request))
        if request.headers.get("Authorization") != f"Bearer {self.account_key}":
            return web.json_response({"error": "invalid api key"}, status=401)
        results = [
            {"id": n, "endpoint_name": name, "api_key": key, "endpoint_state": "active"}
            for n, (name, key) in enumerate(self.endpoints.items(), start=1)
        ]
        return web.json_response({"success": True, "results": results})

    def _pick(self) -> str:
        if self.plan:
            return self.plan.popleft()
        return self.workers[next(self._turn) % len(self.workers)]

    def _sign(self, url: str, name: str, cost: Any, idx: int) -> dict[str, Any]:
        if self.scheme == "vespid":
            auth = self.signer.auth_data(
                url=url, cost=cost, endpoint=name, reqnum=idx, request_idx=idx
            )
        else:
            auth = {
                "cost": str(cost),
                "endpoint": name,
                "reqnum": idx,
                "request_idx": idx,
                "url": url,
                "signature": self.signer.sign(vast_current_message(url)),
            }
        return {**auth, **self.extra}

    async def _route(self, request: web.Request) -> web.Response:
        record = await _record(request)
        self.calls.append(record)
        self.changed.set()
        body = record.body if isinstance(record.body, dict) else {}
        name = body.get("endpoint")
        if name not in self.endpoints:
            return web.json_response({"error": f"endpoint {name!r} not found"}, status=404)
        key = self.endpoints[name]
        offered = {
            request.headers.get("Authorization", "").removeprefix("Bearer "),
            request.query.get("api_key"),
            body.get("api_key"),
        }
        if offered != {key}:
            return web.json_response({"error": "invalid api key"}, status=401)
        if self.refuse_with is not None:
            return web.json_response({"error": "queue full"}, status=self.refuse_with)
        idx = body.get("request_idx") or 0
        if idx not in self._polls:
            idx = next(self._next_idx)
            self._polls[idx] = 0
        if self._polls[idx] < self.queue_first:
            self._polls[idx] += 1
            return web.json_response(
                {"endpoint": name, "status": "waiting for a worker", "request_idx": idx}
            )
        return web.json_response(self._sign(self._pick(), name, body.get("cost", 0), idx))


@dataclass
class RecordingProxy:
    """Records what reaches a worker, then forwards it there (streams relayed as they come)."""

    target: str
    seen: list[Recorded] = field(default_factory=list)
    _http: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._forward)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, app: web.Application) -> None:
        if self._http is not None:
            await self._http.close()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        self.seen.append(await _record(request))
        if self._http is None:
            self._http = aiohttp.ClientSession(auto_decompress=False)
        async with self._http.request(
            request.method,
            self.target + request.path_qs,
            data=await request.read(),
            headers={"Content-Type": request.headers.get("Content-Type", "")},
        ) as upstream:
            resp = web.StreamResponse(status=upstream.status)
            resp.content_type = upstream.content_type
            await resp.prepare(request)
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
            return resp
