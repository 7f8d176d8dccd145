"""The rollouts of every endpoint: the state ``rollout.roll`` carries between decisions,
and the last good revision's template, which new workers start on while a rollout is
halted. The autoscaler asks it, per endpoint and decision, for the adjusted decision and
the endpoint (template and revision) its new workers start with. Event-loop only.
"""

from __future__ import annotations

import logging
from typing import Any

from vespid.control.models import EndpointConfig, WorkerTemplate
from vespid.control.policy import Decision, ScalingSnapshot, WorkerView
from vespid.control.rollout import RolloutState, roll, rollout_status

__all__ = ["Rollouts"]

log = logging.getLogger("vespid.control")


class Rollouts:
    """Rollout state and the last good template, by endpoint name."""

    def __init__(self) -> None:
        self.states: dict[str, RolloutState] = {}
        self._good: dict[str, tuple[int, WorkerTemplate]] = {}  # the last good revision's

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
        """A deleted endpoint's rollout goes with it."""
        self.states.pop(endpoint, None)
        self._good.pop(endpoint, None)

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
