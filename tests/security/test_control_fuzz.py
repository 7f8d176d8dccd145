"""A property-based fuzz of every route of the control plane (hypothesis): random methods,
odd paths and query strings, odd headers (non-UTF-8 keys, huge and odd content types,
duplicates) and bodies (JSON of any shape, near-valid versions of the real bodies with
fields of the wrong type, NaN and infinite spellings, huge numbers, deep nesting, plain
garbage), sent with and without each route's real key.

Every answer comes within a client timeout, none is a 5xx, every error is JSON with an
``error`` string, and afterwards the control plane still routes a real request and
answers its status. The routes come from the app's own router, so a route added later
must get a strategy here (``ROUTES``) or ``test_every_route_has_a_fuzz_strategy`` fails.

The control plane runs with a provider that starts nothing (``StubProvider``): the admin
API is fuzzed too, and an endpoint it creates must not start processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import gzip
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.control.attack import host_port, raw_exchange
from tests.control.conftest import MakeControl, admin
from tests.support.waiting import wait_until
from vespid.control.app import ControlPlane
from vespid.control.policy_types import MAX_WORKERS
from vespid.control.providers.base import Provider, RunState, WorkerHandle, WorkerOrder

# -- a provider that starts nothing ---------------------------------------------------


class StubProvider(Provider):
    """Every start succeeds at once and runs nothing; a worker's reports are the fuzz's."""

    name = "stub"

    def __init__(self) -> None:
        super().__init__()
        self.running: set[int] = set()

    async def start(self, order: WorkerOrder) -> WorkerHandle:
        self.running.add(order.worker_id)
        return WorkerHandle(order.worker_id, order.endpoint.name, "http://127.0.0.1:1", time.time())

    async def stop(self, handle: WorkerHandle) -> None:
        self.running.discard(handle.worker_id)

    def state(self, handle: WorkerHandle) -> RunState:
        return RunState.RUNNING if handle.worker_id in self.running else RunState.EXITED

    async def cleanup(self, info: dict[str, Any]) -> None:
        return None


# -- secrets, resolved when a request is sent (the fuzz may change or delete them) -----


class Secret(enum.Enum):
    ADMIN_KEY = "admin"
    ENDPOINT_KEY = "endpoint"  # the fuzzed endpoint's api_key
    WORKER_ID = "worker id"  # a worker of the fuzzed endpoint (1 if it has none)
    WORKER_TOKEN = "worker token"  # that worker's own report token
    OTHER_TOKEN = "other token"  # another worker's token


FUZZED = "e"  # the endpoint the fuzz aims at (its admin routes may change or delete it)
SURVIVOR = "survivor-3c9d1f"  # an endpoint no fuzzed path names: routed after the fuzz


def resolve(value: Any, control: ControlPlane) -> Any:
    """``value`` with every ``Secret`` replaced by the control plane's current one."""
    if isinstance(value, Secret):
        endpoint = control.endpoints.get(FUZZED)
        workers = sorted(w for w, r in control.fleet.workers.items()
                         if r.handle.endpoint == FUZZED)  # fmt: skip
        worker_id = workers[0] if workers else 1
        return {
            Secret.ADMIN_KEY: control.admin_key,
            Secret.ENDPOINT_KEY: endpoint.api_key if endpoint else "gone-endpoint-key",
            Secret.WORKER_ID: worker_id,
            Secret.WORKER_TOKEN: control.keys.worker_token(worker_id),
            Secret.OTHER_TOKEN: control.keys.worker_token(worker_id + 1),
        }[value]
    if isinstance(value, dict):
        return {k: resolve(v, control) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, control) for v in value]
    if isinstance(value, bytes):
        for secret in Secret:  # in a raw header or query value
            marker = f"<{secret.value}>".encode()
            if marker in value:
                value = value.replace(marker, str(resolve(secret, control)).encode())
    return value


# -- values ---------------------------------------------------------------------------


def nested(depth: int, leaf: Any = 1) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


