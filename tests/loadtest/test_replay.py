"""A replay's plan and payloads: each request at its arrival's time, with its sizes."""

from __future__ import annotations

import pytest

from vespid.errors import ConfigError
from vespid.loadtest.plan import LoadPlan
from vespid.loadtest.replay import ArrivalPayloads, replay_plan
from vespid.simulate import Arrival

ARRIVALS = [Arrival(0.0, 3, 10), Arrival(0.5, 1, 4), Arrival(2.0, 2, 7)]


def test_a_replay_starts_each_request_at_its_arrival_with_its_sizes() -> None:
    plan = replay_plan("llm", ARRIVALS, grace_s=5)
    assert [plan.start_s(i) for i in range(3)] == [0.0, 0.5, 2.0]
    assert (plan.requests, plan.max_time_s) == (3, 7.0)
    payload = ArrivalPayloads(ARRIVALS)(0)
    assert payload.path == "/v1/completions"
    assert payload.body == {"prompt": "token token token", "max_tokens": 10}
    assert payload.cost == 10.0


def test_a_plan_without_a_schedule_keeps_its_rate() -> None:
    assert LoadPlan("llm", 4, rps=2).start_s(3) == 1.5


@pytest.mark.parametrize(
    ("arrivals", "words"),
    [([], "nothing to replay"), (ARRIVALS[::-1], "in time order")],
)
def test_a_load_that_cannot_be_replayed_is_refused(arrivals: list[Arrival], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        replay_plan("llm", arrivals)


def test_a_schedule_shorter_than_the_requests_is_refused() -> None:
    with pytest.raises(ConfigError, match="a start time for each of the 3 requests"):
        LoadPlan("llm", 3, rps=1, schedule=(0.0, 1.0))
