"""Task programs as processes: what they inherit, how they are started (a plain command
or ``docker run``), their event stream on stdout, their stderr to the log, and ending
them with every process they started (through ``vespid.tasks.group``) however they
end. Also the start-up probes for GPUs (nvidia-smi) and Docker."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import orjson

from vespid.servers.process import safe_environment
from vespid.tasks.events import TaskEvent, parse_line
from vespid.tasks.group import end_group, group_runs
from vespid.tasks.presets import TaskPreset

__all__ = [
    "CONTAINER_MODEL_PATH",
    "DOCKER_ENV",
    "MAX_LINE_BYTES",
    "STOP_GRACE_S",
    "TaskProcess",
    "detect_docker",
    "detect_gpus",
    "docker_argv",
    "exit_description",
    "inherited_environment",
    "start_program",
]

log = logging.getLogger("vespid.tasks")
program_log = logging.getLogger("vespid.task")  # the programs' own stderr

STOP_GRACE_S: Final = 5.0  # SIGTERM, then SIGKILL this much later
DETECT_TIMEOUT_S: Final = 10.0
MAX_LINE_BYTES: Final = 8 * 1024 * 1024
EVENT_BUFFER: Final = 256  # events read ahead of the client; then the program waits
LOGGED_LINE_CHARS: Final = 2000
CONTAINER_MODEL_PATH: Final = "/models"

# What a task program inherits beyond every child's safe variables: how to reach Docker.
DOCKER_ENV: Final = ("DOCKER_HOST", "DOCKER_CONFIG", "DOCKER_CONTEXT")


def inherited_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The part of ``environ`` a task program gets (``SAFE_ENV`` and ``DOCKER_ENV``)."""
    return safe_environment(environ, DOCKER_ENV)


async def _run_briefly(argv: Sequence[str], timeout_s: float) -> tuple[int | None, str]:
    """Run a short command; (exit code, stdout) or (None, why it did not run)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        return None, exc.strerror or str(exc)
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return None, f"no answer within {timeout_s:g} s"
    if proc.returncode != 0:
        lines = err.decode(errors="replace").strip().splitlines()
        return proc.returncode, lines[0] if lines else f"exit code {proc.returncode}"
    return 0, out.decode(errors="replace")


async def detect_gpus(nvidia_smi: str = "nvidia-smi") -> list[str]:
    """The GPU indices nvidia-smi lists; none when it is missing or fails."""
    code, out = await _run_briefly(
        [nvidia_smi, "--query-gpu=index", "--format=csv,noheader"], DETECT_TIMEOUT_S
    )
    if code != 0:
        log.info("no GPU found (%s: %s); tasks run without GPU_DEVICE", nvidia_smi, out)
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


async def detect_docker(cli: str) -> tuple[bool, str]:
    """Whether ``cli`` reaches a Docker engine, and its version or why not."""
    code, out = await _run_briefly(
        [cli, "info", "--format", "{{.ServerVersion}}"], DETECT_TIMEOUT_S
    )
    if code == 0:
        return True, out.strip()
    return False, out


def docker_argv(
    cli: str, preset: TaskPreset, device: str | None, name: str, env_names: Sequence[str]
) -> list[str]:
    """``docker run`` for one task. Variables are named with ``-e NAME`` only: their
    values travel in the CLI's environment, not on its command line."""
    image = preset.inference.docker_image
    assert image is not None
    argv = [cli, "run", "--rm", "-i", "--init", "--name", name]
    if device is not None:
        argv += ["--gpus", f"device={device}"]
    if preset.model_path is not None:
        argv += ["-v", f"{preset.model_path}:{CONTAINER_MODEL_PATH}:ro"]
    for env_name in env_names:
        argv += ["-e", env_name]
    return [*argv, image, *(preset.inference.command or ())]


def exit_description(code: int | None) -> str:
    if code is None:
        return "stopped"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