ODD_SCALARS = st.sampled_from([
    None, True, False, 0, -1, -0.0, 1.5, 1e308, -1e308, 2**53 + 1, 2**63, 2**64, -(2**63) - 1,
    10**30, 2**1000, float("nan"), float("inf"), float("-inf"), "", "NaN", "nan", "inf",
    "Infinity", "-Infinity", "1e309", "0x10", "1", "true", "null", "\x00", "é" * 500,
    "x" * 5000, [], {}, [None], {"": None},
])  # fmt: skip

JSON_LEAVES = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
    | st.text(max_size=20) | ODD_SCALARS
)  # fmt: skip
JSON_VALUES = st.recursive(
    JSON_LEAVES,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
DEEP = st.builds(nested, st.sampled_from([20, 31, 32, 33, 40, 300]), JSON_LEAVES)
WRONG = ODD_SCALARS | JSON_VALUES | DEEP


def near(real: dict[str, Any]) -> st.SearchStrategy[Any]:
    """``real`` with each field kept, dropped or replaced by a wrong value, and maybe
    some unknown fields added; sometimes the whole body wrapped or nested."""
    keep, drop = object(), object()

    def field(value: Any) -> st.SearchStrategy[Any]:
        return st.sampled_from([st.just(keep)] * 6 + [st.just(drop), WRONG, WRONG]).flatmap(
            lambda choice: choice
        )

    def build(choices: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        body = {k: real[k] if v is keep else v for k, v in choices.items() if v is not drop}
        return {**body, **extra}

    body = st.builds(build, st.fixed_dictionaries({k: field(v) for k, v in real.items()}),
                     st.dictionaries(st.text(max_size=12), WRONG, max_size=2))  # fmt: skip
    return body | body.map(lambda b: [b]) | body.map(lambda b: nested(40, b))


ROUTE_BODY = {"endpoint": FUZZED, "api_key": Secret.ENDPOINT_KEY, "cost": 1.0, "request_idx": 0}
STATUS_BODY = {
    "id": Secret.WORKER_ID, "mtoken": Secret.WORKER_TOKEN, "version": "0", "loadtime": 1.0,
    "new_load": 1.0, "cur_load": 0.5, "rej_load": 0.0, "max_perf": 10.0, "cur_perf": 1.0,
    "error_msg": "", "num_requests_working": 1, "num_requests_recieved": 1,
    "additional_disk_usage": 0.0, "disk_usage": 1.0, "working_request_idxs": [1],
    "cur_capacity": 0, "max_capacity": 1, "url": "", "num_sessions": 0,
}  # fmt: skip
FINISHED = {"request_idx": 1, "success": True, "status": 200, "entered_queue_at": 1.7e9,
            "work_started_at": 1.7e9 + 1, "work_completed_at": 1.7e9 + 2}  # fmt: skip
DELETE_BODY = {"worker_id": Secret.WORKER_ID, "mtoken": Secret.WORKER_TOKEN,
               "requests": [FINISHED]}  # fmt: skip
SCALING = {"min_load": 0.0, "target_util": 1.0, "cold_mult": 0.0, "cold_workers": 0,
           "max_workers": 2, "inactivity_timeout": 300.0, "max_queue_time": 30.0,
           "target_queue_time": 10.0, "scale_down_delay": 30.0}  # fmt: skip
TEMPLATE = {"model_command": ["true"], "env": {"A": "b"}, "model_env": {},
            "gpus_per_worker": 0, "ready_timeout": 60.0}  # fmt: skip


def endpoint_body(name: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A near-valid endpoint, its scaling and template near-valid too."""
    whole = st.builds(
        lambda body, name, scaling, template: {**body, "name": name, "scaling": scaling,
                                               "template": template},
        near({"api_key": "k" * 12}).filter(lambda b: isinstance(b, dict)),
        name | WRONG, near(SCALING), near(TEMPLATE),
    )  # fmt: skip
    return whole | near({"name": "x", "scaling": SCALING})


NEW_NAMES = st.from_regex(r"\Afz[a-z0-9]{1,8}\Z")
GARBAGE = st.binary(max_size=2000)


@dataclass(frozen=True)
class Body:
    """What goes on the wire after the headers: raw bytes, or JSON to encode."""

    raw: bytes | None = None
    value: Any = None
    encoding: str = "utf-8"


def json_body(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Body]:
    return st.builds(
        Body, st.none(), values, st.sampled_from(["utf-8"] * 4 + ["utf-16", "latin-1"])
    )


ANY_BODY = (
    st.just(Body(raw=b""))
    | st.builds(Body, GARBAGE)
    | st.builds(Body, st.sampled_from([b"[" * 5000, b"{" * 100, b'{"a":' * 2000, b"\xff\xfe{}",
                                       b"null", b"1e999999", b"-", b'"\\ud800"']))
    | json_body(JSON_VALUES | DEEP)
)  # fmt: skip


# -- routes ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteFuzz:
    """How one route (one path, its methods) is fuzzed."""

    methods: frozenset[str]  # the route's own methods: the fuzz tries them most
    bodies: st.SearchStrategy[Body]
    examples: int
    name: st.SearchStrategy[str] | None = None  # fills the path's {name}


def _methods(*names: str) -> frozenset[str]:
    return frozenset(names) | ({"HEAD"} if "GET" in names else set())


PATH_NAMES = (
    st.sampled_from([FUZZED, "E", "nope", "..", ".", "%2e%2e", "a%2Fb", "%00", "%ff%fe",
                     "e%20", "x" * 300, "%"])
    | st.text(max_size=20).map(lambda s: quote(s, safe=""))
)  # fmt: skip

GET_ONLY = RouteFuzz(_methods("GET"), ANY_BODY, 8)
ROUTES: dict[str, RouteFuzz] = {
    "/route/": RouteFuzz(_methods("POST"), json_body(near(ROUTE_BODY)) | ANY_BODY, 60),
    "/pubkey/": GET_ONLY,
    "/ca.pem": GET_ONLY,
    "/worker_status/": RouteFuzz(_methods("POST"), json_body(near(STATUS_BODY)) | ANY_BODY, 60),
    "/delete_requests/": RouteFuzz(
        _methods("POST"),
        json_body(near(DELETE_BODY) | st.lists(near(FINISHED), max_size=3).flatmap(
            lambda finished: near({**DELETE_BODY, "requests": finished}))) | ANY_BODY,
        40,
    ),
    "/api/v0/endptjobs/": RouteFuzz(_methods("GET"), ANY_BODY, 10),
    "/api/v0/endptjobs/{name}/": RouteFuzz(_methods("GET"), ANY_BODY, 10, PATH_NAMES),
    "/api/v0/endpoints": RouteFuzz(
        _methods("GET", "POST"), json_body(endpoint_body(NEW_NAMES)) | ANY_BODY, 50
    ),
    "/api/v0/endpoints/{name}": RouteFuzz(
        _methods("GET", "PUT", "DELETE"),
        json_body(endpoint_body(st.just(FUZZED)) | near(SCALING).map(lambda s: {"scaling": s})
                  | near(TEMPLATE).map(lambda t: {"template": t})) | ANY_BODY,
        50,
        PATH_NAMES,
    ),
    "/api/v0/endpoints/{name}/rollback": RouteFuzz(_methods("POST"), ANY_BODY, 20, PATH_NAMES),
    "/api/v0/endpoints/{name}/rollout": RouteFuzz(_methods("GET"), ANY_BODY, 10, PATH_NAMES),
    "/api/v0/status": GET_ONLY,
    "/api/v0/history": RouteFuzz(_methods("GET"), ANY_BODY, 10),
    "/": GET_ONLY,
    "/static/status.js": GET_ONLY,
    "/static/status.css": GET_ONLY,
    "/metrics": GET_ONLY,
}  # fmt: skip


def app_routes(control: ControlPlane) -> dict[str, frozenset[str]]:
    """Each path of the control plane's app (as its router lists it) and its methods."""
    routes: dict[str, set[str]] = {}
    for route in control.build_app().router.routes():
        info = route.resource.get_info() if route.resource is not None else {}
        path = info.get("path") or info.get("formatter")
        assert isinstance(path, str), info
        routes.setdefault(path, set()).add(route.method)
    return {path: frozenset(methods) for path, methods in routes.items()}


# -- a request on the wire ------------------------------------------------------------

METHODS = ["GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "TRACE", "CONNECT",
           "PROPFIND", "get", "G\x01T", "X" * 100]  # fmt: skip
HEADER_NAME = st.text("abcdefghijklmnopqrstuvwxyzABCXYZ0123456789-_!#$%&'*+.^`|~", min_size=1,
                      max_size=20).map(str.encode)  # fmt: skip
BROKEN_NAME = st.sampled_from([b"X\x80Y", b"X Y", b"", b"X:Y", b"\x00"])
# Header values: mostly what HTTP allows (printable, tab, latin-1's high bytes), some not.
PRINTABLE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
HIGH_BYTES = st.binary(max_size=40).map(lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F))
BROKEN_VALUE = st.binary(max_size=16).map(lambda b: b"a\x01" + b.replace(b"\r", b"").replace(
    b"\n", b""))  # fmt: skip
HEADER_VALUE = st.sampled_from([PRINTABLE.map(str.encode)] * 6 + [HIGH_BYTES] * 3
                               + [BROKEN_VALUE]).flatmap(lambda s: s)  # fmt: skip
KEY_VALUES = st.sampled_from([f"<{s.value}>".encode() for s in Secret] * 2 + [
    b"\xff\xfe\xfd", b"\xc3\x28", b"\x80" * 300, b"k" * 9000, b"<admin>\xff", b"<admin> x",
]) | HEADER_VALUE  # fmt: skip
AUTHORIZATION = st.lists(
    st.builds(lambda scheme, key: scheme + key,
              st.sampled_from([b"Bearer ", b"bearer ", b"Bearer", b"Basic ", b"", b"Bearer  "]),
              KEY_VALUES),
    max_size=2,
)  # fmt: skip
CONTENT_TYPE = st.sampled_from([
    b"application/json", b"application/json; charset=latin-1", b"text/plain",
    b"multipart/form-data; boundary=zz", b"application/x-www-form-urlencoded",
    b"application/" + b"x" * 9000, b"application/json; " + b"a=b; " * 1000, b"\xff/\xfe", b";;;",
    b"application/json; charset=\x80",
]) | HEADER_VALUE  # fmt: skip
# None, JSON's, an odd one, or two (aiohttp refuses a duplicate).
CONTENT_TYPES: st.SearchStrategy[list[bytes]] = (
    st.just([]) | st.just([b"application/json"]) | st.just([b"application/json"])
    | CONTENT_TYPE.map(lambda t: [t]) | st.lists(CONTENT_TYPE, min_size=2, max_size=2)
)  # fmt: skip
ODD_HEADERS = st.lists(
    st.sampled_from([(b"Expect", b"100-continue"), (b"Expect", b"sometime"),
                     (b"Content-Encoding", b"gzip"), (b"Content-Encoding", b"deflate"),
                     (b"Content-Encoding", b"br"), (b"Host", b"other"), (b"Host", b"\xff"),
                     (b"Upgrade", b"websocket"), (b"Cookie", b"a=\xff"),
                     (b"X-Forwarded-For", b"1.2.3.4, \xff"), (b"Accept", b"*/*" * 1000)])
    | st.tuples(HEADER_NAME, HEADER_VALUE) | st.tuples(HEADER_NAME, HEADER_VALUE)
    | st.tuples(BROKEN_NAME, HEADER_VALUE),
    max_size=2,
)  # fmt: skip
QUERY = st.lists(
    st.tuples(
        st.sampled_from(["api_key", "since", "endpoint", "x"]) | st.text(max_size=5),
        st.sampled_from(
            ["<admin>", "<endpoint>", "nan", "inf", "-1e999", "1e400", "", "%ff", "%", "0x1"]
        )
        | st.text(max_size=20),
    ),
    max_size=3,
).map(lambda pairs: "&".join(f"{quote(k, safe='<>')}={quote(v, safe='<>%')}" for k, v in pairs))


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: str
    headers: list[tuple[bytes, bytes]]
    body: Body

    def encode(self, control: ControlPlane) -> bytes:
        if self.body.raw is not None:
            data = self.body.raw
        else:
            text = json.dumps(resolve(self.body.value, control), ensure_ascii=False)
            data = text.encode(self.body.encoding, "surrogatepass" if self.body.encoding
                               != "latin-1" else "replace")  # fmt: skip
        target = self.path + ("?" + self.query if self.query else "")
        line = f"{self.method} {target} HTTP/1.1".encode("latin-1", "replace")
        lines = [resolve(line, control), b"Host: x"]
        lines += [resolve(name, control) + b": " + resolve(value, control)
                  for name, value in self.headers]  # fmt: skip
        lines += [b"Content-Length: %d" % len(data), b"Connection: close"]
        return b"\r\n".join(lines) + b"\r\n\r\n" + data


def requests(path: str, fuzz: RouteFuzz) -> st.SearchStrategy[Request]:
    """Requests to ``path``: two in three well formed, with the route's method, one of the
    keys (or none) and an odd body, so that they reach the handler; the rest odd in
    every part (method, path, headers, body)."""
    own = sorted(fuzz.methods)
    paths = (st.just(path) if fuzz.name is None
             else fuzz.name.map(lambda name: path.replace("{name}", name)))  # fmt: skip
    plain_headers = st.sampled_from([[], *([(b"Authorization", b"Bearer <%s>" % s.value.encode())]
                                           for s in Secret)]).map(
        lambda auth: [*auth, (b"Content-Type", b"application/json")])  # fmt: skip
    plain = st.builds(Request, st.sampled_from(own), paths, st.just("") | QUERY, plain_headers,
                      fuzz.bodies)  # fmt: skip
    odd_paths = paths.flatmap(lambda p: st.sampled_from([
        p, p, p, p + "%ff", p + "/..", "/" + p, p.rstrip("/"), p + "\x80", p.upper(),
        "http://x" + p, p + "#frag", p + ";x",
    ]))  # fmt: skip
    odd_headers = st.builds(
        lambda auth, types, odd: [(b"Authorization", a) for a in auth]
        + [(b"Content-Type", t) for t in types] + odd,
        AUTHORIZATION, CONTENT_TYPES, ODD_HEADERS,
    ).flatmap(st.permutations)  # fmt: skip
    odd = st.builds(Request, st.sampled_from(own * 4 + METHODS), odd_paths, QUERY, odd_headers,
                    fuzz.bodies)  # fmt: skip
    return st.one_of(plain, plain, odd)


# -- the answer -----------------------------------------------------------------------

CLIENT_TIMEOUT_S = 10.0  # far beyond any answer here: past it, the control plane hung


async def read_answer(reader: asyncio.StreamReader, method: str) -> tuple[int, str, bytes]:
    """(status, content type, body) of the final answer (1xx skipped)."""
    while True:
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        status = int(status_line.split()[1])
        if status >= 200:
            break
    headers = dict((n.strip().lower(), v.strip()) for n, _, v in
                   (line.partition(":") for line in lines if line))  # fmt: skip
    if method == "HEAD" or status in (204, 304):
        body = b""
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await reader.read()
    return status, headers.get("content-type", ""), body


async def exchange(control: ControlPlane, request: Request) -> tuple[int, str, bytes]:
    return await send_raw(control, request.encode(control), request.method.upper())


async def send_raw(control: ControlPlane, data: bytes, method: str) -> tuple[int, str, bytes]:
    """Send ``data`` on a new connection; the final answer, within ``CLIENT_TIMEOUT_S``."""
    host, port = host_port(control.url)
    async with asyncio.timeout(CLIENT_TIMEOUT_S):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(data)
            return await read_answer(reader, method)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


def check(request: Request, status: int, content_type: str, body: bytes) -> None:
    what = f"{request.method} {request.path[:80]} -> {status} {body[:300]!r}"
    assert status < 500, what
    if status >= 400:
        assert content_type.startswith("application/json"), what
        if request.method.upper() != "HEAD":
            error = orjson.loads(body)
            assert isinstance(error, dict), what
            assert isinstance(error.get("error"), str), what


# -- the tests ------------------------------------------------------------------------

FUZZ = settings(max_examples=1, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])  # fmt: skip


async def fuzzed_control(make_control: MakeControl, monkeypatch: pytest.MonkeyPatch,
                         http: aiohttp.ClientSession) -> ControlPlane:  # fmt: skip
    """A control plane with the fuzzed endpoint (a stub worker started) and the survivor."""
    monkeypatch.setattr("vespid.control.serve.make_provider", lambda *_: StubProvider())
    control = await make_control(route_hold_s=0)
    for name, scaling in ((FUZZED, {"max_workers": 2}),
                          (SURVIVOR, {"max_workers": 0})):  # fmt: skip
        code, _ = await admin(http, control, "POST", "/api/v0/endpoints",
                              {"name": name, "scaling": scaling})  # fmt: skip
        assert code == 201
    key = control.endpoints[FUZZED].api_key
    async with http.post(
        control.url + "/route/", json={"endpoint": FUZZED, "api_key": key, "cost": 1}
    ) as resp:
        assert resp.status == 200  # queued: a worker of the fuzzed endpoint starts
    await wait_until(lambda: bool(control.fleet.of(FUZZED)), 10)
    return control


async def test_every_route_has_a_fuzz_strategy(
    make_control: MakeControl, monkeypatch: pytest.MonkeyPatch, http: aiohttp.ClientSession
) -> None:
    control = await fuzzed_control(make_control, monkeypatch, http)
    routes = app_routes(control)
    assert {p: ROUTES[p].methods for p in routes if p in ROUTES} == {
        p: m for p, m in routes.items() if p in ROUTES
    }, "a route's methods changed: update ROUTES"
    assert not set(routes) - set(ROUTES), "routes with no fuzz strategy in ROUTES"
    assert not set(ROUTES) - set(routes), "ROUTES names routes the app no longer has"


async def test_every_route_survives_the_fuzz(
    make_control: MakeControl,
    monkeypatch: pytest.MonkeyPatch,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    control = await fuzzed_control(make_control, monkeypatch, http)
    caplog.set_level(logging.WARNING)
    assert set(app_routes(control)) == set(ROUTES)
    loop = asyncio.get_running_loop()
    statuses: Counter[int] = Counter()

    def send(request: Request) -> None:
        future = asyncio.run_coroutine_threadsafe(exchange(control, request), loop)
        status, content_type, body = future.result(CLIENT_TIMEOUT_S + 5)
        statuses[status] += 1
        check(request, status, content_type, body)

    def fuzz(path: str, route: RouteFuzz) -> Callable[[], None]:
        @settings(FUZZ, max_examples=route.examples)
        @given(requests(path, route))
        def one_route(request: Request) -> None:
            send(request)

        return one_route

    for path, route in ROUTES.items():
        await asyncio.to_thread(fuzz(path, route))
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [(r.name, r.getMessage()[:300]) for r in errors]
    sent = sum(statuses.values())
    print(f"\nfuzzed {sent} requests over {len(ROUTES)} paths: {sorted(statuses.items())}")
    assert sent >= sum(r.examples for r in ROUTES.values())
    # The control plane still serves: its status, and a real request routed.
    async with http.get(control.url + "/api/v0/status") as resp:
        assert resp.status == 200
        assert SURVIVOR in [e["name"] for e in (await resp.json())["endpoints"]]
    key = control.endpoints[SURVIVOR].api_key
    async with http.post(
        control.url + "/route/", json={"endpoint": SURVIVOR, "api_key": key, "cost": 1}
    ) as resp:
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["request_idx"] >= 1


# -- what the fuzz found, each pinned -------------------------------------------------


async def test_an_unknown_expect_is_refused_as_json(
    make_control: MakeControl, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp refuses an ``Expect`` other than ``100-continue`` before any middleware
    runs: it was a text/plain 417; and a body it left unread that does not decode (which
    aiohttp drains after the answer) logged a traceback."""
    control = await make_control()
    caplog.set_level(logging.WARNING)
    for path in ("/route/", "/api/v0/status", "/nowhere"):
        for body, encoding in ((b"{}", b""), (b"\x00\x01 not deflate", b"deflate")):
            answer = await raw_exchange(
                control.url, f"POST {path} HTTP/1.1\r\nHost: x\r\nExpect: sometime\r\n"
                f"Content-Length: {len(body)}\r\n".encode()
                + (b"Content-Encoding: " + encoding + b"\r\n" if encoding else b"")
                + b"\r\n" + body,
            )  # fmt: skip
            assert answer.status == 417, path
            assert answer.json()["code"] == "expectation_failed"
            assert "sometime" in answer.json()["error"]
    await wait_until(lambda: any("malformed request body" in r.getMessage()
                                 for r in caplog.records))  # fmt: skip
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    status, _, body = await send_raw(control, b"POST /route/ HTTP/1.1\r\nHost: x\r\n"
                                     b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n{}",
                                     "POST")  # fmt: skip
    assert (status, orjson.loads(body)["code"]) == (422, "invalid_request")  # read as before


async def test_a_body_that_does_not_decode_is_a_json_400_in_one_line(
    make_control: MakeControl, http: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """A ``Content-Encoding`` whose body does not decode was a 500 (and two tracebacks)."""
    control = await make_control(route_hold_s=0)
    caplog.set_level(logging.WARNING)
    _, ep = await admin(http, control, "POST", "/api/v0/endpoints",
                        {"name": "e", "scaling": {"max_workers": 0}})  # fmt: skip
    for encoding in ("gzip", "deflate"):
        for path in ("/route/", "/worker_status/", "/api/v0/status"):
            body = b"\x00\x01 not " + encoding.encode()
            answer = await raw_exchange(
                control.url, f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Encoding: {encoding}"
                f"\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body,
            )  # fmt: skip
            assert answer.status == 400, (encoding, path, answer.body)
            error = answer.json()
            assert error["code"] == "bad_request"
            assert f"content-encoding: {encoding}" in error["error"], error
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert all(r.exc_info is None for r in caplog.records)
    # A body that does decode is read as before.
    route = gzip.compress(orjson.dumps({"endpoint": "e", "api_key": ep["api_key"], "cost": 1}))
    async with http.post(control.url + "/route/", data=route,
                         headers={"Content-Encoding": "gzip"}) as resp:  # fmt: skip
        assert resp.status == 200, await resp.text()


async def test_worker_counts_have_a_ceiling(
    make_control: MakeControl, http: aiohttp.ClientSession
) -> None:
    """``max_workers`` and ``cold_workers`` had no ceiling: one admin call with 10**6 of
    each made a scaling step spawn a million starts (the loop then spent minutes on them,
    and shutdown waited for them all)."""
    control = await make_control()
    for field in ("max_workers", "cold_workers"):
        for value in (10**6, 2**63, MAX_WORKERS + 1):
            code, err = await admin(http, control, "POST", "/api/v0/endpoints",
                                    {"name": "big", "scaling": {field: value}})  # fmt: skip
            assert code == 422, (field, value)
            assert f"from 0 to {MAX_WORKERS}" in err["fields"][f"scaling.{field}"]
    code, _ = await admin(http, control, "POST", "/api/v0/endpoints",
                          {"name": "big", "scaling": {"max_workers": MAX_WORKERS}})  # fmt: skip
    assert code == 201
    code, _ = await admin(http, control, "PUT", "/api/v0/endpoints/big",
                          {"scaling": {"cold_workers": 10**6}})  # fmt: skip
    assert code == 422
    assert control.endpoints["big"].scaling.cold_workers == 0
