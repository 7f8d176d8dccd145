"""The session demo as a load test: open sessions one by one, hold, close one by one.

``SessionRun(plan).execute(client)`` starts opening session ``i`` at ``i *
interval_s`` (each open routes like a request, so it waits while the endpoint
scales up; a slow open does not hold the next one back), holds the plateau for
``plateau_s`` once every open has ended, then closes the open sessions one at a
time, ``interval_s`` apart, in the order they opened. What is measured: each
session's open latency and worker, and the endpoint's workers over time. Made
for null workers (one session each, ``cost = max_perf = 100``), it works against
any endpoint whose workers take sessions.

Bounded like a request run: past ``max_time_s``, or once ``stop`` is set, opens
still waiting are cancelled and every open session is closed before returning.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from vespid.client.endpoint import Endpoint
from vespid.client.errors import ClientError, RequestTimeout
from vespid.client.session import Session
from vespid.errors import ConfigError
from vespid.loadtest.runner import Progress, Run, check_positive

__all__ = ["SessionPlan", "SessionRecord", "SessionRun"]


@dataclass(frozen=True, slots=True)
class SessionPlan:
    """How many sessions, their spacing, the plateau, and the bounds on time."""

    endpoint: str
    sessions: int
    interval_s: float = 30.0
    plateau_s: float = 300.0
    cost: float = 100.0
    lifetime_s: float | None = None
    open_timeout_s: float = 600.0
    max_time_s: float = 3600.0
    sample_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if self.sessions < 1:
            raise ConfigError(f"the number of sessions must be at least 1 (got {self.sessions})")
        for name in ("interval_s", "plateau_s", "cost"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0 (got {getattr(self, name)!r})")
        for name in ("lifetime_s", "open_timeout_s", "max_time_s", "sample_interval_s"):
            check_positive(name, getattr(self, name))

    @property
    def lifetime(self) -> float:
        """The sessions' lifetime: as given, else long enough to outlast the whole run
        (every open, the plateau, every close) with a minute to spare."""
        if self.lifetime_s is not None:
            return self.lifetime_s
        return 2 * self.sessions * self.interval_s + self.plateau_s + 60.0

    def describe(self) -> str:
        return (
            f"{self.sessions} sessions of cost {self.cost:g}, {self.interval_s:g} s apart, "
            f"plateau {self.plateau_s:g} s"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "endpoint": self.endpoint,
            "sessions": self.sessions,
            "interval_s": self.interval_s,
            "plateau_s": self.plateau_s,
            "cost": self.cost,
            "lifetime_s": self.lifetime,
            "open_timeout_s": self.open_timeout_s,
            "max_time_s": self.max_time_s,
            "sample_interval_s": self.sample_interval_s,
        }


@dataclass(slots=True)
class SessionRecord:
    """One session: when it was asked for, opened and closed (seconds into the run)."""

    index: int
    started_s: float
    outcome: str = "pending"  # "open", "closed", "cancelled", or a client error code
    open_latency_s: float | None = None
    opened_s: float | None = None
    closed_s: float | None = None
    worker: str | None = None
    session_id: str | None = None
    error: str | None = None

    @property
    def opened(self) -> bool:
        return self.opened_s is not None

    def to_json(self) -> dict[str, Any]:
        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {
            "index": self.index,
            "started_s": r(self.started_s),
            "outcome": self.outcome,
            "open_latency_s": r(self.open_latency_s),
            "opened_s": r(self.opened_s),
            "closed_s": r(self.closed_s),
            "worker": self.worker,
            "session_id": self.session_id,
            "error": self.error,
        }


class SessionRun(Run):
    """One session demo; ``records`` fill in as sessions open and close."""

    def __init__(self, plan: SessionPlan) -> None:
        super().__init__()
        self.plan = plan
        self.endpoint_name = plan.endpoint
        self.max_time_s = plan.max_time_s
        self.sample_interval_s = plan.sample_interval_s
        self.records: list[SessionRecord] = []
        self.phase = "opening"
        self.plateau_ends_s: float | None = None
        self._open: dict[int, Session] = {}

    async def _drive(self, endpoint: Endpoint) -> None:
        opens: list[asyncio.Task[None]] = []
        try:
            for index in range(self.plan.sessions):
                await self._sleep_until(index * self.plan.interval_s)
                opens.append(asyncio.create_task(self._open_one(endpoint, index)))
            await asyncio.wait(opens)
            self.phase = "plateau"
            self.plateau_ends_s = self.now_s() + self.plan.plateau_s
            await asyncio.sleep(self.plan.plateau_s)
            self.phase = "closing"
            for n, index in enumerate(sorted(self._open, key=self._opened_at)):
                if n:
                    await asyncio.sleep(self.plan.interval_s)
                await self._close_one(index)
            self.phase = "done"
        finally:
            for task in opens:
                task.cancel()
            if opens:
                await asyncio.wait(opens)
            for index in list(self._open):  # cut short: leave no session behind
                await self._close_one(index)

    def _opened_at(self, index: int) -> float:
        return self.records[index].opened_s or 0.0

    async def _open_one(self, endpoint: Endpoint, index: int) -> None:
        rec = SessionRecord(index, started_s=self.now_s())
        self.records.append(rec)
        session = endpoint.session(
            cost=self.plan.cost, lifetime=self.plan.lifetime, timeout_s=self.plan.open_timeout_s
        )
        try:
            await session.open()
        except asyncio.CancelledError:
            rec.outcome = "cancelled"
            raise
        except RequestTimeout as exc:
            rec.outcome, rec.error = "timeout", exc.message[:500]
        except ClientError as exc:
            rec.outcome, rec.error = exc.code, exc.message[:500]
        else:
            rec.opened_s = self.now_s()
            rec.open_latency_s = rec.opened_s - rec.started_s
            rec.worker, rec.session_id = session.url, session.session_id
            rec.outcome = "open"
            self._open[index] = session

    async def _close_one(self, index: int) -> None:
        session = self._open.pop(index)
        rec = self.records[index]
        # Shielded, and awaited even when the run is cut short meanwhile, so that no
        # session is left open on its worker; the client bounds it (control timeout).
        closing = asyncio.ensure_future(session.close())
        try:
            await asyncio.shield(closing)
        except asyncio.CancelledError:
            await asyncio.wait({closing})
            raise
        except ClientError as exc:
            rec.error = f"closing: {exc.message[:500]}"
        finally:
            if closing.done() and not closing.cancelled():
                closing.exception()  # retrieved: it was recorded above, or is re-raised
            rec.closed_s = self.now_s()
            rec.outcome = "closed"

    def open_count(self) -> int:
        return len(self._open)

    def progress(self) -> Progress:
        now = self.now_s()
        opened = sum(r.opened for r in self.records)
        failed = sum(r.outcome not in ("pending", "open", "closed") for r in self.records)
        phase = self.phase
        if phase == "plateau" and self.plateau_ends_s is not None:
            phase = f"plateau, {max(0.0, self.plateau_ends_s - now):.0f} s left"
        text = f"{phase}, opened {opened}, open now {self.open_count()}, failed {failed}"
        return Progress(now, opened + failed, self.plan.sessions, text + self._workers_text())
