"""One HTTP exchange at a time: a call to the control plane, or one envelope to one worker.

Nothing here retries or waits between tries (``vespid.client.dispatch`` decides
that). A control-plane call raises ``ControlFailed`` when the failure is worth
another try (unreachable, 408, 5xx); a worker POST returns ``Failed`` instead of
a non-2xx ``Response``. Workers get the JSON envelope and nothing else: no API
key, no cookies (the HTTP session has no jar), no redirects followed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import aiohttp
import orjson

from vespid.client.errors import ClientError, RequestTimeout, WorkerError, WorkerUnavailable
from vespid.client.response import Response
from vespid.client.retry import Deadline, Limits, describe_body, is_retryable
from vespid.protocol.wire import dumps
from vespid.web import JSON_HEADERS

__all__ = ["ControlFailed", "Failed", "Transport", "parse_body", "worker_path"]


# How much of a non-JSON error body is kept for messages.
_TEXT_LIMIT: Final = 2000


@dataclass(frozen=True, slots=True)
class Failed:
    """One worker attempt that did not give a 2xx answer."""

    url: str
    status: int | None  # None: the worker could not be reached or vanished
    body: Any
    problem: str

    @property
    def retryable(self) -> bool:
        return self.status is None or is_retryable(self.status)

    def error(self, path: str, attempts: int, advice: str | None = None) -> ClientError:
        """The error to raise when this failure is the last one."""
        if self.status is None:
            return WorkerUnavailable(
                f"no worker answered POST {path} in {attempts} attempt(s); last: {self.url}: "
                f"{self.problem}. "
                + (
                    advice
                    or "The endpoint may have no live worker: retry later, or raise max_attempts"
                ),
                url=self.url,
                attempts=attempts,
            )
        tried = f" (gave up after {attempts} attempts)" if attempts > 1 else ""
        return WorkerError(
            f"worker {self.url} answered {self.status} to POST {path}{tried}: {self.problem}"
            + (f". {advice}" if advice else ""),
            status=self.status,
            body=self.body,
            url=self.url,
            attempts=attempts,
        )


class ControlFailed(Exception):
    """A control-plane call worth trying again: unreachable, 408 or 5xx."""

    def __init__(self, problem: str, status: int | None = None, body: Any = None) -> None:
        super().__init__(problem)
        self.status = status
        self.body = body


def parse_body(raw: bytes, content_type: str) -> Any:
    """An error body for messages: JSON if it is JSON, else (truncated) text."""
    if "json" in content_type or raw.lstrip()[:1] in (b"{", b"["):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    text = raw[:_TEXT_LIMIT].decode("utf-8", "replace")
    return text if len(raw) <= _TEXT_LIMIT else text + "..."


def worker_path(path: str) -> str:
    """``path`` as the worker gets it: always starting with a slash."""
    return path if path.startswith("/") else "/" + path


class Transport:
    """Single HTTP exchanges over the client's session (``http()`` gives it, or raises
    ``ClientError`` while the client is not open), bounded by ``limits``."""

    def __init__(self, http: Callable[[], aiohttp.ClientSession], limits: Limits) -> None:
        self._http = http
        self.limits = limits

    async def control(
        self,
        method: str,
        url: str,
        key: str,
        *,
        deadline: Deadline,
        params: dict[str, str] | None = None,
        body: Any = None,
    ) -> tuple[int, Any]:
        """One call to the control plane: (status, parsed body); ``ControlFailed`` if
        unreachable or answering 408/5xx; ``RequestTimeout`` once the deadline passed."""
        headers = {"Authorization": f"Bearer {key}"}
        if body is not None:
            headers.update(JSON_HEADERS)
        wait_s = self.limits.control_timeout_s
        try:
            async with asyncio.timeout(min(wait_s, deadline.remaining_s())):
                async with self._http().request(
                    method,
                    url,
                    params=params,
                    data=None if body is None else dumps(body),
                    headers=headers,
                    allow_redirects=False,
                ) as resp:
                    status, raw, ctype = resp.status, await resp.read(), resp.content_type
        except aiohttp.ClientError as exc:
            raise ControlFailed(f"{url} unreachable: {type(exc).__name__}: {exc}") from None
        except TimeoutError:
            if deadline.remaining_s() <= 0:
                raise RequestTimeout(
                    f"no answer within timeout_s={deadline.timeout_s:g} s "
                    f"(waiting on {url}); raise the timeout or retry later",
                    timeout_s=deadline.timeout_s,
                ) from None
            raise ControlFailed(f"{url} did not answer within {wait_s:g} s") from None
        parsed = parse_body(raw, ctype)
        if status == 408 or status >= 500:
            raise ControlFailed(f"{url} answered {status}: {describe_body(parsed)}", status, parsed)
        return status, parsed

    async def post(
        self,
        worker_url: str,
        path: str,
        envelope: dict[str, Any],
        *,
        auth_data: dict[str, Any],
        stream: bool,
        deadline: Deadline,
        attempts: int,
    ) -> Response | Failed:
        """POST one envelope to one worker. With ``stream`` a 2xx answer is handed over
        unread; anything else is read and released here."""
        url = worker_url.rstrip("/") + worker_path(path)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.limits.connect_timeout_s)
        resp: aiohttp.ClientResponse | None = None
        handed_off = False
        try:
            async with asyncio.timeout(deadline.remaining_s()):
                resp = await self._http().post(
                    url,
                    data=dumps(envelope),
                    headers=JSON_HEADERS,
                    timeout=timeout,
                    allow_redirects=False,
                )
                ok = 200 <= resp.status < 300
                raw = None if stream and ok else await resp.read()
        except aiohttp.ClientError as exc:
            return Failed(worker_url, None, None, f"{type(exc).__name__}: {exc}")
        except TimeoutError:
            raise RequestTimeout(
                f"no answer from worker {url} within timeout_s={deadline.timeout_s:g} s "
                f"(attempt {attempts}); raise the timeout or retry later",
                timeout_s=deadline.timeout_s,
                url=url,
            ) from None
        else:
            if not ok:
                body = parse_body(raw or b"", resp.content_type)
                return Failed(worker_url, resp.status, body, describe_body(body))
            handed_off = raw is None
            return Response(
                status=resp.status,
                headers=resp.headers,
                content_type=resp.content_type,
                charset=resp.charset,
                worker_url=worker_url,
                auth_data=auth_data,
                attempts=attempts,
                body=raw,
                raw=resp if raw is None else None,
                idle_timeout_s=deadline.timeout_s,
            )
        finally:
            if resp is not None and not handed_off:
                resp.release()
