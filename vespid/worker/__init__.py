"""The worker: runs beside a model server, checks signatures, queues, proxies, reports."""

from __future__ import annotations

from vespid.worker.app import Worker
from vespid.worker.lifecycle import WorkerState
from vespid.worker.serve import ServedWorker, running_worker, serve
from vespid.worker.settings import WorkerSettings, load_worker_settings

__all__ = [
    "ServedWorker",
    "Worker",
    "WorkerSettings",
    "WorkerState",
    "load_worker_settings",
    "running_worker",
    "serve",
]
