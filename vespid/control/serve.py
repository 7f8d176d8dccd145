"""Running the control plane: a private state directory, store, provider, HTTP server
(guarded by ``vespid.guard``: header, line and connection limits, header and body
deadlines), autoscaler; clean stop."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

from aiohttp import web

from vespid.control.app import ControlPlane
from vespid.control.providers.base import Provider
from vespid.control.providers.local import LocalProvider
from vespid.control.providers.ray import RayProvider
from vespid.control.settings import ControlSettings
from vespid.control.state_dir import secure_state_dir
from vespid.control.store import SQLiteStore
from vespid.guard import GuardedRunner

__all__ = ["running_control", "serve_control"]

log = logging.getLogger("vespid.control")


def make_provider(settings: ControlSettings, environ: Mapping[str, str]) -> Provider:
    """The provider ``VESPID_PROVIDER`` names."""
    logs = settings.state_dir / "logs"
    if settings.provider == "ray":
        # A Ray instance started here listens where the control plane does (127.0.0.1 by
        # default); on all addresses, Ray picks the node's own.
        host = None if settings.host in ("0.0.0.0", "::", "") else settings.host
        return RayProvider(
            logs, address=settings.ray_address, local_host=host, namespace=settings.ray_namespace
        )
    return LocalProvider(logs, environ)


@asynccontextmanager
async def running_control(
    settings: ControlSettings, environ: Mapping[str, str]
) -> AsyncIterator[ControlPlane]:
    """A control plane serving on its port until the block exits (then all workers stop).
    A start-up that fails (a ConfigError from the endpoints file, say) leaves no socket or
    database open behind it."""
    await asyncio.to_thread(secure_state_dir, settings.state_dir)
    store = SQLiteStore(settings.state_dir / "vespid.db")
    control = ControlPlane(settings, store, make_provider(settings, environ))
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((settings.host, settings.port))
        host, port = sock.getsockname()[:2]
        try:
            await control.open(f"http://{host}:{port}")
        except BaseException:
            await store.close()
            raise
        runner = GuardedRunner(
            control.build_app(), control.limits, control.malformed, access_log=None
        )
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
            control.start_autoscaler()
            yield control
        finally:
            await runner.cleanup()
            await control.close()


async def serve_control(
    settings: ControlSettings, environ: Mapping[str, str], stop: asyncio.Event
) -> None:
    async with running_control(settings, environ) as control:
        log.info("vespid control listening on %s (admin key in %s)", control.url,
                 settings.state_dir / "admin.key")  # fmt: skip
        await stop.wait()
