"""Endpoints over HTTP: the console listing Vast's client reads (``/api/v0/endptjobs/``,
endpoint API key or admin key) and the admin API that manages them
(``/api/v0/endpoints``, admin key). Every change is kept in the store.

A template change makes a new revision (``models.revise``), which the autoscaler rolls
out; ``POST /api/v0/endpoints/<name>/rollback`` makes the previous template a new
revision, and ``GET /api/v0/endpoints/<name>/rollout`` says how the rollout goes (what
``vespid endpoint update --wait`` shows)."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path

from aiohttp import web

from vespid.control.autoscaler import Autoscaler
from vespid.control.keys import presented_key
from vespid.control.models import (
    KEPT_FIELDS,
    EndpointConfig,
    find_endpoint,
    parse_endpoint,
    revise,
    rolled_back,
)
from vespid.control.store import Store
from vespid.errors import NotFound, RequestInvalid, Unauthorized
from vespid.web import json_response, read_json_within, same_secret

__all__ = ["EndpointApi"]

ENDPOINTS_PATH = "/api/v0/endpoints"


class EndpointApi:
    """The console listing and endpoint create/read/update/delete."""

    def __init__(
        self,
        endpoints: MutableMapping[str, EndpointConfig],
        store: Store,
        autoscaler: Autoscaler,
        *,
        admin_key: str,
        admin_key_file: Path,
    ) -> None:
        self.endpoints = endpoints
        self.store = store
        self.autoscaler = autoscaler
        self.admin_key = admin_key
        self.admin_key_file = admin_key_file  # named in the 401, so the caller finds it

    def add_routes(self, routes: web.UrlDispatcher) -> None:
        routes.add_get("/api/v0/endptjobs/", self.handle_endptjobs)
        routes.add_get("/api/v0/endptjobs/{name}/", self.handle_endptjob)
        routes.add_get(ENDPOINTS_PATH, self.handle_list)
        routes.add_post(ENDPOINTS_PATH, self.handle_create)
        routes.add_get(ENDPOINTS_PATH + "/{name}", self.handle_get)
        routes.add_put(ENDPOINTS_PATH + "/{name}", self.handle_endpoint_update)
        routes.add_delete(ENDPOINTS_PATH + "/{name}", self.handle_delete)
        routes.add_post(ENDPOINTS_PATH + "/{name}/rollback", self.handle_rollback)
        routes.add_get(ENDPOINTS_PATH + "/{name}/rollout", self.handle_rollout)

    # -- auth ------------------------------------------------------------------------

    def _require_admin(self, request: web.Request) -> None:
        if not same_secret(presented_key(request), self.admin_key):
            raise Unauthorized(
                "admin key required: send 'Authorization: Bearer <key>' "
                f"(it is in {self.admin_key_file})"
            )

    def _visible(self, request: web.Request) -> list[EndpointConfig]:
        """Every endpoint for the admin key; the caller's own for an endpoint key."""
        key = presented_key(request)
        if same_secret(key, self.admin_key):
            return list(self.endpoints.values())
        visible = [e for e in self.endpoints.values() if same_secret(key, e.api_key)]
        if not visible:
            raise Unauthorized("unknown API key: send 'Authorization: Bearer <endpoint api key>'")
        return visible

    # -- the console listing -----------------------------------------------------------

    async def handle_endptjobs(self, request: web.Request) -> web.Response:
        results = [e.public() for e in self._visible(request)]
        return json_response({"success": True, "results": results})

    async def handle_endptjob(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        for endpoint in self._visible(request):
            if endpoint.name == name:
                return json_response({"success": True, "result": endpoint.public()})
        raise NotFound(f"no endpoint named {name!r}")

    # -- the admin API -----------------------------------------------------------------

    async def handle_list(self, request: web.Request) -> web.Response:
        self._require_admin(request)
        return json_response([e.model_dump(mode="json") for e in self.endpoints.values()])

    async def handle_get(self, request: web.Request) -> web.Response:
        self._require_admin(request)
        endpoint = find_endpoint(self.endpoints, request.match_info["name"])
        return json_response(endpoint.model_dump(mode="json"))

    async def handle_create(self, request: web.Request) -> web.Response:
        self._require_admin(request)
        endpoint = parse_endpoint(await read_json_within(request))
        if endpoint.name in self.endpoints:
            raise RequestInvalid(
                f"endpoint {endpoint.name!r} exists: change it with `vespid endpoint update "
                f"{endpoint.name} --set PARAM=VALUE` (HTTP: PUT {ENDPOINTS_PATH}/{endpoint.name})"
            )
        await self._keep(endpoint)
        return json_response(endpoint.model_dump(mode="json"), 201)

    async def handle_endpoint_update(self, request: web.Request) -> web.Response:
        """Change some fields of an endpoint; ``scaling`` and ``template`` merge field by
        field into the old ones, and the name stays. A template change is a new revision."""
        self._require_admin(request)
        current = find_endpoint(self.endpoints, request.match_info["name"])
        kept = current.model_dump(mode="json", include=set(KEPT_FIELDS))
        old = current.model_dump(mode="json", exclude=set(KEPT_FIELDS))
        body = await read_json_within(request)
        if not isinstance(body, dict):
            raise RequestInvalid("send the fields to change as a JSON object")
        # An endpoint's own listing reads back unchanged: the kept fields it carries are
        # dropped when they are what the control plane has (another value is refused).
        body = {k: v for k, v in body.items() if k not in kept or v != kept[k]}
        merged = {**old, **body, "name": old["name"]}
        for part in ("scaling", "template"):
            if isinstance(body.get(part), dict):
                merged[part] = {**old[part], **body[part]}
        endpoint = revise(current, parse_endpoint(merged))
        await self._keep(endpoint)
        return json_response(endpoint.model_dump(mode="json"))

    async def handle_rollback(self, request: web.Request) -> web.Response:
        """Back to the previous template, as a new revision rolled out like any other."""
        self._require_admin(request)
        endpoint = rolled_back(find_endpoint(self.endpoints, request.match_info["name"]))
        await self._keep(endpoint)
        return json_response(endpoint.model_dump(mode="json"))

    async def handle_rollout(self, request: web.Request) -> web.Response:
        """The endpoint's rollout: its revision, whether it is done, rolling or halted
        (and why), and its workers by revision and phase."""
        self._require_admin(request)
        endpoint = find_endpoint(self.endpoints, request.match_info["name"])
        return json_response(self.autoscaler.rollout_status(endpoint))

    async def _keep(self, endpoint: EndpointConfig) -> None:
        self.endpoints[endpoint.name] = endpoint
        await self.store.put_endpoint(endpoint)
        self.autoscaler.wake()  # a new revision starts rolling out now

    async def handle_delete(self, request: web.Request) -> web.Response:
        self._require_admin(request)
        endpoint = find_endpoint(self.endpoints, request.match_info["name"])
        del self.endpoints[endpoint.name]
        self.autoscaler.forget(endpoint.name)
        await self.store.delete_endpoint(endpoint.name)
        return json_response({"deleted": endpoint.name})