class _ExitProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """asyncio's protocol for a process's pipes, which also tells when the program itself
    has exited: ``Process.wait`` waits for its pipes to close as well, and a child that
    holds them would put that off for as long as the child lives."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit=limit, loop=loop)
        self.exited = asyncio.Event()

    def process_exited(self) -> None:
        super().process_exited()
        self.exited.set()


async def start_program(
    argv: Sequence[str], *, env: Mapping[str, str], cwd: Path | None
) -> tuple[asyncio.subprocess.Process, asyncio.Event]:
    """Start a task program in a session (so a process group) of its own, with pipes on
    stdin, stdout (lines up to ``MAX_LINE_BYTES``) and stderr. Returns the process and
    an event set once the program has exited. OSError when it cannot start."""
    loop = asyncio.get_running_loop()
    transport, protocol = await loop.subprocess_exec(
        lambda: _ExitProtocol(MAX_LINE_BYTES, loop),
        *argv,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    return asyncio.subprocess.Process(transport, protocol, loop), protocol.exited


class TaskProcess:
    """One running task program: its pipes, its event queue and its GPU."""

    def __init__(
        self,
        preset: TaskPreset,
        device: str | None,
        proc: asyncio.subprocess.Process,
        exited: asyncio.Event,
        *,
        task_id: str,
        container: tuple[str, str] | None,
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        self.preset = preset
        self.device = device
        self.pid = proc.pid  # and its process group's id: it leads a session of its own
        self.container = container  # (docker CLI, container name) under Docker
        self.events: asyncio.Queue[TaskEvent | None] = asyncio.Queue(EVENT_BUFFER)
        self.idle_watch: asyncio.Task[None] | None = None
        self._proc = proc
        self._exited = exited  # set by start_program once the program has exited
        self._grace_s = stop_grace_s
        self._fields = {"model": preset.name, "task_id": task_id, "pid": proc.pid}
        self._readers = (
            asyncio.create_task(self._read_events()),
            asyncio.create_task(self._read_log()),
        )
        self._ended = asyncio.create_task(self._end_leftovers())

    @property
    def alive(self) -> bool:
        return self._proc.returncode is None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode

    def send(self, payload: Mapping[str, Any], *, last: bool) -> None:
        """Write one task's input as a JSON line; ``last`` closes stdin after it.

        Nothing waits for the program to read it: the pipe transport buffers the line,
        and a program that has died is noticed by the end of its stdout.
        """
        stdin = self._proc.stdin
        assert stdin is not None
        if stdin.is_closing():
            return
        stdin.write(orjson.dumps(payload) + b"\n")
        if last:
            stdin.close()

    async def _read_events(self) -> None:
        stdout = self._proc.stdout
        assert stdout is not None
        while True:
            try:
                line = await stdout.readline()
            except ValueError:  # over the limit: readline dropped what it had
                await self.events.put(
                    TaskEvent.make(
                        "log",
                        level="error",
                        message=f"task printed a line over {MAX_LINE_BYTES} bytes; dropped",
                    )
                )
                continue
            if not line:
                break
            event = parse_line(line)
            if event is not None:
                await self.events.put(event)
        await self.events.put(None)

    async def _read_log(self) -> None:
        stderr = self._proc.stderr
        assert stderr is not None
        while True:
            try:
                line = await stderr.readline()
            except ValueError:
                continue
            if not line:
                return
            text = line.decode(errors="replace").rstrip()
            if text:
                program_log.info("%s", text[:LOGGED_LINE_CHARS], extra={"fields": self._fields})

    def drop_stale(self) -> None:
        """Drop what a session program printed while idle (but keep the end of stdout)."""
        while not self.events.empty():
            if self.events.get_nowait() is None:
                self.events.put_nowait(None)
                return

    async def wait_exit(self, timeout_s: float) -> bool:
        """After its finish: let a one-off program end by itself (its later events dropped),
        and what it started with it; False when it has not within ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                while (event := await self.events.get()) is not None:
                    log.warning(
                        "event after finish dropped: %s",
                        event.type,
                        extra={"fields": self._fields},
                    )
                await asyncio.shield(self._ended)
        except TimeoutError:
            return False
        return True

    async def exit_code(self) -> int | None:
        """The program's exit code, once it has exited (its children may live on)."""
        await self._exited.wait()
        return self._proc.returncode

    async def _end_leftovers(self) -> None:
        """Once the program has exited, end what is left of its process group: its
        children do not outlive it (SIGTERM, SIGKILL after the grace)."""
        code = await self.exit_code()
        if await asyncio.to_thread(group_runs, self.pid):
            log.warning(
                "task program %s and left processes running; ending them",
                exit_description(code),
                extra={"fields": self._fields},
            )
            await end_group(self.pid, self._grace_s)

    async def stop(self) -> int | None:
        """End the program and its whole process group: SIGTERM, then SIGKILL to what is
        left after the grace. Returns once every member is gone; idempotent."""
        proc = self._proc
        if proc.returncode is None:
            last = await end_group(self.pid, self._grace_s)
            if last is signal.SIGKILL and self.container is not None:
                # A killed `docker run` leaves its container behind.
                cli, name = self.container
                await _run_briefly([cli, "rm", "-f", name], DETECT_TIMEOUT_S)
        try:
            async with asyncio.timeout(self._grace_s):
                await self._exited.wait()
        except TimeoutError:  # only after SIGKILL: stuck in the kernel, or not ours to kill
            log.error("task program %d does not go away", proc.pid, extra={"fields": self._fields})
        else:  # what is left of its group: ended within twice the grace
            await asyncio.shield(self._ended)
        for task in (*self._readers, self._ended):
            task.cancel()
        await asyncio.gather(*self._readers, self._ended, return_exceptions=True)
        return proc.returncode
