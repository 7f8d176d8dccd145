"""``vespid simulate``: a deterministic, trace-driven simulator of an endpoint's fleet.

It replays a load (``load.py``: a trace CSV or a generated shape) on workers of a
documented model (``model.py``, ``workers.py``) under scaling policies (``policies.py``:
the control plane's own ``decide()`` and published baselines), on simulated time
(``engine.py``; two baselines in ``baselines.py``), and reports each policy's cost and
queue waits as a table, JSON and an SVG timeline (``report.py``). See docs/simulate.md.
"""

from __future__ import annotations

from vespid.simulate.baselines import RayServe, VastLike
from vespid.simulate.engine import Result, Sample, percentile, simulate
from vespid.simulate.load import Arrival, LoadShape, LoadSpec, generate, read_trace
from vespid.simulate.model import WorkerModel
from vespid.simulate.policies import Action, FixedPool, KnativeKPA, Policy, VespidPolicy

__all__ = [
    "Action",
    "Arrival",
    "FixedPool",
    "KnativeKPA",
    "LoadShape",
    "LoadSpec",
    "Policy",
    "RayServe",
    "Result",
    "Sample",
    "VastLike",
    "VespidPolicy",
    "WorkerModel",
    "generate",
    "percentile",
    "read_trace",
    "simulate",
]
