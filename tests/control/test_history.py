"""The rolling history behind the status page's charts: samples, waits, bounds, the API."""

from __future__ import annotations

import time
from typing import Any

import aiohttp
import pytest

from tests.control.conftest import MakeControl, admin
from tests.support.waiting import wait_until
from vespid.control.fleet import Fleet
from vespid.control.history import History
from vespid.control.models import EndpointConfig, ScalingConfig
from vespid.control.providers.base import WorkerHandle
from vespid.control.router import Router
from vespid.errors import Overloaded
from vespid.protocol.signing import Signer, generate_private_key
from vespid.protocol.wire import FinishedRequest, WorkerStatusReport


@pytest.fixture(scope="module")
def signer() -> Signer:
    return Signer(generate_private_key())


def ready_worker(fleet: Fleet, endpoint: str, max_perf: float) -> None:
    fleet.add(WorkerHandle(1, endpoint, "http://127.0.0.1:9", started_at=time.time()))
    fleet.ingest(WorkerStatusReport(id=1, mtoken="", max_perf=max_perf, cur_load=0))


def test_the_docstring_example(signer: Signer) -> None:
    """3 requests arrive in a second: 2 routed at once, 1 queued; one that had waited
    2.5 s is routed too. Mean wait (0 + 0 + 2.5) / 3, max 2.5 s."""
    endpoint = EndpointConfig(name="e", scaling=ScalingConfig(max_queue_time=30))
    endpoints = {"e": endpoint}
    fleet = Fleet()
    router = Router(fleet, signer, max_queued=10)
    history = History(endpoints, fleet, router)

    waiter = router.route(endpoint, 110, 0)  # no worker yet: queued
    start = time.monotonic()
    history.sample(now=1000.0, mono=start)
    first = history.series["e"][-1]
    assert (first.requests_per_s, first.routed_per_s, first.queued) == (1, 0, 1)
    assert first.wait_mean_s is None  # nothing routed in that second

    router.queue("e")[waiter["request_idx"]].enqueued_at -= 2.5
    ready_worker(fleet, "e", max_perf=10)  # 110 workload is 11 s of its time
    answers = [router.route(endpoint, 110, waiter["request_idx"])]
    answers += [router.route(endpoint, 110, 0) for _ in range(3)]
    # Waits of 11, 22, 33 s: the third new request is over max_queue_time, so it queues.
    assert ["url" in a for a in answers] == [True, True, True, False]
    history.sample(now=1001.0, mono=start + 1.0)

    s = history.series["e"][-1]
    assert (s.requests_per_s, s.routed_per_s, s.rejected_per_s, s.queued) == (3, 3, 0, 1)
    assert s.wait_mean_s == pytest.approx(2.5 / 3, abs=0.01)
    assert s.wait_max_s == pytest.approx(2.5, abs=0.01)
    assert s.workers == {
        "starting": 0,
        "ready": 1,
        "waking": 0,
        "draining": 0,
        "parked": 0,
        "errored": 0,
    }
    assert s.load == 330  # routed since the worker's last report
    assert history.router.take_tally("e").arrived == 0  # the sample took the tally


def finished(waited_s: float, worked_s: float = 1.0, at: float = 1000.0) -> FinishedRequest:
    """A request a worker reports finished after ``waited_s`` in its queue and
    ``worked_s`` past it (at the model server)."""
    started = at + waited_s
    return {"request_idx": 1, "success": True, "status": 200, "entered_queue_at": at,
            "work_started_at": started, "work_completed_at": started + worked_s}  # fmt: skip


def test_waits_in_the_workers_are_sampled_beside_the_routers(signer: Signer) -> None:
    """Regression: a load test on the demo took 17 s a request while the page's queue wait
    said 0 s, since the wait was in the worker, not in the router's queue. Two requests
    reported finished after 17 s and 5 s in a worker's queue and 1 s of work: queue wait
    mean 11 s, max 17 s; time in the worker mean 12 s, max 18 s."""
    endpoint = EndpointConfig(name="e")
    fleet = Fleet()
    router = Router(fleet, signer, max_queued=10)
    history = History({"e": endpoint}, fleet, router)
    ready_worker(fleet, "e", max_perf=10)
    router.route(endpoint, 1, 0)  # routed at once: 0 s in the router's queue
    no_times: FinishedRequest = {"request_idx": 3, "success": False}  # counted, no wait
    history.note_finished("e", [finished(waited_s=17.0), finished(waited_s=5.0), no_times])
    history.sample(now=1000.0, mono=0.0)
    s = history.series["e"][-1]
    assert (s.wait_mean_s, s.wait_max_s) == (0, 0)
    assert s.finished_per_s == 3
    assert (s.worker_wait_mean_s, s.worker_wait_max_s) == (11, 17)  # (17 + 5) / 2; the
    assert (s.worker_time_mean_s, s.worker_time_max_s) == (12, 18)  # third said nothing
    history.sample(now=1001.0, mono=1.0)  # nothing finished since: nothing to say
    s = history.series["e"][-1]
    assert s.finished_per_s == 0
    assert (s.worker_wait_mean_s, s.worker_wait_max_s, s.worker_time_max_s) == (None,) * 3


