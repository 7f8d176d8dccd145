"""Processes that vespid starts (model servers, workers): start, wait until up, stop.

Children run in their own process group and are stopped with SIGTERM, then SIGKILL
after a grace period, so nothing is left behind. A process may instead be started
detached (``WatchedProcess.spawn``: it runs on after this process exits, which an asyncio
child does not: the event loop kills it when it closes), and a process group an earlier
run started may be taken back by its leader's pid and start time
(``WatchedProcess.open``); both are watched through a pidfd and stopped the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, Final

import aiohttp

__all__ = [
    "SAFE_ENV",
    "ChildProcess",
    "WatchedProcess",
    "free_port",
    "proc_stat",
    "process_start_time",
    "safe_environment",
    "same_process",
    "wait_http",
]

# What a child vespid starts (a worker, a model server, a task program) inherits from
# vespid's own environment: where programs, libraries and caches are, and the locale.
# Anything else (tokens, a model path) is named by the one who configures the child (a
# template's env, a preset's env_vars), so vespid's secrets stay its own.
SAFE_ENV: Final = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "LD_LIBRARY_PATH",
    "CUDA_HOME",
    "XDG_CACHE_HOME",
    "HF_HOME",
    "VESPID_CACHE_DIR",
)


def safe_environment(environ: Mapping[str, str], also: Sequence[str] = ()) -> dict[str, str]:
    """The part of ``environ`` a child gets: ``SAFE_ENV``'s variables and ``also``'s."""
    return {name: environ[name] for name in (*SAFE_ENV, *also) if name in environ}


def proc_stat(pid: int | str) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the command name (so ``[0]`` is the state,
    ``[2]`` the process group, ``[19]`` the start time), or None when there is no such
    process or no ``/proc``. Blocking: call it in a thread from the event loop."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    return text.rpartition(b")")[2].split()


def process_start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot, from ``/proc/PID/stat``), or
    None when there is no such process (or no ``/proc``). A pid and this time together
    name one process: a pid reused later has another start time."""
    fields = proc_stat(pid)
    try:
        return int(fields[19]) if fields is not None else None
    except (IndexError, ValueError):
        return None


def same_process(pid: int, started: int) -> bool:
    """Whether ``pid`` is still the process that started at ``started`` (clock ticks, as
    ``process_start_time`` gives it) and has not exited (a zombie, not yet reaped, has).
    Blocking: call it in a thread from the event loop."""
    fields = proc_stat(pid)
    try:
        return fields is not None and fields[0] not in (b"Z", b"X") and int(fields[19]) == started
    except (IndexError, ValueError):
        return False


