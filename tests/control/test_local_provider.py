"""The local provider hands out GPUs from CUDA_VISIBLE_DEVICES and takes them back."""

from __future__ import annotations

from pathlib import Path

import pytest

from vespid.control.models import EndpointConfig, WorkerTemplate
from vespid.control.providers.base import RunState
from vespid.control.providers.local import LocalProvider
from vespid.errors import ConfigError


async def test_gpus_are_assigned_per_worker_and_returned_on_stop(tmp_path: Path) -> None:
    """Regression: with every GPU taken, a further worker used to start with none (on the
    CPU of a GPU machine); it is refused instead."""
    provider = LocalProvider(tmp_path / "logs", {"CUDA_VISIBLE_DEVICES": "0, 1"})
    endpoint = EndpointConfig(
        name="gpu", template=WorkerTemplate(gpus_per_worker=1, env={"VESPID_LOG_LEVEL": "warning"})
    )
    try:
        first = await provider.start(
            1, endpoint, report_addr="http://127.0.0.1:9", master_token="t"
        )
        second = await provider.start(
            2, endpoint, report_addr="http://127.0.0.1:9", master_token="t"
        )
        assert (first.gpus, second.gpus) == (("0",), ("1",))
        assert provider.state(first) is RunState.RUNNING
        with pytest.raises(ConfigError, match="only 0 GPU"):
            await provider.start(3, endpoint, report_addr="http://127.0.0.1:9", master_token="t")
        await provider.stop(first)
        assert provider.state(first) is RunState.EXITED
        third = await provider.start(
            3, endpoint, report_addr="http://127.0.0.1:9", master_token="t"
        )
        assert third.gpus == ("0",)  # the stopped worker's GPU, handed out again
    finally:
        await provider.close()


async def test_cpu_machine_runs_workers_without_gpus(tmp_path: Path) -> None:
    provider = LocalProvider(tmp_path / "logs", {})
    endpoint = EndpointConfig(name="cpu", template=WorkerTemplate(gpus_per_worker=1))
    try:
        handle = await provider.start(
            1, endpoint, report_addr="http://127.0.0.1:9", master_token="t"
        )
        assert handle.gpus == ()
    finally:
        await provider.close()
