"""The rollouts of every endpoint: the state ``rollout.roll`` carries between decisions,
and the last good revision's template, which new workers start on while a rollout is
halted. The autoscaler asks it, per endpoint and decision, for the adjusted decision and
the endpoint (template and revision) its new workers start with. Event-loop only.

Both are kept in the store (``save`` after each step, only what changed; ``load`` at
start), so a control plane restarted during a halted rollout keeps it halted, its new
workers on the last good template, and one restarted mid-rollout goes on with it. A row
is ``{"revision", "good_revision", "halted", "target", "good"}`` (``good``: the last good
revision's ``{"revision", "template"}``, or null); one that does not load (a store
written by a later vespid, say) is logged and forgotten, and that rollout starts afresh.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vespid.control.models import EndpointConfig, WorkerTemplate
from vespid.control.policy import Decision, ScalingSnapshot, WorkerView
from vespid.control.rollout import RolloutState, roll, rollout_status
from vespid.control.store import Store

__all__ = ["Rollouts"]

log = logging.getLogger("vespid.control")


class _KeptGood(BaseModel):
    model_config = ConfigDict(extra="ignore")

    revision: int = Field(ge=1)
    template: WorkerTemplate


class _KeptRollout(BaseModel):
    """A rollout as the store keeps it."""

    model_config = ConfigDict(extra="ignore")

    revision: int = Field(ge=0)
    good_revision: int = Field(ge=0)
    halted: str
    target: int = Field(ge=0)
    good: _KeptGood | None = None


class Rollouts:
    """Rollout state and the last good template, by endpoint name, kept in ``store``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.states: dict[str, RolloutState] = {}
        self._good: dict[str, tuple[int, WorkerTemplate]] = {}  # the last good revision's
        self._kept: dict[str, tuple[RolloutState, int]] = {}  # as last kept: state, good rev

    def step(
        self, endpoint: EndpointConfig, snapshot: ScalingSnapshot, decision: Decision
    ) -> tuple[Decision, EndpointConfig]:
        """The decision adjusted for the endpoint's rollout, and the endpoint as its new
        workers start (on the last good revision while the rollout is halted)."""
        before = self.states.get(endpoint.name, RolloutState())
        step = roll(snapshot, decision, before)
        self.states[endpoint.name] = after = step.state
        if after.done:
            self._good[endpoint.name] = (endpoint.revision, endpoint.template)
        if after.halted and after.halted != before.halted:
            log.warning(
                "rollout of %s to revision %d halted: %s; the old workers keep serving, new "
                "ones start on revision %d (update or roll back to resume)",
                endpoint.name, after.revision, after.halted, step.start_revision,
            )  # fmt: skip
        return step.decision, self._at_revision(endpoint, step.start_revision)

    def status(self, endpoint: EndpointConfig, workers: list[WorkerView]) -> dict[str, Any]:
        """How the rollout of ``endpoint``'s current revision goes (``rollout_status``)."""
        state = self.states.get(endpoint.name, RolloutState())
        return rollout_status(state, endpoint.revision, workers)

    def forget(self, endpoint: str) -> None:
        """A deleted endpoint's rollout goes with it (its row goes with the endpoint's)."""
        self.states.pop(endpoint, None)
        self._good.pop(endpoint, None)
        self._kept.pop(endpoint, None)

    async def save(self) -> None:
        """Keep every rollout that changed since it was last kept."""
        for name in list(self.states):
            state = self.states.get(name)
            if state is None:  # forgotten while an earlier one was being kept
                continue
            good = self._good.get(name)
            now = (state, good[0] if good else 0)
            if self._kept.get(name) != now:
                self._kept[name] = now
                await self.store.put_rollout(name, _row(state, good))

    async def load(self, endpoints: Mapping[str, EndpointConfig]) -> None:
        """The rollouts an earlier run kept, for the endpoints in ``endpoints``."""
        for name, row in (await self.store.rollouts()).items():
            if name not in endpoints:
                continue
            try:
                kept = _KeptRollout.model_validate(row)
            except ValidationError as exc:
                log.warning(
                    "the kept rollout of %s does not load (%d error(s), first: %s); it "
                    "starts afresh", name, exc.error_count(), exc.errors()[0]["msg"],
                )  # fmt: skip
                continue
            state = RolloutState(kept.revision, kept.good_revision, kept.halted, kept.target)
            self.states[name] = state
            if kept.good is not None:
                self._good[name] = (kept.good.revision, kept.good.template)
            self._kept[name] = (state, kept.good.revision if kept.good else 0)
            if state.halted:
                log.info(
                    "the rollout of %s to revision %d stays halted: %s", name, state.revision,
                    state.halted,
                )  # fmt: skip

    def _at_revision(self, endpoint: EndpointConfig, revision: int) -> EndpointConfig:
        """``endpoint`` with the template of ``revision`` (its own, the last good one's, or
        the previous one's; its own if none of them is that revision)."""
        good = self._good.get(endpoint.name)
        if revision == endpoint.revision:
            return endpoint
        if good is not None and good[0] == revision:
            template = good[1]
        elif revision == endpoint.revision - 1 and endpoint.previous_template is not None:
            template = endpoint.previous_template
        else:
            return endpoint
        return endpoint.model_copy(update={"template": template, "revision": revision})


def _row(state: RolloutState, good: tuple[int, WorkerTemplate] | None) -> dict[str, Any]:
    """What the store keeps of one endpoint's rollout."""
    kept = None if good is None else _KeptGood(revision=good[0], template=good[1])
    return _KeptRollout(**dataclasses.asdict(state), good=kept).model_dump(mode="json")