def _spawn_detached(argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> int:
    """Blocking half of ``WatchedProcess.spawn``: its pid. Not a Popen (which warns when
    collected with the process running) nor an asyncio child (which the loop kills)."""
    with _open_log(log_path) as log:
        return os.posix_spawnp(
            argv[0], list(argv), dict(env), setsid=True,
            file_actions=[(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                          (os.POSIX_SPAWN_DUP2, log.fileno(), 1),
                          (os.POSIX_SPAWN_DUP2, log.fileno(), 2)],
        )  # fmt: skip


def _open_log(path: Path) -> BinaryIO:
    """A child's log, appended to, readable by this user only (a log may quote a request)."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")


def _die_with_parent() -> None:
    """In the child, before exec: ask Linux to SIGTERM it when its parent dies, so a
    crashed control plane leaves no orphan (no-op elsewhere)."""
    if sys.platform != "linux":
        return
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_http(
    url: str, *, timeout_s: float, expect_status: int | None = 200, proc: ChildProcess | None = None
) -> None:
    """Poll ``url`` until it answers (with ``expect_status`` if given); TimeoutError after
    ``timeout_s``; RuntimeError at once if ``proc`` exits first."""
    async with aiohttp.ClientSession() as session:
        async with asyncio.timeout(timeout_s):
            while True:
                if proc is not None and proc.returncode is not None:
                    raise RuntimeError(f"{proc.name} exited with {proc.returncode} while starting")
                try:
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        await resp.read()
                        if expect_status is None or resp.status == expect_status:
                            return
                except (TimeoutError, aiohttp.ClientError):
                    pass
                await asyncio.sleep(0.05)


class ChildProcess:
    """One child process with its output sent to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        die_with_parent: bool = False,
        inherit_env: bool = True,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        # ``inherit_env=False``: ``env`` is the whole environment, nothing of this process's.
        self.env = {**(os.environ if inherit_env else {}), **(env or {})}
        self.log_path = log_path
        self.die_with_parent = die_with_parent
        self._proc: asyncio.subprocess.Process | None = None

    @classmethod
    def python(cls, name: str, *args: str, **kwargs: object) -> ChildProcess:
        """A child running this interpreter: ``python -m ...`` and so on."""
        return cls(name, [sys.executable, *args], **kwargs)  # type: ignore[arg-type]

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def pgid(self) -> int | None:
        """The child's process group (it leads its own session)."""
        return self._proc.pid if self._proc else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    async def start(self) -> None:
        log = await asyncio.to_thread(_open_log, self.log_path) if self.log_path else None
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *self.argv,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log or asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.STDOUT if log else asyncio.subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.die_with_parent else None,
            )
        finally:
            if log is not None:
                log.close()

    async def stop(self, grace_s: float = 5.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``; returns the exit code."""
        proc = self._proc
        if proc is None:
            return None
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(grace_s):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL at once (for fault tests)."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self._proc.pid, signal.SIGKILL)


class WatchedProcess:
    """A process group leader that may outlive this process: one started detached
    (``spawn``) or one an earlier run started, taken back by pid and start time (``open``).

    It is watched through a pidfd, so its exit is seen as it happens and a reused pid is
    never signalled: ``returncode`` is None while it runs and -1 once it has exited (its
    exit status is not kept). ``stop`` and ``kill`` signal its whole group, as
    ``ChildProcess``'s do; ``release`` lets it run on unwatched. Unlike an asyncio child,
    which the event loop kills when it closes, it survives this process. Linux 5.3 or
    later (pidfd).
    """

    def __init__(self, name: str, pid: int, pidfd: int) -> None:
        self.name = name
        self.pid = self.pgid = pid
        self._pidfd: int | None = pidfd
        self._exited = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().add_reader(pidfd, self._on_exit)

    @classmethod
    async def spawn(
        cls, name: str, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path
    ) -> WatchedProcess:
        """Start ``argv`` detached, leading its own session, with ``env`` as its whole
        environment and its output appended to ``log_path``."""
        pid = await asyncio.to_thread(_spawn_detached, argv, env, log_path)
        started = await asyncio.to_thread(process_start_time, pid)
        watched = None if started is None else await cls.open(name, pid, started)
        if watched is None:  # it exited at once; reap it
            await asyncio.to_thread(os.waitpid, pid, 0)
            raise RuntimeError(f"{name} exited at once (see {log_path})")
        return watched

    @classmethod
    async def open(cls, name: str, pid: int, started: int) -> WatchedProcess | None:
        """The process ``pid`` if it still runs and started at ``started``; else None."""
        try:
            pidfd = os.pidfd_open(pid)
        except (OSError, AttributeError):  # gone, or no pidfd on this system
            return None
        # Checked after the pidfd is held: the pidfd names the process whose start time
        # this reads, even if the pid is reused a moment later.
        if not await asyncio.to_thread(same_process, pid, started):
            os.close(pidfd)
            return None
        return cls(name, pid, pidfd)

    def _on_exit(self) -> None:
        self._close_pidfd()
        with contextlib.suppress(ChildProcessError):  # reaped here if it is this one's child
            os.waitpid(self.pid, os.WNOHANG)
        if not self._exited.done():
            self._exited.set_result(None)

    def _close_pidfd(self) -> None:
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None

    @property
    def returncode(self) -> int | None:
        return -1 if self._exited.done() else None

    def _signal_group(self, signum: int) -> None:
        if self._pidfd is not None:  # still running: the group is still this one's
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, signum)

    async def stop(self, grace_s: float = 5.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``; -1 once it exited."""
        self._signal_group(signal.SIGTERM)
        try:
            async with asyncio.timeout(grace_s):
                await asyncio.shield(self._exited)
        except TimeoutError:
            self._signal_group(signal.SIGKILL)
            await asyncio.shield(self._exited)
        return self.returncode

    def kill(self) -> None:
        """SIGKILL the process group at once (for fault tests)."""
        self._signal_group(signal.SIGKILL)

    def release(self) -> None:
        """Stop watching it; it runs on."""
        self._close_pidfd()
