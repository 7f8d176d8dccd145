"""The live view of a run: a rich progress bar on a terminal, plain lines elsewhere.

``watch(progress, done, stream=..., tty=...)`` redraws ``progress()`` four times
a second with rich while ``stream`` is a terminal; otherwise (a pipe, a CI log)
it writes one plain line every ``PLAIN_EVERY_S`` seconds and a last one at the
end, such as::

    [  10.0 s] 20/40 ok 19, failed 0, in flight 2, p50 412 ms, 1.9 req/s, workers 1 ready / 1
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Final, TextIO

from vespid.loadtest.runner import Progress

__all__ = ["PLAIN_EVERY_S", "plain_line", "watch"]

PLAIN_EVERY_S: Final = 5.0
RICH_EVERY_S: Final = 0.25


def plain_line(p: Progress) -> str:
    return f"[{p.elapsed_s:7.1f} s] {p.done}/{p.total} {p.text}"


async def _tick(done: asyncio.Event, every_s: float) -> bool:
    """Wait ``every_s`` or until ``done``; True while not done."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(every_s):
            await done.wait()
    return not done.is_set()


async def watch(
    progress: Callable[[], Progress],
    done: asyncio.Event,
    *,
    stream: TextIO,
    tty: bool,
    title: str = "loadtest",
) -> None:
    """Show ``progress()`` on ``stream`` until ``done`` is set, then once more."""
    if not tty:
        while await _tick(done, PLAIN_EVERY_S):
            print(plain_line(progress()), file=stream, flush=True)
        print(plain_line(progress()), file=stream, flush=True)
        return
    from rich import progress as rp
    from rich.console import Console

    bar = rp.Progress(
        rp.TextColumn(f"[bold]{title}"),
        rp.BarColumn(),
        rp.MofNCompleteColumn(),
        rp.TimeElapsedColumn(),
        rp.TextColumn("{task.fields[stats]}", markup=False),
        console=Console(file=stream),
        auto_refresh=False,
    )
    first = progress()
    task = bar.add_task(title, total=first.total, stats=first.text)
    with bar:
        while True:
            p = progress()
            bar.update(task, completed=p.done, total=p.total, stats=p.text)
            bar.refresh()
            if not await _tick(done, RICH_EVERY_S):
                break
        p = progress()
        bar.update(task, completed=p.done, total=p.total, stats=p.text)
        bar.refresh()
