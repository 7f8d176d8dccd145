"""The control plane's state: endpoints, keys, counters, rollouts and the workers it started.

``Store`` is the interface; ``SQLiteStore`` keeps everything in one SQLite file
(the default), so a restart keeps endpoints, the router's signing key, the request
counters, each endpoint's rollout (``rollouts.py`` says what a row holds; it goes with
its endpoint), and the workers it started: each one's ``WorkerHandle`` (endpoint, url,
start time, GPUs, template revision, and the provider's ``info``: pids and their start
times for the local provider) and whether it was draining, enough for the next run to
adopt it as it was or stop what is left of it. SQLite calls run in a worker thread,
never on the event loop.

The file is created with mode 600 (``state_dir.create_private``; SQLite gives its
``-wal`` and ``-shm`` the same). A file that is not a database, or a stored endpoint
that no longer validates, is a ``ConfigError`` naming the file (and the endpoint and
field), which stops start-up with one line.
"""

from __future__ import annotations

import abc
import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from vespid.control.models import EndpointConfig
from vespid.control.providers.base import WorkerHandle
from vespid.control.state_dir import create_private
from vespid.errors import ConfigError, RequestInvalid

__all__ = ["SQLiteStore", "Store"]


class Store(abc.ABC):
    """Where the control plane keeps what must survive a restart."""

    # True once the store found nothing kept (a first start, or its file was deleted).
    fresh: bool = False

    @abc.abstractmethod
    async def endpoints(self) -> list[EndpointConfig]: ...

    @abc.abstractmethod
    async def put_endpoint(self, endpoint: EndpointConfig) -> None: ...

    @abc.abstractmethod
    async def delete_endpoint(self, name: str) -> bool: ...

    @abc.abstractmethod
    async def get_meta(self, key: str) -> str | None: ...

    @abc.abstractmethod
    async def set_meta(self, key: str, value: str) -> None: ...

    async def meta_or_create(self, key: str, make: Callable[[], str]) -> str:
        """The value kept under ``key``; on first use, ``make()``'s, kept from then on."""
        value = await self.get_meta(key)
        if value is None:
            value = make()
            await self.set_meta(key, value)
        return value

    @abc.abstractmethod
    async def put_worker(self, handle: WorkerHandle) -> None:
        """Keep (or update) a worker this control plane started."""

    @abc.abstractmethod
    async def delete_worker(self, worker_id: str) -> None: ...

    @abc.abstractmethod
    async def workers(self) -> list[WorkerHandle]:
        """The workers kept, as their handles were put (a row kept by a version of
        vespid before handles were: its ``info`` alone, with no url)."""

    @abc.abstractmethod
    async def set_draining(self, worker_id: int, draining: bool) -> None:
        """Keep whether a kept worker is draining (taken out of routing)."""

    @abc.abstractmethod
    async def draining(self) -> set[int]:
        """The ids of the kept workers that were draining."""

    @abc.abstractmethod
    async def put_rollout(self, endpoint: str, row: dict[str, Any]) -> None:
        """Keep (or replace) an existing endpoint's rollout; nothing if it is gone."""

    @abc.abstractmethod
    async def rollouts(self) -> dict[str, Any]:
        """The kept rollouts by endpoint, each row as put (None if it is not JSON)."""

    async def close(self) -> None:
        return None


_SCHEMA = """
CREATE TABLE IF NOT EXISTS endpoints (name TEXT PRIMARY KEY, config TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS workers (
    worker_id TEXT PRIMARY KEY, endpoint TEXT NOT NULL, info TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rollouts (endpoint TEXT PRIMARY KEY, state TEXT NOT NULL);
"""


