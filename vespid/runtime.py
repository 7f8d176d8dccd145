"""Running a vespid process: its event loop, its stop signals, and a bad setting as an exit.

Shared by the ``vespid`` commands and by the PyWorker compatibility layer, so it
imports nothing of either: ``run_async`` runs a main coroutine on uvloop when it
is installed (else asyncio's loop); ``on_stop_signals`` and ``stop_event`` turn
SIGINT and SIGTERM into a callback or an event; ``exit_on_config_error`` makes a
``ConfigError`` one line on stderr (``name: message``) and exit code 2;
``serve_until_signalled`` puts the three together for a server.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, Final

from vespid.errors import ConfigError

__all__ = [
    "CONFIG_ERROR_EXIT",
    "STOP_SIGNALS",
    "exit_on_config_error",
    "on_stop_signals",
    "run_async",
    "serve_until_signalled",
    "stop_event",
]

STOP_SIGNALS: Final = (signal.SIGINT, signal.SIGTERM)
# The exit code of a process that refused its settings.
CONFIG_ERROR_EXIT: Final = 2


def run_async(main: Callable[[], Coroutine[Any, Any, Any]]) -> None:
    """Run ``main()`` to its end on a new event loop (uvloop's when installed)."""
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())


def on_stop_signals(callback: Callable[[], None]) -> None:
    """Call ``callback`` on the running loop whenever SIGINT or SIGTERM arrives."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, callback)


def stop_event() -> asyncio.Event:
    """An event that SIGINT or SIGTERM sets (made on the running loop)."""
    stop = asyncio.Event()
    on_stop_signals(stop.set)
    return stop


@contextmanager
def exit_on_config_error(name: str) -> Iterator[None]:
    """A ``ConfigError`` raised inside becomes ``name: message`` on stderr and exit code 2."""
    try:
        yield
    except ConfigError as exc:
        print(f"{name}: {exc}", file=sys.stderr, flush=True)
        sys.exit(CONFIG_ERROR_EXIT)


def serve_until_signalled(
    name: str, serve: Callable[[asyncio.Event], Coroutine[Any, Any, None]]
) -> None:
    """Run ``serve(stop)`` until SIGINT or SIGTERM sets ``stop``; a ConfigError raised on
    the way up is one line on stderr and exit code 2."""

    async def main() -> None:
        await serve(stop_event())

    with exit_on_config_error(name):
        run_async(main)
