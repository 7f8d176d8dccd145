"""An endpoint: its name and key, and the two things one does with it.

``request`` sends one payload to a worker the router picks; ``session`` reserves
one worker for a series of requests. Both go through the client's ``Dispatcher``
(see ``vespid.client.dispatch``), which the endpoint is given when it is made.
"""

from __future__ import annotations

from typing import Any, Final

from vespid.client.dispatch import Dispatcher, Target
from vespid.client.response import Response
from vespid.client.session import Session

__all__ = ["DEFAULT_COST", "Endpoint"]

DEFAULT_COST: Final = 100.0


class Endpoint:
    """One endpoint: its name, its key (kept out of ``repr``), and requests to it.

    Made by ``Client`` (``get_endpoint``, ``list_endpoints``, ``endpoint``), which
    gives it the dispatcher and the key to route with.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        name: str,
        *,
        api_key: str,
        id: Any = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.id = id
        self.info = info or {}
        """The listing entry, without its API key."""
        self._dispatcher = dispatcher
        self._target = Target(name, api_key)

    def __repr__(self) -> str:
        return f"<Endpoint {self.name!r} id={self.id!r}>"

    @property
    def api_key(self) -> str:
        """The key routes are asked with: the endpoint's own, else the client's."""
        return self._target.api_key

    async def request(
        self,
        path: str,
        payload: Any,
        *,
        cost: float = DEFAULT_COST,
        stream: bool = False,
        timeout_s: float | None = None,
        max_attempts: int | None = None,
    ) -> Response:
        """Send ``payload`` to ``path`` on a worker the router picks.

        ``cost`` is the request's workload (e.g. max tokens). With ``stream=True``
        the answer is returned once its headers arrive; read it with
        ``iter_chunks()``, ``iter_events()`` or ``iter_text()``. A non-2xx final
        answer raises ``WorkerError``.
        """
        return await self._dispatcher.request(
            self._target,
            path,
            payload,
            cost=cost,
            stream=stream,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
        )

    def session(
        self,
        cost: float = DEFAULT_COST,
        lifetime: float = 60.0,
        on_close_route: str | None = None,
        on_close_payload: dict[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
        max_attempts: int | None = None,
    ) -> Session:
        """A session on one worker, opened by ``async with`` (or ``await .open()``).

        ``lifetime`` is in seconds past the last use; ``on_close_route`` gets
        ``on_close_payload`` plus ``session_id`` when the session ends.
        """
        return Session(
            self._dispatcher,
            self._target,
            cost=cost,
            lifetime=lifetime,
            on_close_route=on_close_route,
            on_close_payload=on_close_payload,
            timeout_s=timeout_s,
            max_attempts=max_attempts,
        )
