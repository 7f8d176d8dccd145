"""The router's public key for the worker's signature checks.

The key comes from ``VESPID_PUBLIC_KEY_FILE`` at start, or is fetched from
``REPORT_ADDR`` + ``/pubkey/`` with backoff (0.2 s, doubling, at most 10 s between
rounds). An HMAC request key (``VESPID_REQUEST_KEY``) needs neither, so requests
tagged with it are checked from the start. An unsecured worker has no verifier.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import aiohttp
from cryptography.hazmat.primitives.asymmetric import rsa

from vespid.errors import ConfigError, NotReady
from vespid.protocol.signing import Verifier, load_public_key
from vespid.protocol.wire import PUBKEY_PATH
from vespid.worker.settings import WorkerSettings

__all__ = ["RouterKey"]

log = logging.getLogger("vespid.worker")

FETCH_TIMEOUT_S: Final = 10.0
FIRST_RETRY_S: Final = 0.2
LAST_RETRY_S: Final = 10.0


class RouterKey:
    """The verifier (None when unsecured) and where its RSA key comes from."""

    def __init__(self, settings: WorkerSettings) -> None:
        self.verifier: Verifier | None = None
        if not settings.unsecured:
            self.verifier = Verifier(
                None,
                own_url=settings.public_url,
                request_key=settings.request_key_bytes,
                accept_vast=settings.accept_vast_signatures,
            )
        self.addresses = settings.report_addr
        self.loaded = asyncio.Event()
        if settings.public_key_file is not None:
            try:
                pem = settings.public_key_file.read_bytes()
            except OSError as exc:
                raise ConfigError(f"VESPID_PUBLIC_KEY_FILE: cannot read ({exc})") from None
            self.use(load_public_key(pem, "VESPID_PUBLIC_KEY_FILE"))

    @property
    def missing(self) -> bool:
        """Whether signatures are checked but the RSA key is not loaded yet."""
        return self.verifier is not None and self.verifier.public_key is None

    def use(self, key: rsa.RSAPublicKey) -> None:
        if self.verifier is not None:
            self.verifier.public_key = key
        self.loaded.set()

    async def wait_loaded(self, timeout_s: float) -> None:
        """Return once the key is loaded; NotReady (503) after ``timeout_s``."""
        try:
            async with asyncio.timeout(timeout_s):
                await self.loaded.wait()
        except TimeoutError:
            raise NotReady("the router's public key is not loaded yet; retry") from None

    async def fetch(self, http: aiohttp.ClientSession) -> None:
        """Fetch the key from the first address that gives it, retrying with backoff."""
        delay_s = FIRST_RETRY_S
        while True:
            for addr in self.addresses:
                if await self._fetch_from(http, addr):
                    return
            await asyncio.sleep(delay_s)
            delay_s = min(delay_s * 2, LAST_RETRY_S)

    async def _fetch_from(self, http: aiohttp.ClientSession, addr: str) -> bool:
        url = addr + PUBKEY_PATH
        try:
            async with http.get(url, timeout=aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)) as resp:
                pem = await resp.read()
                if resp.status == 200:
                    self.use(load_public_key(pem, url))
                    log.info("router public key loaded from %s", addr)
                    return True
                log.warning("%s answered %d", url, resp.status)
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            log.warning("fetching the public key from %s failed: %s", addr, exc)
        return False
