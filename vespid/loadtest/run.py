"""``vespid loadtest``'s work as library functions: run, watch, report.

``load_test`` and ``session_test`` open a client, run the plan with an optional
live view, and return the report dict (see ``report.py``); ``save_outputs``
writes it as JSON and as a plot. Files are written outside the event loop by the
caller (the CLI), or in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from vespid.benchmarks.words import preload_words
from vespid.client.client import Client
from vespid.loadtest.payloads import PayloadSource
from vespid.loadtest.plot import write_plot
from vespid.loadtest.report import request_report, session_report, write_json
from vespid.loadtest.runner import LoadPlan, Progress, RequestRun, Run, find_endpoint
from vespid.loadtest.sessions import SessionPlan, SessionRun

__all__ = ["Watch", "load_test", "save_outputs", "session_test"]

# Shows a run's progress until the event is set (see ``display.watch``).
Watch = Callable[[Callable[[], Progress], asyncio.Event], Coroutine[Any, Any, None]]


async def _execute(
    run: Run,
    progress: Callable[[], Progress],
    client: Client,
    *,
    stop: asyncio.Event | None,
    watch: Watch | None,
    sample_workers: bool,
) -> None:
    endpoint = await find_endpoint(client, run.endpoint_name)  # no live view for a typo
    done = asyncio.Event()
    watcher = asyncio.create_task(watch(progress, done)) if watch is not None else None
    try:
        await run.execute(client, stop=stop, sample_workers=sample_workers, endpoint=endpoint)
    finally:
        done.set()
        if watcher is not None:
            await watcher


async def load_test(
    *,
    url: str,
    api_key: str,
    plan: LoadPlan,
    payloads: PayloadSource,
    source: str = "",
    stop: asyncio.Event | None = None,
    watch: Watch | None = None,
    sample_workers: bool = True,
    **client_options: Any,
) -> dict[str, Any]:
    """Send ``plan``'s requests through the control plane at ``url``; the report."""
    await preload_words()  # generated prompts read the shipped word list: not on the loop
    run = RequestRun(plan, payloads)
    async with Client(url, api_key, timeout_s=plan.timeout_s, **client_options) as client:
        await _execute(
            run, run.progress, client, stop=stop, watch=watch, sample_workers=sample_workers
        )
    return request_report(run, source=source)


async def session_test(
    *,
    url: str,
    api_key: str,
    plan: SessionPlan,
    stop: asyncio.Event | None = None,
    watch: Watch | None = None,
    sample_workers: bool = True,
    **client_options: Any,
) -> dict[str, Any]:
    """Open, hold and close ``plan``'s sessions; the report."""
    run = SessionRun(plan)
    async with Client(url, api_key, timeout_s=plan.open_timeout_s, **client_options) as client:
        await _execute(
            run, run.progress, client, stop=stop, watch=watch, sample_workers=sample_workers
        )
    return session_report(run)


def save_outputs(
    report: dict[str, Any], *, json_path: Path | None = None, plot_path: Path | None = None
) -> None:
    """Write the report as JSON and its plot (.html or .svg), where asked (blocking I/O)."""
    if json_path is not None:
        write_json(report, json_path)
    if plot_path is not None:
        write_plot(report, plot_path)
