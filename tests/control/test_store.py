"""The SQLite store under cancellation: a query a cancelled caller started still owns the
connection until it ends, so closing the store never pulls it from under the query."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from tests.support.waiting import wait_until
from vespid.control.store import SQLiteStore


async def test_close_waits_for_a_query_whose_caller_was_cancelled(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "vespid.db")
    await store.set_meta("k", "v")  # opens the connection
    started, release = threading.Event(), threading.Event()

    def pause() -> int:
        started.set()
        release.wait(timeout=30)
        return 1

    conn = store._conn
    assert conn is not None
    conn.create_function("pause", 0, pause)
    query = asyncio.ensure_future(store._run("SELECT pause()"))
    await wait_until(started.is_set, timeout_s=10)
    query.cancel()
    closing = asyncio.ensure_future(store.close())
    for _ in range(20):
        await asyncio.sleep(0)
    # The paused query still holds the connection, which close() has not taken from it.
    assert (closing.done(), store._conn is None) == (False, False)
    release.set()
    await asyncio.wait_for(closing, timeout=30)
    assert store._conn is None
    with pytest.raises(asyncio.CancelledError):  # the caller still learns it was cancelled
        await query
