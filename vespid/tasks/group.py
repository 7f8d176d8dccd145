"""A task program's process group: whether any of it still runs, and ending all of it.

A task program starts in a session (and so a process group) of its own, whose id is
its pid. The children it starts, and theirs, stay in that group unless they leave it
on purpose (``setsid``, ``setpgid``, a daemonising double fork into a new session):
vespid ends every member of the group, and cannot see or stop a process that left it.

A member that has exited but is not reaped yet (a zombie, which is what an orphan stays
under a PID 1 that does not reap, as in many containers) no longer runs: it counts as
gone. On Linux this is read from ``/proc``; elsewhere any member, zombie or not, counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from typing import Final

from vespid.servers.process import proc_stat

__all__ = ["GROUP_POLL_S", "end_group", "group_runs", "signal_group", "wait_group_gone"]

log = logging.getLogger("vespid.tasks")

GROUP_POLL_S: Final = 0.02  # how often a group that is being ended is looked at again
_GONE_STATES: Final = (b"Z", b"X")  # zombie, dead


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to every member of group ``pgid``; nothing when it has none."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def group_runs(pgid: int) -> bool:
    """Whether some member of group ``pgid`` still runs (zombies do not count).

    Blocking (it reads ``/proc``): call it in a thread.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member that changed its user: there, and beyond reach
        return True
    try:
        entries = os.scandir("/proc")
    except OSError:  # no /proc: the signal found a member
        return True
    with entries:
        return any(_runs_in(entry.name, pgid) for entry in entries if entry.name.isdigit())


def _runs_in(pid: str, pgid: int) -> bool:
    """Whether process ``pid`` is in group ``pgid`` and not a zombie."""
    fields = proc_stat(pid)  # None: gone meanwhile
    return (
        fields is not None
        and len(fields) > 2
        and fields[2] == str(pgid).encode()
        and fields[0] not in _GONE_STATES
    )


async def wait_group_gone(pgid: int, timeout_s: float) -> bool:
    """Wait until no member of group ``pgid`` runs; False when some still does after
    ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            while await asyncio.to_thread(group_runs, pgid):  # noqa: ASYNC110 - no event says a group emptied
                await asyncio.sleep(GROUP_POLL_S)
    except TimeoutError:
        return False
    return True


async def end_group(pgid: int, grace_s: float) -> signal.Signals | None:
    """End every member of group ``pgid``: SIGTERM, then SIGKILL to what is left after
    ``grace_s``. Returns the last signal it had to send (None: nothing ran).

    A member still running ``grace_s`` after SIGKILL (stuck in the kernel, or of
    another user) is logged and left: nothing more can be done about it from here.
    """
    sent: signal.Signals | None = None
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if sent is None and not await asyncio.to_thread(group_runs, pgid):
            return None
        signal_group(pgid, sig)
        sent = sig
        if await wait_group_gone(pgid, grace_s):
            return sent
    log.error("process group %d still runs %g s after SIGKILL; left as it is", pgid, grace_s)
    return sent
