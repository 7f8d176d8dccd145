"""The local provider hands out GPUs from CUDA_VISIBLE_DEVICES and takes them back."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import aiohttp
import pytest

from tests.control.conftest import admin
from tests.support.waiting import wait_until
from vespid.control.models import EndpointConfig, WorkerTemplate
from vespid.control.policy import WorkerPhase
from vespid.control.providers.base import GpuLedger, RunState, WorkerOrder
from vespid.control.providers.local import LocalProvider
from vespid.control.serve import running_control
from vespid.control.settings import ControlSettings
from vespid.errors import ConfigError


def order(worker_id: int, endpoint: EndpointConfig) -> WorkerOrder:
    """A worker order as the control plane makes one (reports to a port nobody serves)."""
    return WorkerOrder(worker_id, endpoint, report_addr="http://127.0.0.1:9", master_token="t")


async def test_gpus_are_assigned_per_worker_and_returned_on_stop(tmp_path: Path) -> None:
    """Regression: with every GPU taken, a further worker used to start with none (on the
    CPU of a GPU machine); it is refused instead."""
    provider = LocalProvider(tmp_path / "logs", {"CUDA_VISIBLE_DEVICES": "0, 1"})
    endpoint = EndpointConfig(
        name="gpu", template=WorkerTemplate(gpus_per_worker=1, env={"VESPID_LOG_LEVEL": "warning"})
    )
    try:
        first = await provider.start(order(1, endpoint))
        second = await provider.start(order(2, endpoint))
        assert (first.gpus, second.gpus) == (("0",), ("1",))
        assert provider.state(first) is RunState.RUNNING
        with pytest.raises(ConfigError, match="only 0 GPU"):
            await provider.start(order(3, endpoint))
        await provider.stop(first)
        assert provider.state(first) is RunState.EXITED
        third = await provider.start(order(3, endpoint))
        assert third.gpus == ("0",)  # the stopped worker's GPU, handed out again
    finally:
        await provider.close()


async def test_cpu_machine_runs_workers_without_gpus(tmp_path: Path) -> None:
    provider = LocalProvider(tmp_path / "logs", {})
    endpoint = EndpointConfig(name="cpu", template=WorkerTemplate(gpus_per_worker=1))
    try:
        handle = await provider.start(order(1, endpoint))
        assert handle.gpus == ()
    finally:
        await provider.close()


async def test_workers_beyond_the_free_gpus_are_not_started(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: with max_workers above the GPUs, the control plane asked the provider
    for a worker it had to refuse, at every scaling tick. Now the policy's wish is cut to
    what the free GPUs fit, and the shortfall is logged once."""
    settings = ControlSettings(
        host="127.0.0.1", port=0, state_dir=tmp_path / "state", scale_interval_s=0.05,
        log_level="warning", stop_workers_on_exit=True,
    )  # fmt: skip
    environ = {**os.environ, "CUDA_VISIBLE_DEVICES": "0,1"}
    spec = {
        "name": "gpu",
        # 400 workload/s at 100 per worker: the policy wants 4 workers; 2 GPUs fit 2.
        "scaling": {"min_load": 400, "max_workers": 4, "target_util": 1.0},
        "template": {"gpus_per_worker": 1, "env": {"VESPID_LOG_LEVEL": "warning"}},
    }
    caplog.set_level(logging.WARNING, logger="vespid.control")
    async with running_control(settings, environ) as control, aiohttp.ClientSession() as http:
        status, _ = await admin(http, control, "POST", "/api/v0/endpoints", spec)
        assert status == 201

        def both_ready() -> bool:
            workers = control.fleet.workers.values()
            return len(workers) == 2 and all(w.phase is WorkerPhase.READY for w in workers)

        await wait_until(both_ready, timeout_s=60)  # dozens of scaling ticks meanwhile
        assert sorted(w.handle.gpus for w in control.fleet.workers.values()) == [("0",), ("1",)]
        starts = [e for e in control.scaling_log if e["action"] == "start"]
        assert len(starts) == 2
    failed = [r for r in caplog.records if "starting a worker" in r.getMessage()]
    assert failed == []
    short = [r for r in caplog.records if "free GPUs fit" in r.getMessage()]
    assert len(short) == 1
    assert "gpu wants 4 more worker(s) but the free GPUs fit 2" in short[0].getMessage()


def test_the_gpu_ledger_counts_promises_until_settled() -> None:
    """The module docstring's example: 2 free, 1 promised -> 1 free; the provider counts 1
    free once the worker has it and the promise is settled -> still 1, not 0."""
    ledger = GpuLedger()
    assert ledger.free() is None  # not limited by GPUs
    assert ledger.promise(1).gpus == 0  # nothing to hold where GPUs are not counted
    ledger.count(2)
    promise = ledger.promise(1)
    assert ledger.free() == 1
    ledger.count(1)  # the provider took them
    promise.settle()
    promise.settle()  # idempotent
    assert ledger.free() == 1