def test_a_wait_at_the_model_server_shows_as_time_in_the_worker(signer: Signer) -> None:
    """Regression: the demo's worker passes every request on to llama.cpp, which queues
    what its 2 slots cannot take; requests took 80 s with 0 s in both queues. The time
    in the worker (entered to completed) says 80 s."""
    fleet = Fleet()
    history = History({"e": EndpointConfig(name="e")}, fleet, Router(fleet, signer, max_queued=1))
    history.note_finished("e", [finished(waited_s=0.0, worked_s=80.0)])
    history.sample(now=1000.0, mono=0.0)
    s = history.series["e"][-1]
    assert (s.worker_wait_max_s, s.worker_time_max_s) == (0, 80)


def test_recent_waits_weigh_each_sample_by_its_requests(signer: Signer) -> None:
    fleet = Fleet()
    history = History({"e": EndpointConfig(name="e")}, fleet, Router(fleet, signer, max_queued=1))
    history.note_finished("e", [finished(waited_s=9.0)])
    history.sample(now=1000.0, mono=0.0)
    history.note_finished("e", [finished(waited_s=3.0), finished(waited_s=3.0)])
    history.sample(now=1001.0, mono=1.0)
    history.sample(now=1002.0, mono=2.0)  # nothing finished
    assert history.recent_waits("e") == {
        "window_s": 10.0,
        "router_queue": {"mean_s": None, "max_s": None},
        "worker_queue": {"mean_s": 5.0, "max_s": 9.0},  # (9 + 3 + 3) / 3 and the longest
        "in_worker": {"mean_s": 6.0, "max_s": 10.0},  # each 1 s more
    }
    recent = history.recent_waits("e", window_s=1.5)
    assert recent["worker_queue"] == {"mean_s": 3.0, "max_s": 3.0}
    assert history.recent_waits("gone")["in_worker"] == {"mean_s": None, "max_s": None}


def test_rates_are_per_second_of_the_real_interval(signer: Signer) -> None:
    endpoint = EndpointConfig(name="e", scaling=ScalingConfig(max_workers=0))
    fleet = Fleet()
    router = Router(fleet, signer, max_queued=2)
    history = History({"e": endpoint}, fleet, router)
    history.sample(now=1000.0, mono=50.0)
    router.route(endpoint, 1, 0)
    router.route(endpoint, 1, 0)
    for _ in range(2):  # the queue holds max_queued=2: refused
        with pytest.raises(Overloaded):
            router.route(endpoint, 1, 0)
    history.sample(now=1002.0, mono=52.0)  # 2 s since the last sample
    s = history.series["e"][-1]
    assert (s.requests_per_s, s.rejected_per_s, s.routed_per_s, s.queued) == (2, 1, 0, 2)


def test_ring_buffer_is_bounded_and_since_filters(signer: Signer) -> None:
    endpoint = EndpointConfig(name="e")
    fleet = Fleet()
    history = History({"e": endpoint}, fleet, Router(fleet, signer, max_queued=1), window_s=5)
    for i in range(8):
        history.sample(now=1000.0 + i, mono=float(i))
    times = [s["t"] for s in history.to_json()["endpoints"]["e"]]
    assert times == [1003.0, 1004.0, 1005.0, 1006.0, 1007.0]
    assert [s["t"] for s in history.to_json(since=1005.0)["endpoints"]["e"]] == [1006.0, 1007.0]
    assert history.to_json(names=["other"])["endpoints"] == {}


