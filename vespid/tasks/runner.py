"""Running task programs: the GPU pool and its queue, one process per task or session.

A task gets one slot of the pool: a GPU (``VESPID_GPUS``, or every GPU nvidia-smi
lists) or, on a machine without GPUs, the one CPU slot. Its program starts in a
process group of its own, with the preset's ``env_vars`` and vespid's variables
(``MODEL_NAME``, ``MODEL_PATH``, ``GPU_DEVICE``, ``TASK_ID``, ``TASK_METADATA``), and
reads the task's input as one JSON line on stdin. With a Docker engine (found once,
at start) and a ``docker_image``, the program is ``docker run --rm -i --gpus
device=N IMAGE [command]``; otherwise it is the preset's ``command``. Its stdout is
read as events (see ``vespid.tasks.events``); its stderr goes to the log.

A task ends at its ``finish`` event. A one-off program then has ``EXIT_GRACE_S`` to
exit before it is stopped; a session program (``session: true``) stays, holding its
GPU, and takes the next task for its model on stdin, until it has been idle for
``session_idle_s`` or its GPU is needed by another model. Vespid writes the
``finish`` itself when the program exits without one (``reason: exited``, with its
exit code) or runs past its timeout (``reason: timeout``); either way, and when the
client goes away, the program's process group gets SIGTERM, then SIGKILL after
``stop_grace_s`` (``VESPID_TASK_STOP_GRACE_S``). Whenever the program exits, what is
left of its group is ended the same way, and the task (its GPU, its answer) is done
only once nothing of the group runs.

When every slot is busy a task waits in a FIFO queue of at most
``VESPID_TASK_QUEUE_SIZE`` places; a task that finds the queue full, or waits longer
than ``MAX_WAIT_TIME``, is refused with 429.

The module is long for one concern: a task program's life from its GPU slot to its
finish. ``TaskRunner`` (slots, processes, sessions) and ``RunningTask`` (one task's
events and end) each drive the other's half of it, so they stay together.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, Final

import orjson

from vespid.errors import BackendUnavailable, NotFound, NotReady, RequestInvalid
from vespid.tasks.events import TaskEvent
from vespid.tasks.metrics import TaskMetrics
from vespid.tasks.pool import GpuPool, Lease
from vespid.tasks.presets import Presets, TaskPreset
from vespid.tasks.process import (
    CONTAINER_MODEL_PATH,
    STOP_GRACE_S,
    TaskProcess,
    detect_docker,
    detect_gpus,
    docker_argv,
    exit_description,
    inherited_environment,
    start_program,
)

__all__ = ["EXIT_GRACE_S", "RunningTask", "TaskRunner"]

log = logging.getLogger("vespid.tasks")

EXIT_GRACE_S: Final = 10.0  # how long a one-off program may take to exit after its finish
MAX_METADATA_BYTES: Final = 16 * 1024
MAX_INPUT_DEPTH: Final = 254  # the deepest JSON that orjson writes (it reads 1024)


class TaskRunner:
    """Starts task programs for the models in a presets file, one slot each."""

    def __init__(
        self,
        presets: Presets,
        *,
        gpus: Sequence[str] | None,
        queue_size: int,
        max_wait_s: float,
        timeout_s: float,
        docker_cli: str,
        environ: Mapping[str, str],
        stop_grace_s: float = STOP_GRACE_S,
    ) -> None:
        self.presets = presets
        self.timeout_s = timeout_s
        self.stop_grace_s = stop_grace_s
        self.metrics = TaskMetrics()
        self.gpus: list[str] = []
        self.docker = False  # a Docker engine answered at start
        self._gpus = None if gpus is None else list(gpus)
        self._queue_size = queue_size
        self._max_wait_s = max_wait_s
        self._docker_cli = docker_cli
        self._inherited = inherited_environment(environ)
        self._live: set[TaskProcess] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._started = False
        self.pool: GpuPool

    async def start(self) -> None:
        """Find the GPUs and the Docker engine, once."""
        self.gpus = self._gpus if self._gpus is not None else await detect_gpus()
        self.pool = GpuPool(
            self.gpus or [None],
            queue_size=self._queue_size,
            max_wait_s=self._max_wait_s,
            on_park=self._watch,
            on_take=self._unwatch,
            metrics=self.metrics,
        )
        self.metrics.slots.set(len(self.pool.devices))
        self._started = True
        if self.presets.needs_docker and self._docker_cli:
            self.docker, about = await detect_docker(self._docker_cli)
            if self.docker:
                log.info("Docker engine %s found (%s)", about, self._docker_cli)
            else:
                log.warning("no Docker engine (%s info: %s)", self._docker_cli, about)
        for preset in self.presets.models.values():
            how = self.runs_as(preset)
            if how is None:
                log.warning(
                    "model %s has only a docker_image and there is no Docker engine: "
                    "its tasks will be refused with 503",
                    preset.name,
                )
            elif how == "process" and preset.inference.docker_image:
                log.warning("model %s runs its command as a plain process (no Docker)", preset.name)
        log.info(
            "task runner ready",
            extra={
                "fields": {
                    "models": ",".join(self.presets.models),
                    "gpus": ",".join(self.gpus) or "none",
                    "docker": self.docker,
                }
            },
        )

    def runs_as(self, preset: TaskPreset) -> str | None:
        """``docker``, ``process``, or None when this machine cannot run the preset."""
        if preset.inference.docker_image and self.docker:
            return "docker"
        if preset.inference.command:
            return "process"
        return None

    def task(self, model: str, payload: Mapping[str, Any]) -> RunningTask:
        """One task, to be entered with ``async with``; NotFound for an unknown model."""
        preset = self.presets.models.get(model)
        if preset is None:
            known = ", ".join(sorted(self.presets.models))
            raise NotFound(f"no task model {model!r}; known: {known}", model=model)
        try:
            orjson.dumps(payload)  # it is sent on as one JSON line
        except TypeError:
            raise RequestInvalid(
                f"the task input is nested more than {MAX_INPUT_DEPTH} levels deep "
                "(arrays and objects); flatten it",
                fields={"payload": "too deep"},
            ) from None
        metadata = payload.get("metadata")
        if metadata is not None:
            if not isinstance(metadata, dict):
                raise RequestInvalid(
                    "metadata must be a JSON object", fields={"metadata": "not an object"}
                )
            if len(orjson.dumps(metadata)) > MAX_METADATA_BYTES:
                raise RequestInvalid(
                    f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON",
                    fields={"metadata": "too large"},
                )
        return RunningTask(self, preset, payload)

    def track(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``coro`` beside the requests; ``close`` waits for it."""
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def spawn(self, preset: TaskPreset, device: str | None, task: RunningTask) -> TaskProcess:
        """Start the preset's program on ``device``; BackendUnavailable when it cannot."""
        how = self.runs_as(preset)
        docker = how == "docker"
        env = {"MODEL_NAME": preset.name}
        if preset.model_path is not None:
            env["MODEL_PATH"] = CONTAINER_MODEL_PATH if docker else str(preset.model_path)
        env.update(preset.inference.env_vars)
        env["GPU_DEVICE"] = device or ""
        if device is not None and not docker:
            env["CUDA_VISIBLE_DEVICES"] = device
        env["TASK_ID"] = task.id
        metadata = task.payload.get("metadata")
        if metadata is not None:
            env["TASK_METADATA"] = orjson.dumps(metadata).decode()
        container = None
        if docker:
            container = (self._docker_cli, f"vespid-{preset.name}-{task.id}")
            argv = docker_argv(self._docker_cli, preset, device, container[1], sorted(env))
            cwd = None
        else:
            argv = list(preset.inference.command or ())
            cwd = preset.directory
        try:
            proc, exited = await start_program(argv, env={**self._inherited, **env}, cwd=cwd)
        except OSError as exc:
            raise BackendUnavailable(
                f"model {preset.name!r}: the task program could not start: {exc}"
            ) from None
        process = TaskProcess(
            preset,
            device,
            proc,
            exited,
            task_id=task.id,
            container=container,
            stop_grace_s=self.stop_grace_s,
        )
        self._live.add(process)
        self.metrics.started.labels(preset.name).inc()
        log.info(
            "task program started",
            extra={
                "fields": {
                    "model": preset.name,
                    "task_id": task.id,
                    "pid": proc.pid,
                    "gpu": device if device is not None else "none",
                    "as": how,
                }
            },
        )
        return process

    async def retire(self, process: TaskProcess) -> None:
        """Stop a program for good (its slot stays with the caller)."""
        await process.stop()
        self._live.discard(process)

    def _watch(self, process: TaskProcess) -> None:
        process.idle_watch = self.track(self._idle_watch(process))

    def _unwatch(self, process: TaskProcess) -> None:
        if process.idle_watch is not None:
            process.idle_watch.cancel()
            process.idle_watch = None

    async def _idle_watch(self, process: TaskProcess) -> None:
        """An idle session program: log what it prints; stop it when it has been idle too
        long or has exited. Cancelled when a task takes it."""
        idle_s = process.preset.inference.session_idle_s
        exited = False
        try:
            async with asyncio.timeout(idle_s):
                while (event := await process.events.get()) is not None:
                    log.warning("idle session program printed %s; dropped", event.type)
                exited = True
        except TimeoutError:
            pass
        # No await since the end of stdout was read: a task cannot have taken it meanwhile.
        if not self.pool.unpark(process):
            return
        process.idle_watch = None
        if exited:
            why = f"it {exit_description(await process.exit_code())} while idle"
        else:
            why = f"idle for {idle_s:g} s"
        log.info("session program for %s stopped: %s", process.preset.name, why)
        await self.retire(process)
        self.pool.release(process.device)

    async def close(self) -> None:
        """Stop every program, running or idle, and wait for the cleanups."""
        idle = self.pool.idle if self._started else []
        for process in idle:
            self.pool.unpark(process)
            self._unwatch(process)
        await asyncio.gather(*(self.retire(p) for p in list(self._live)))
        for process in idle:
            self.pool.release(process.device)
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


