"""Reports to the autoscaler stand-in: fields, cadence, failover, the public key."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from tests.support.servers import Autoscaler, ScriptedBackend, start_app
from tests.support.waiting import wait_until
from tests.worker.conftest import MakeWorker, envelope
from vespid.protocol.signing import encode_request_key, worker_request_key
from vespid.servers.process import free_port
from vespid.worker.books import MAX_FINISHED, Books
from vespid.worker.metrics import WorkerMetrics

STATUS_FIELDS = {
    "id", "mtoken", "version", "loadtime", "new_load", "cur_load", "rej_load", "max_perf",
    "cur_perf", "error_msg", "num_requests_working", "num_requests_recieved",
    "additional_disk_usage", "disk_usage", "working_request_idxs", "cur_capacity",
    "max_capacity", "url", "num_sessions", "waiting_load", "parked", "waiting_age", "slots",
    "free_slots",
}  # fmt: skip


def signed(scaler: Autoscaler, url: str, cost: float, **over: Any) -> dict[str, Any]:
    return scaler.sign_for(url, cost, **over)


async def test_status_and_finished_requests_are_reported(
    make_signed_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    http: aiohttp.ClientSession,
) -> None:
    scaler, _ = autoscaler
    worker = await make_signed_worker(
        VESPID_MAX_PERF="50",
        CONTAINER_ID="17",
        MASTER_TOKEN="tok",
        PUBLIC_IPADDR="127.0.0.1",
        VAST_TCP_PORT_0="40000",
    )
    url = "http://127.0.0.1:40000"
    await scaler.wait_for(lambda s: any(r["loadtime"] > 0 for r in s.status_reports))
    ready = next(r for r in scaler.status_reports if r["loadtime"] > 0)
    assert set(ready) == STATUS_FIELDS
    assert (ready["id"], ready["mtoken"], ready["url"], ready["max_perf"]) == (17, "tok", url, 50)
    assert (ready["cur_capacity"], ready["max_capacity"]) == (0, 0)
    assert (ready["slots"], ready["free_slots"]) == (0, 0)  # no concurrency limit
    auths = [signed(scaler, url, cost) for cost in (3, 4)]
    for auth in auths:
        async with http.post(worker.url + "/echo", json=envelope(auth, {})) as resp:
            assert resp.status == 200
    async with http.post(
        worker.url + "/status/500", json=envelope(signed(scaler, url, 5), {})
    ) as r:
        assert r.status == 500

    def served(s: Autoscaler) -> bool:
        return (
            sum(r["cur_perf"] for r in s.status_reports) == 7
            and sum(len(d["requests"]) for d in s.delete_reports) == 3
        )

    await scaler.wait_for(served)
    assert sum(r["new_load"] for r in scaler.status_reports) == 12
    assert sum(r["num_requests_recieved"] for r in scaler.status_reports) == 3
    assert [r["loadtime"] > 0 for r in scaler.status_reports].count(True) == 1
    done = [req for d in scaler.delete_reports for req in d["requests"]]
    assert [(r["request_idx"], r["success"], r["status"]) for r in done] == [
        (auths[0]["request_idx"], True, 200),
        (auths[1]["request_idx"], True, 200),
        (auths[1]["request_idx"] + 1, False, 500),
    ]
    assert all(
        r["entered_queue_at"] <= r["work_started_at"] <= r["work_completed_at"] for r in done
    )
    assert scaler.delete_reports[0]["worker_id"] == 17
    assert scaler.delete_reports[0]["mtoken"] == "tok"
    assert not worker.worker.books.finished  # trimmed once reported


async def test_in_progress_work_is_reported_as_cur_load(
    make_signed_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    backend: tuple[ScriptedBackend, str],
    http: aiohttp.ClientSession,
) -> None:
    scaler, _ = autoscaler
    stand_in, _ = backend
    worker = await make_signed_worker(
        VESPID_MAX_PERF="50",
    )
    auth = signed(scaler, worker.url, 9)
    held = asyncio.create_task(http.post(worker.url + "/hold", json=envelope(auth, {"n": 1})))
    await scaler.wait_for(
        lambda s: any(r["working_request_idxs"] == [auth["request_idx"]] for r in s.status_reports)
    )
    report = next(r for r in scaler.status_reports if r["working_request_idxs"])
    assert (report["cur_load"], report["num_requests_working"]) == (9, 1)
    stand_in.release.set()
    (await held).release()


async def test_a_concurrency_limit_is_reported_as_slots_and_free_slots(
    make_signed_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    backend: tuple[ScriptedBackend, str],
    http: aiohttp.ClientSession,
) -> None:
    """With 2 slots and 3 requests held, the report says no slot is free and the third
    request's cost waits: what the router's wait estimate reads."""
    scaler, _ = autoscaler
    stand_in, _ = backend
    worker = await make_signed_worker(VESPID_MAX_PERF="50", VESPID_MAX_CONCURRENCY="2")
    await scaler.wait_for(lambda s: any(r["loadtime"] > 0 for r in s.status_reports))
    ready = next(r for r in scaler.status_reports if r["loadtime"] > 0)
    assert (ready["slots"], ready["free_slots"]) == (2, 2)
    held = []
    for cost in (4, 5, 6):
        auth = signed(scaler, worker.url, cost)
        body = envelope(auth, {"n": 1})
        held.append(asyncio.create_task(http.post(worker.url + "/hold", json=body)))
    await scaler.wait_for(lambda s: any(r["cur_load"] == 15 for r in s.status_reports))
    full = next(r for r in scaler.status_reports if r["cur_load"] == 15)
    assert (full["slots"], full["free_slots"], full["waiting_load"]) == (2, 0, 6)
    stand_in.release.set()
    for task in held:
        (await task).release()


async def test_public_key_fetched_with_backoff_and_reports_fail_over(
    make_worker: MakeWorker, backend: tuple[ScriptedBackend, str], http: aiohttp.ClientSession
) -> None:
    _, backend_url = backend
    scaler = Autoscaler(serve_key=False)
    dead = f"http://127.0.0.1:{free_port()}"
    async with start_app(scaler.app()) as scaler_url:
        worker = await make_worker(
            wait_ready=False,
            BACKEND_URL=backend_url,
            REPORT_ADDR=f"{dead},{scaler_url}",
            VESPID_MAX_PERF="50",
        )
        await wait_until(lambda: scaler.pubkey_requests >= 2)  # refused once, asked again
        scaler.serve_key = True
        auth = signed(scaler, worker.url, 1)
        async with http.post(worker.url + "/echo", json=envelope(auth, {})) as resp:
            assert resp.status == 200  # waited for the key, then verified
        await scaler.wait_for(lambda s: len(s.delete_reports) == 1)
        assert worker.worker.reporter.failed == 0


async def test_hmac_tagged_requests_need_no_public_key(
    make_worker: MakeWorker, backend: tuple[ScriptedBackend, str], http: aiohttp.ClientSession
) -> None:
    """A worker given its request key serves HMAC-tagged requests while the router's
    public key is still unavailable."""
    _, backend_url = backend
    scaler = Autoscaler(serve_key=False)
    key = worker_request_key(b"control-plane-secret", 1)
    async with start_app(scaler.app()) as scaler_url:
        worker = await make_worker(
            BACKEND_URL=backend_url,
            REPORT_ADDR=scaler_url,
            VESPID_MAX_PERF="50",
            VESPID_REQUEST_KEY=encode_request_key(key),
        )
        await wait_until(lambda: scaler.pubkey_requests >= 1)
        auth = signed(scaler, worker.url, 1, worker_key=key)
        async with http.post(worker.url + "/echo", json=envelope(auth, {})) as resp:
            assert resp.status == 200, await resp.text()
        wrong = signed(scaler, worker.url, 1, worker_key=worker_request_key(b"other", 1))
        async with http.post(worker.url + "/echo", json=envelope(wrong, {})) as resp:
            assert resp.status == 401
            assert "does not match" in (await resp.json())["error"]
        assert worker.worker.router_key.verifier is not None
        assert worker.worker.router_key.verifier.public_key is None  # never needed


async def test_errored_worker_reports_error_msg(
    make_worker: MakeWorker,
    autoscaler: tuple[Autoscaler, str],
    backend: tuple[ScriptedBackend, str],
) -> None:
    scaler, scaler_url = autoscaler
    stand_in, backend_url = backend
    await make_worker(
        BACKEND_URL=backend_url,
        REPORT_ADDR=scaler_url,
        VESPID_MAX_PERF="50",
        HEALTHCHECK_ENDPOINT="/health",
        VESPID_HEALTH_INTERVAL_S="0.05",
    )
    stand_in.healthy = False
    await scaler.wait_for(lambda s: any(r["error_msg"] for r in s.status_reports))
    msg = next(r["error_msg"] for r in scaler.status_reports if r["error_msg"])
    assert "health check failed" in msg


async def test_finished_books_are_bounded() -> None:
    from vespid.worker.books import Books
    from vespid.worker.metrics import WorkerMetrics

    books = Books(WorkerMetrics())
    for i in range(MAX_FINISHED + 500):
        books.finish(books.receive(i, 1.0), 200)
    assert len(books.finished) == MAX_FINISHED
    assert not books.working
    assert len(books.take_finished()) == MAX_FINISHED
    assert not books.finished


def test_waiting_age_is_the_oldest_request_without_a_backend_slot() -> None:
    """Received at 100 and 103, neither started: 10 s at 110; once the first has a slot,
    7 s; a session never waits; nothing waiting: 0."""
    books = Books(WorkerMetrics(), keep_finished=False)
    first, second = books.receive(1, 5.0), books.receive(2, 5.0)
    first.entered_queue_at, second.entered_queue_at = 100.0, 103.0
    books.receive(3, 5.0, is_session=True).entered_queue_at = 90.0
    assert books.waiting_age(110.0) == 10.0
    first.work_started_at = 108.0
    assert books.waiting_age(110.0) == 7.0
    books.finish(second, 200)
    assert books.waiting_age(110.0) == 0.0
