"""The control plane's HTTP API: bad input, auth, the console listing, persistence."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.control.conftest import MakeControl, admin
from vespid.control.models import (
    ScalingConfig,
    WorkerTemplate,
    load_endpoints_file,
    parse_endpoints_yaml,
)
from vespid.control.serve import running_control
from vespid.control.settings import ControlSettings
from vespid.errors import ConfigError
from vespid.protocol.signing import load_public_key

IDLE = {"max_workers": 0}  # an endpoint that never starts a worker


async def test_endpoint_crud(make_control: MakeControl, http: aiohttp.ClientSession) -> None:
    control = await make_control()
    status, created = await admin(http, control, "POST", "/api/v0/endpoints",
                                  {"name": "llm", "scaling": {"max_workers": 3}})  # fmt: skip
    assert status == 201
    assert created["scaling"]["max_workers"] == 3
    assert len(created["api_key"]) >= 8
    status, updated = await admin(http, control, "PUT", "/api/v0/endpoints/llm",
                                  {"scaling": {"min_load": 5}})  # fmt: skip
    assert status == 200
    assert (updated["scaling"]["min_load"], updated["scaling"]["max_workers"]) == (5, 3)
    status, listed = await admin(http, control, "GET", "/api/v0/endpoints")
    assert [e["name"] for e in listed] == ["llm"]
    assert await admin(http, control, "DELETE", "/api/v0/endpoints/llm") == (
        200, {"deleted": "llm"},
    )  # fmt: skip
    status, err = await admin(http, control, "GET", "/api/v0/endpoints/llm")
    assert (status, err["code"]) == (404, "not_found")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"name": "bad name!"}, "name", id="name"),
        pytest.param({"name": "x", "scaling": {"target_util": 2}}, "scaling.target_util",
                     id="target-util"),
        pytest.param({"name": "x", "scaling": {"max_wrokers": 2}}, "scaling.max_wrokers",
                     id="typo"),
        pytest.param({"name": "x", "api_key": "short"}, "api_key", id="short-key"),
    ],
)  # fmt: skip
async def test_invalid_endpoint_is_422_naming_the_field(
    make_control: MakeControl, http: aiohttp.ClientSession, body: dict[str, Any], field: str
) -> None:
    control = await make_control()
    status, err = await admin(http, control, "POST", "/api/v0/endpoints", body)
    assert status == 422
    assert field in err["fields"]


async def test_admin_api_needs_the_admin_key(
    make_control: MakeControl, http: aiohttp.ClientSession
) -> None:
    control = await make_control()
    async with http.get(control.url + "/api/v0/endpoints",
                        headers={"Authorization": "Bearer nope"}) as resp:  # fmt: skip
        assert resp.status == 401
        assert "admin key" in (await resp.json())["error"]


async def route(
    http: aiohttp.ClientSession, url: str, body: Any, raw: bytes | None = None
) -> tuple[int, Any]:
    data = raw if raw is not None else None
    async with http.post(url + "/route/", json=None if raw else body, data=data) as resp:
        return resp.status, await resp.json()


async def test_route_refusals(make_control: MakeControl, http: aiohttp.ClientSession) -> None:
    control = await make_control(max_queued=2, route_hold_s=0)
    _, ep = await admin(http, control, "POST", "/api/v0/endpoints", {"name": "e", "scaling": IDLE})
    key = ep["api_key"]
    status, err = await route(http, control.url, None, raw=b"{nope")
    assert (status, err["code"]) == (422, "invalid_request")
    status, err = await route(http, control.url, {"endpoint": "e", "api_key": key, "cost": "x"})
    assert (status, set(err["fields"])) == (422, {"cost"})
    status, err = await route(http, control.url, {"endpoint": "e", "api_key": "wrong", "cost": 1})
    assert (status, err["code"]) == (401, "unauthorized")
    status, err = await route(http, control.url, {"endpoint": "zz", "api_key": key, "cost": 1})
    assert (status, err["code"]) == (404, "not_found")
    # Nothing can serve: requests queue up to the bound, then 429.
    answers = [await route(http, control.url, {"endpoint": "e", "api_key": key, "cost": 1})
               for _ in range(3)]  # fmt: skip
    assert [s for s, _ in answers] == [200, 200, 429]
    assert "url" not in answers[0][1]
    assert answers[0][1]["request_idx"] != answers[1][1]["request_idx"]
    assert answers[2][1]["code"] == "overloaded"
    # A queued request polls with its request_idx and stays queued (no new entry).
    idx = answers[0][1]["request_idx"]
    status, again = await route(
        http, control.url, {"endpoint": "e", "api_key": key, "cost": 1, "request_idx": idx}
    )
    assert (status, again["request_idx"]) == (200, idx)


async def test_worker_reports_need_the_workers_own_token(
    make_control: MakeControl, http: aiohttp.ClientSession
) -> None:
    control = await make_control()
    for path, field in (("/worker_status/", "id"), ("/delete_requests/", "worker_id")):
        async with http.post(control.url + path, json={field: 1, "mtoken": "x"}) as resp:
            assert resp.status == 401
    async with http.post(control.url + "/worker_status/",
                         json={"id": 99, "mtoken": control.keys.worker_token(99)},
                         ) as resp:  # fmt: skip
        assert resp.status == 404


async def test_console_listing_and_pubkey(
    make_control: MakeControl, http: aiohttp.ClientSession
) -> None:
    control = await make_control()
    _, a = await admin(http, control, "POST", "/api/v0/endpoints", {"name": "a", "scaling": IDLE})
    await admin(http, control, "POST", "/api/v0/endpoints", {"name": "b", "scaling": IDLE})
    async with http.get(control.url + "/api/v0/endptjobs/",
                        headers={"Authorization": f"Bearer {a['api_key']}"}) as resp:  # fmt: skip
        listing = await resp.json()
    assert [e["endpoint_name"] for e in listing["results"]] == ["a"]
    async with http.get(control.url + "/api/v0/endptjobs/?api_key=bad") as resp:
        assert resp.status == 401
    async with http.get(control.url + "/pubkey/") as resp:
        load_public_key(await resp.read())


async def test_restart_keeps_endpoints_and_keys(
    tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    settings = ControlSettings(host="127.0.0.1", port=0, state_dir=tmp_path, log_level="warning")
    async with running_control(settings, os.environ) as first:
        await admin(http, first, "POST", "/api/v0/endpoints", {"name": "kept", "scaling": IDLE})
        key, admin_key = first.public_key_pem, first.admin_key
    async with running_control(settings, os.environ) as second:
        assert list(second.endpoints) == ["kept"]
        assert second.public_key_pem == key
        assert second.admin_key == admin_key


async def test_endpoints_file_errors_name_the_field(tmp_path: Path) -> None:
    path = tmp_path / "endpoints.yaml"
    await asyncio.to_thread(
        path.write_text, "endpoints:\n  - name: ok\n    scaling: {max_workers: -1}\n"
    )
    with pytest.raises(ConfigError, match=r"endpoints\[0\]\.scaling\.max_workers"):
        await asyncio.to_thread(load_endpoints_file, path)


SCALING_KEYS = ", ".join(ScalingConfig.model_fields)
TEMPLATE_KEYS = ", ".join(WorkerTemplate.model_fields)


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param(
            "endpoint:\n  - name: llm\n",
            "endpoint: unknown key, did you mean 'endpoints'? (allowed: endpoints)",
            id="top-level",
        ),
        pytest.param(
            "endpoints:\n  - name: llm\n    scalling: {}\n",
            "endpoints[0].scalling: unknown key, did you mean 'scaling'? "
            "(allowed: name, api_key, scaling, template)",
            id="endpoint",
        ),
        pytest.param(
            "endpoints:\n  - name: a\n  - name: b\n    scaling: {max_wrokers: 2}\n",
            "endpoints[1].scaling.max_wrokers: unknown key, did you mean 'max_workers'? "
            f"(allowed: {SCALING_KEYS})",
            id="scaling",
        ),
        pytest.param(
            "endpoints:\n  - name: llm\n    template: {command: [x]}\n",
            "endpoints[0].template.command: unknown key, did you mean 'model_command'? "
            f"(allowed: {TEMPLATE_KEYS})",
            id="template",
        ),
        pytest.param(
            "endpoints:\n  - name: llm\n    scaling: {max_workers: 2\n  - name: b\n",
            "not valid YAML at line 4, column 9: expected ',' or '}', but got ':'",
            id="yaml-syntax",
        ),
        pytest.param(
            "endpoints:\n  - name: llm\n    env: {A: b}\n",
            "endpoints[0].env: unknown key (allowed: name, api_key, scaling, template)",
            id="no-close-match",
        ),
        pytest.param(
            "endpoints: llm\n",
            "endpoints: expected a list of endpoints ('- name: ...')",
            id="not-a-list",
        ),
    ],
)  # fmt: skip
def test_endpoints_file_mistakes_are_one_line(text: str, line: str) -> None:
    """Regression: ``endpoint:`` for ``endpoints:`` started a control plane with 0
    endpoints and no word; a YAML syntax error was pyyaml's 5-line message."""
    path = Path("conf/endpoints.yaml")
    with pytest.raises(ConfigError) as caught:
        parse_endpoints_yaml(text, path)
    assert str(caught.value) == f"{path}: {line}"