class RunningTask:
    """One task from its slot to its finish: ``async with runner.task(...) as task``.

    Entering waits for a slot and starts (or reuses) the program, raising an
    HTTPFacingError before anything is sent to the client; ``next_event`` then gives
    the task's events up to and including its finish; leaving parks a session
    program or stops the program, and frees the slot.
    """

    def __init__(self, runner: TaskRunner, preset: TaskPreset, payload: Mapping[str, Any]):
        self.id = secrets.token_hex(8)
        self.preset = preset
        self.payload = payload
        self.finish: TaskEvent | None = None
        self.process: TaskProcess | None = None
        self._runner = runner
        self._lease: Lease | None = None
        self._evicting: asyncio.Task[None] | None = None
        self._finished_by_program = False
        self._started = 0.0
        self._deadline = 0.0

    async def __aenter__(self) -> RunningTask:
        runner = self._runner
        if runner.runs_as(self.preset) is None:
            raise NotReady(
                f"model {self.preset.name!r} needs Docker (it has a docker_image and no "
                "command) and no Docker engine was found at start",
                reason="no_docker",
            )
        self._lease = lease = await runner.pool.acquire(self.preset.name)
        self._started = time.monotonic()
        timeout_s = self.preset.inference.timeout_s or runner.timeout_s
        self._deadline = asyncio.get_running_loop().time() + timeout_s
        try:
            if lease.evict is not None:
                log.info("stopping idle session of %s for %s", lease.evict.preset.name, self.id)
                self._evicting = runner.track(runner.retire(lease.evict))
                await asyncio.shield(self._evicting)
            if lease.process is not None:
                self.process = lease.process
                self.process.drop_stale()
            else:
                self.process = await runner.spawn(self.preset, lease.device, self)
            self.process.send(self.payload, last=not self.preset.inference.session)
        except BaseException:
            await asyncio.shield(runner.track(self._clean()))
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Shielded: a second cancellation cannot leave the program running or the GPU taken.
        await asyncio.shield(self._runner.track(self._clean()))

    async def next_event(self) -> TaskEvent | None:
        """The next event, ending with the finish (the program's or vespid's); then None."""
        if self.finish is not None:
            return None
        process = self.process
        assert process is not None
        event: TaskEvent | None = None
        try:
            async with asyncio.timeout_at(self._deadline):
                event = await process.events.get()
                code = await process.exit_code() if event is None else None
        except TimeoutError:
            timeout_s = self.preset.inference.timeout_s or self._runner.timeout_s
            return await self.fail(
                "timeout", f"no finish within {timeout_s:g} s; the task was killed"
            )
        if event is None:
            fields: dict[str, Any] = {"exit_code": code} if code is not None else {}
            return self._end(
                TaskEvent.make(
                    "finish",
                    status="failed",
                    reason="exited",
                    message=f"the task {exit_description(code)} before its finish event",
                    **fields,
                ),
                reason="exited",
            )
        if event.is_finish:
            self._finished_by_program = True
            return self._end(event)
        return event

    async def fail(self, reason: str, message: str) -> TaskEvent:
        """End the task on vespid's side: stop its program and every process it started
        (a session's too: it is mid-task), and record a failed finish."""
        assert self.process is not None
        await self.process.stop()
        finish = TaskEvent.make("finish", status="failed", reason=reason, message=message)
        return self._end(finish, reason=reason)

    def _end(self, finish: TaskEvent, *, reason: str = "") -> TaskEvent:
        """Record the finish; ``reason`` is vespid's (a program's own stays out of the
        metric labels, which must stay few)."""
        self.finish = finish
        status = str(finish.data["status"])
        seconds = time.monotonic() - self._started
        self._runner.metrics.tasks.labels(self.preset.name, status, reason).inc()
        self._runner.metrics.duration.labels(self.preset.name).observe(seconds)
        log.info(
            "task finished",
            extra={
                "fields": {
                    "model": self.preset.name,
                    "task_id": self.id,
                    "status": status,
                    "reason": reason or "-",
                    "s": round(seconds, 3),
                }
            },
        )
        return finish

    async def _clean(self) -> None:
        """Park a session program that finished, else stop the program; free the slot."""
        runner, process, lease = self._runner, self.process, self._lease
        if lease is None:
            return
        if self.finish is None:
            runner.metrics.tasks.labels(self.preset.name, "cancelled", "").inc()
        if process is None:
            if self._evicting is not None:  # the slot is free once its last program is gone
                await self._evicting
            runner.pool.release(lease.device)
            return
        if self._finished_by_program and process.alive:
            if self.preset.inference.session:
                runner.pool.park(process)
                return
            await process.wait_exit(EXIT_GRACE_S)
        await runner.retire(process)
        runner.pool.release(lease.device)
