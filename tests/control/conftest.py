"""Control-plane fixtures: a real ``vespid control`` in this process, local-process workers."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.worker.conftest import blockbuster, no_leaked_tasks  # noqa: F401
from vespid.control.app import ControlPlane
from vespid.control.serve import running_control
from vespid.control.settings import ControlSettings

MakeControl = Callable[..., Awaitable[ControlPlane]]


@pytest.fixture
async def make_control(tmp_path: Path) -> AsyncIterator[MakeControl]:
    """Factory: start a control plane with a fresh (or given) state dir."""
    async with AsyncExitStack() as stack:

        async def make(state_dir: Path | None = None, **settings: Any) -> ControlPlane:
            s = ControlSettings(
                host="127.0.0.1",
                port=0,
                state_dir=state_dir or tmp_path / "state",
                scale_interval_s=0.1,
                log_level="warning",
                **{"stop_workers_on_exit": True, **settings},  # a test leaves no process
            )
            return await stack.enter_async_context(running_control(s, os.environ))

        yield make


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def admin(
    http: aiohttp.ClientSession, control: ControlPlane, method: str, path: str, body: Any = None
) -> tuple[int, Any]:
    async with http.request(
        method, control.url + path, json=body,
        headers={"Authorization": f"Bearer {control.admin_key}"},
    ) as resp:  # fmt: skip
        return resp.status, await resp.json()