def test_endpoints_file_may_be_empty() -> None:
    assert parse_endpoints_yaml("# none yet\n", Path("e.yaml")) == []
    assert parse_endpoints_yaml("endpoints:\n", Path("e.yaml")) == []


async def test_unknown_endpoint_field_over_http_names_the_allowed_ones(
    make_control: MakeControl, http: aiohttp.ClientSession
) -> None:
    control = await make_control()
    body = {"name": "x", "scaling": {"max_wrokers": 2}}
    status, err = await admin(http, control, "POST", "/api/v0/endpoints", body)
    assert status == 422
    assert err["fields"] == {
        "scaling.max_wrokers": f"unknown key, did you mean 'max_workers'? (allowed: {SCALING_KEYS})"
    }


async def test_creating_an_existing_endpoint_names_the_cli_command_and_the_route(
    make_control: MakeControl, http: aiohttp.ClientSession
) -> None:
    """The answer serves a CLI user and an HTTP caller: it names both ways to change it."""
    control = await make_control()
    assert (await admin(http, control, "POST", "/api/v0/endpoints", {"name": "llm"}))[0] == 201
    status, err = await admin(http, control, "POST", "/api/v0/endpoints", {"name": "llm"})
    assert (status, err["code"]) == (422, "invalid_request")
    assert err["error"] == (
        "endpoint 'llm' exists: change it with `vespid endpoint update llm --set PARAM=VALUE` "
        "(HTTP: PUT /api/v0/endpoints/llm)"
    )


async def test_recreated_endpoint_starts_from_nothing(
    make_control: MakeControl, http: aiohttp.ClientSession
) -> None:
    """Regression: the demand books of a deleted endpoint outlived it, so an endpoint
    created under the same name started a worker with no demand (1 instead of 0)."""
    control = await make_control(route_hold_s=0)
    spec = {"name": "e", "scaling": {"max_workers": 0, "min_load": 0}}
    _, ep = await admin(http, control, "POST", "/api/v0/endpoints", spec)
    assert (await route(http, control.url, {"endpoint": "e", "api_key": ep["api_key"],
                                            "cost": 1}))[0] == 200  # fmt: skip
    assert control.fleet.books["e"].last_activity_at is not None
    await admin(http, control, "DELETE", "/api/v0/endpoints/e")
    await admin(http, control, "POST", "/api/v0/endpoints", {"name": "e"})
    assert "e" not in control.fleet.books or control.fleet.books["e"].last_activity_at is None
    assert not control.router.queue("e")
