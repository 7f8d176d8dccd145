"""Fixtures for the examples: a real redis-server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as redis
from blockbuster import BlockBuster

from tests.control.conftest import http, make_control  # noqa: F401
from tests.worker.conftest import blockbuster, no_leaked_tasks  # noqa: F401
from vespid.servers.process import ChildProcess, free_port


@pytest.fixture
async def redis_url(tmp_path: Path, blockbuster: BlockBuster) -> AsyncIterator[str]:  # noqa: F811
    """A real redis-server (Debian's package, installed by `make test`)."""
    # Exemption: redis-py reads its own version from package metadata (file system
    # calls) each time it opens a connection.
    for function in blockbuster.functions.values():
        function.can_block_in("redis/utils.py", "get_lib_version")
    binary = await asyncio.to_thread(shutil.which, "redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed; `make test` installs it (apt-get)")
    port = free_port()
    server = ChildProcess(
        "redis-server",
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path)],
        log_path=tmp_path / "redis.log",
    )  # fmt: skip
    await server.start()
    url = f"redis://127.0.0.1:{port}"
    client = redis.from_url(url)
    try:
        async with asyncio.timeout(15):
            while True:
                try:
                    if await client.ping():
                        break
                except redis.ConnectionError:
                    await asyncio.sleep(0.05)
        yield url
    finally:
        await client.aclose()
        await server.stop()