class SQLiteStore(Store):
    """One SQLite file; one connection used from one thread at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = asyncio.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.fresh = create_private(self.path)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(_SCHEMA)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    async def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        def work() -> list[tuple[Any, ...]]:
            try:
                return self._connect().execute(sql, args).fetchall()
            except sqlite3.DatabaseError as exc:
                raise ConfigError(
                    f"state database {self.path} cannot be read ({exc}); restore it, or move "
                    "it aside to start afresh with new keys"
                ) from None

        async with self._lock:
            # The query runs to its end in its thread even when the caller is cancelled (a
            # stop of the control plane cancels the autoscaler's tasks mid-write), and the
            # lock is held until it has: close() must never close the connection under a
            # query still running, which crashes the process inside SQLite.
            job = asyncio.ensure_future(asyncio.to_thread(work))
            try:
                return await asyncio.shield(job)
            except asyncio.CancelledError:
                await asyncio.wait({job})
                if not job.cancelled():
                    job.exception()  # nobody waits for it any more: retrieved, not raised
                raise

    async def endpoints(self) -> list[EndpointConfig]:
        rows = await self._run("SELECT name, config FROM endpoints ORDER BY name")
        return [self._load_endpoint(str(name), config) for name, config in rows]

    def _load_endpoint(self, name: str, config: str) -> EndpointConfig:
        try:
            return EndpointConfig.model_validate_json(config)
        except ValidationError as exc:
            error = RequestInvalid.from_validation(exc, f"stored endpoint {name!r}")
            raise ConfigError(
                f"{self.path}: {error.message}; delete it with: sqlite3 {self.path} "
                f"\"DELETE FROM endpoints WHERE name = '{name}'\" (and create it again)"
            ) from None

    async def put_endpoint(self, endpoint: EndpointConfig) -> None:
        await self._run(
            "INSERT INTO endpoints (name, config) VALUES (?, ?) "
            "ON CONFLICT(name) DO UPDATE SET config = excluded.config",
            (endpoint.name, endpoint.model_dump_json()),
        )

    async def delete_endpoint(self, name: str) -> bool:
        """Delete an endpoint and its rollout (so one created later under the same name
        starts without it)."""
        await self._run("DELETE FROM rollouts WHERE endpoint = ?", (name,))
        rows = await self._run("DELETE FROM endpoints WHERE name = ? RETURNING name", (name,))
        return bool(rows)

    async def get_meta(self, key: str) -> str | None:
        rows = await self._run("SELECT value FROM meta WHERE key = ?", (key,))
        return str(rows[0][0]) if rows else None

    async def set_meta(self, key: str, value: str) -> None:
        await self._run(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    async def put_worker(self, handle: WorkerHandle) -> None:
        await self._run(
            "INSERT INTO workers (worker_id, endpoint, info) VALUES (?, ?, ?) "
            "ON CONFLICT(worker_id) DO UPDATE SET info = excluded.info",
            (str(handle.worker_id), handle.endpoint, json.dumps(_handle_row(handle))),
        )

    async def delete_worker(self, worker_id: str) -> None:
        await self._run("DELETE FROM workers WHERE worker_id = ?", (worker_id,))

    async def workers(self) -> list[WorkerHandle]:
        rows = await self._run("SELECT worker_id, endpoint, info FROM workers")
        return [_row_handle(int(r[0]), str(r[1]), json.loads(r[2])) for r in rows]

    async def set_draining(self, worker_id: int, draining: bool) -> None:
        await self._run(
            "UPDATE workers SET info = json_set(info, '$.draining', json(?)) "
            "WHERE worker_id = ? AND json_valid(info)",
            ("true" if draining else "false", str(worker_id)),
        )

    async def draining(self) -> set[int]:
        rows = await self._run(
            "SELECT worker_id FROM workers "
            "WHERE json_valid(info) AND json_extract(info, '$.draining') = 1"
        )
        return {int(r[0]) for r in rows}

    async def put_rollout(self, endpoint: str, row: dict[str, Any]) -> None:
        await self._run(
            "INSERT INTO rollouts (endpoint, state) SELECT ?, ? "
            "WHERE EXISTS (SELECT 1 FROM endpoints WHERE name = ?) "
            "ON CONFLICT(endpoint) DO UPDATE SET state = excluded.state",
            (endpoint, json.dumps(row), endpoint),
        )

    async def rollouts(self) -> dict[str, Any]:
        rows = await self._run("SELECT endpoint, state FROM rollouts ORDER BY endpoint")
        return {str(name): _json_or_none(state) for name, state in rows}

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await asyncio.to_thread(conn.close)


def _handle_row(handle: WorkerHandle) -> dict[str, Any]:
    """What the workers table keeps of a handle, beside its id and endpoint."""
    return {
        "url": handle.url,
        "started_at": handle.started_at,
        "gpus": list(handle.gpus),
        "revision": handle.revision,
        "info": handle.info,
    }


def _row_handle(worker_id: int, endpoint: str, row: Any) -> WorkerHandle:
    """A kept row as a handle; an older row (the provider's info alone) has no url, and
    a row that is not a JSON object is kept as empty info (nothing to adopt or stop)."""
    row = row if isinstance(row, dict) else {}
    if "info" not in row or not isinstance(row["info"], dict):
        return WorkerHandle(worker_id, endpoint, url="", started_at=0.0, info=row)
    gpus, started_at, revision = row.get("gpus"), row.get("started_at"), row.get("revision")
    return WorkerHandle(
        worker_id,
        endpoint,
        url=str(row.get("url", "")),
        started_at=float(started_at) if isinstance(started_at, int | float) else 0.0,
        gpus=tuple(str(g) for g in gpus) if isinstance(gpus, list) else (),
        info=row["info"],
        revision=revision if isinstance(revision, int) else 0,
    )


def _json_or_none(text: str) -> Any:
    """``text`` parsed as JSON; None if it is not JSON."""
    try:
        return json.loads(text)
    except ValueError:
        return None