def test_scaling_actions_land_in_the_next_sample_and_deleted_endpoints_go(
    signer: Signer,
) -> None:
    endpoints = {"e": EndpointConfig(name="e")}
    fleet = Fleet()
    history = History(endpoints, fleet, Router(fleet, signer, max_queued=1))
    history.note_action("e", "start")
    history.note_action("e", "start")
    history.note_action("e", "stop")
    history.sample(now=1000.0, mono=0.0)
    history.sample(now=1001.0, mono=1.0)
    assert [(s.started, s.stopped) for s in history.series["e"]] == [(2, 1), (0, 0)]
    del endpoints["e"]
    history.sample(now=1002.0, mono=2.0)
    assert history.to_json()["endpoints"] == {}


async def test_history_route_and_status_page_are_served(
    make_control: MakeControl, http: aiohttp.ClientSession
) -> None:
    control = await make_control()
    spec = {"name": "q", "api_key": "key-of-q-123", "scaling": {"max_workers": 0}}
    assert (await admin(http, control, "POST", "/api/v0/endpoints", spec))[0] == 201
    body = {"endpoint": "q", "api_key": "key-of-q-123", "cost": 5}
    async with http.post(control.url + "/route/", json=body) as resp:
        assert resp.status == 200  # queued: max_workers=0 starts nothing

    async def samples(query: str = "") -> list[dict[str, Any]]:
        async with http.get(control.url + "/api/v0/history" + query) as resp:
            assert resp.status == 200
            data = await resp.json()
        assert (data["interval_s"], data["window_s"]) == (1.0, 600.0)
        found: list[dict[str, Any]] = data["endpoints"].get("q", [])
        return found

    series = control.history.series
    await wait_until(lambda: any(s.requests_per_s for s in series.get("q", ())), timeout_s=10)
    seen = await samples()
    assert any(s["requests_per_s"] == 1 for s in seen)
    assert seen[-1]["queued"] == 1
    assert seen[-1]["wait_max_s"] > 0  # the queued request's wait so far
    assert all(s["t"] > seen[0]["t"] for s in await samples(f"?since={seen[0]['t']}&endpoint=q"))
    async with http.get(control.url + "/api/v0/history?since=soon") as resp:
        assert resp.status == 422
        assert (await resp.json())["fields"] == {"since": "expected a number"}

    for path, kind in [("/", "text/html"), ("/static/status.js", "text/javascript"),
                       ("/static/status.css", "text/css")]:  # fmt: skip
        async with http.get(control.url + path) as resp:
            assert resp.status == 200, path
            assert resp.content_type == kind
            assert resp.headers["Cache-Control"] == "no-cache"
            text = await resp.text()
            assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
            assert "https://" not in text  # nothing is fetched from the network


async def test_workers_queue_waits_reach_the_history_and_the_status(
    make_control: MakeControl, http: aiohttp.ClientSession
) -> None:
    """A worker's ``/delete_requests/`` report, over HTTP, shows in the next sample and in
    ``/api/v0/status`` beside the router's queue wait."""
    control = await make_control()
    spec = {"name": "q", "scaling": {"max_workers": 0}}
    assert (await admin(http, control, "POST", "/api/v0/endpoints", spec))[0] == 201
    control.fleet.add(WorkerHandle(7, "q", "http://127.0.0.1:9", started_at=time.time()))
    report = {"worker_id": 7, "mtoken": control.keys.worker_token(7),
              "requests": [finished(waited_s=17.0), finished(waited_s=5.0)]}  # fmt: skip
    async with http.post(control.url + "/delete_requests/", json=report) as resp:
        assert resp.status == 200
    series = control.history.series
    await wait_until(lambda: any(s.finished_per_s for s in series.get("q", ())), timeout_s=10)
    async with http.get(control.url + "/api/v0/history?endpoint=q") as resp:
        [sample] = [s for s in (await resp.json())["endpoints"]["q"] if s["finished_per_s"]]
    assert (sample["worker_wait_mean_s"], sample["worker_wait_max_s"]) == (11, 17)
    assert (sample["worker_time_mean_s"], sample["worker_time_max_s"]) == (12, 18)
    async with http.get(control.url + "/api/v0/status") as resp:
        [endpoint] = (await resp.json())["endpoints"]
    assert endpoint["waits"] == {
        "window_s": 10.0,
        "router_queue": {"mean_s": None, "max_s": None},
        "worker_queue": {"mean_s": 11, "max_s": 17},
        "in_worker": {"mean_s": 12, "max_s": 18},
    }
