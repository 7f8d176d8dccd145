"""How a parked worker puts its model server to sleep and wakes it (``VESPID_SLEEP``).

- ``none``: nothing; the server stays loaded and idle (any backend).
- ``vllm``: ``POST /sleep?level=1`` (weights to CPU memory, the GPU's memory freed) and
  ``POST /wake_up``; vLLM serves these only when started with ``--enable-sleep-mode`` and
  ``VLLM_SERVER_DEV_MODE=1``. Level 2 (weights discarded) is not used: a woken worker
  would need its weights reloaded, which is a cold start.
- ``sglang``: ``POST /release_memory_occupation`` and ``POST /resume_memory_occupation``
  with a JSON body ``{}`` (SGLang started with ``--enable-memory-saver``).
- ``http``: ``POST VESPID_SLEEP_PATH`` and ``POST VESPID_WAKE_PATH`` on the backend.
- ``signal``: SIGSTOP and SIGCONT to ``VESPID_MODEL_PID``'s process group (checked against
  ``VESPID_MODEL_PID_START``): no CPU time while parked, memory kept.

A hook that fails raises ``BackendError`` (a JSON 502 naming what the backend said).
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any, Final, Protocol

import aiohttp

from vespid.errors import BackendError, BackendUnavailable
from vespid.worker.model_process import ModelProcess
from vespid.worker.settings import WorkerSettings

__all__ = ["SleepHook", "make_sleep_hook"]

HOOK_TIMEOUT_S: Final = 300.0  # moving weights between CPU and GPU memory takes a while


class SleepHook(Protocol):
    """Puts the model server to sleep and wakes it."""

    async def sleep(self) -> None: ...

    async def wake(self) -> None: ...


class StayLoaded:
    """``none``: the model server stays loaded and idle."""

    async def sleep(self) -> None:
        return None

    async def wake(self) -> None:
        return None


class HttpHook:
    """POSTs to the backend: one path to sleep, one to wake (vLLM, SGLang, a template's)."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        backend_url: str,
        sleep_path: str,
        wake_path: str,
        body: Any = None,
    ) -> None:
        self._session = session
        self._base = backend_url
        self._sleep_path = sleep_path
        self._wake_path = wake_path
        self._body = body

    async def _post(self, path: str) -> None:
        url = self._base + path
        timeout = aiohttp.ClientTimeout(total=HOOK_TIMEOUT_S)
        try:
            async with self._session.post(url, json=self._body, timeout=timeout) as resp:
                text = (await resp.read()).decode(errors="replace")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise BackendUnavailable(
                f"POST {url} failed: {str(exc) or type(exc).__name__}"
            ) from None
        if resp.status >= 300:
            raise BackendError(f"POST {url} answered {resp.status}: {text[:300]}")

    async def sleep(self) -> None:
        await self._post(self._sleep_path)

    async def wake(self) -> None:
        await self._post(self._wake_path)


class SignalHook:
    """``signal``: SIGSTOP the model server's process group, SIGCONT it to wake."""

    def __init__(self, process: ModelProcess) -> None:
        self._process = process

    async def _send(self, signum: signal.Signals) -> None:
        if not await asyncio.to_thread(self._process.signal_group, signum):
            raise BackendUnavailable(
                f"VESPID_MODEL_PID {self._process.pid} is no longer the model server "
                f"(its start time is not VESPID_MODEL_PID_START {self._process.start_time})"
            )

    async def sleep(self) -> None:
        await self._send(signal.SIGSTOP)

    async def wake(self) -> None:
        await self._send(signal.SIGCONT)


def make_sleep_hook(settings: WorkerSettings, session: aiohttp.ClientSession) -> SleepHook:
    """The hook VESPID_SLEEP names (the settings checked that it has what it needs)."""
    url = settings.backend_url
    match settings.sleep:
        case "vllm":
            return HttpHook(session, url, "/sleep?level=1", "/wake_up")
        case "sglang":
            return HttpHook(
                session, url, "/release_memory_occupation", "/resume_memory_occupation", body={}
            )
        case "http":
            assert settings.sleep_path is not None
            assert settings.wake_path is not None
            return HttpHook(session, url, settings.sleep_path, settings.wake_path)
        case "signal":
            process = ModelProcess.of(settings)
            assert process is not None
            return SignalHook(process)
        case _:
            return StayLoaded()
