"""The control plane's secrets: made on first start, kept in the store, and who presents which.

On first start the control plane makes the router's RSA key (it signs routes for workers
that check RSA), the report secret (each worker's report token derives from it and the
worker's id: the worker gets it as ``MASTER_TOKEN``, sends it as ``mtoken`` in its reports
and accepts it on ``/pyworker/update``, so a worker can speak for itself only), the
request secret (each worker's HMAC key derives from it and the worker's id), the CA
certificate Vast's client downloads, and the admin key (unless ``VESPID_ADMIN_KEY`` sets
one); later starts load the same ones, so workers and clients keep working across a
restart. The admin key is also written to ``STATE_DIR/admin.key`` (mode 600) for the CLI.
A state database that had to be made anew beside an existing ``admin.key`` (it was
deleted) is logged in one line: every key is new.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from vespid.control.settings import ControlSettings
from vespid.control.state_dir import write_private
from vespid.control.store import Store
from vespid.control.tls import make_ca_pem
from vespid.protocol.signing import (
    generate_private_key,
    hmac_tag,
    load_private_key,
    private_key_pem,
    public_key_pem,
    worker_request_key,
)
from vespid.web import bearer_token

__all__ = ["ControlKeys", "load_keys", "presented_key"]

log = logging.getLogger("vespid.control")


@dataclass(frozen=True)
class ControlKeys:
    """The secrets one control plane holds (see the module docstring)."""

    router_key: RSAPrivateKey
    public_key_pem: bytes
    report_secret: bytes
    request_secret: bytes
    admin_key: str
    ca_pem: bytes

    def worker_key(self, worker_id: int) -> bytes:
        """The HMAC key of one worker: routes to it are tagged with it."""
        return worker_request_key(self.request_secret, worker_id)

    def worker_token(self, worker_id: int) -> str:
        """The report token of one worker (its ``MASTER_TOKEN``): a PRF of the report
        secret and its id, so it authenticates that worker's reports and no other's."""
        tag = hmac_tag(self.report_secret, b"vespid-worker-report-token-v1\n%d" % worker_id)
        return base64.urlsafe_b64encode(tag).decode().rstrip("=")


async def load_keys(store: Store, settings: ControlSettings) -> ControlKeys:
    """The keys kept in ``store``, made there first if this is the first start."""
    pem = await store.meta_or_create(
        "router_key", lambda: private_key_pem(generate_private_key()).decode()
    )
    router_key = load_private_key(pem.encode())
    report_secret = await store.meta_or_create("report_secret", lambda: secrets.token_urlsafe(32))
    request_secret = await store.meta_or_create("request_secret", lambda: secrets.token_urlsafe(32))
    ca_pem = await store.meta_or_create("ca_pem", make_ca_pem)
    admin_key = settings.admin_key or await store.meta_or_create(
        "admin_key", lambda: secrets.token_urlsafe(24)
    )
    key_file = settings.state_dir / "admin.key"
    if store.fresh and await asyncio.to_thread(key_file.exists):
        log.warning(
            "the state database in %s was missing: new keys were made (router key, worker "
            "secrets%s); clients and workers holding the old ones must get the new ones",
            settings.state_dir, "" if settings.admin_key else ", admin key",
        )  # fmt: skip
    await asyncio.to_thread(_write_admin_key, key_file, admin_key)
    return ControlKeys(
        router_key=router_key,
        public_key_pem=public_key_pem(router_key),
        report_secret=report_secret.encode(),
        request_secret=request_secret.encode(),
        admin_key=admin_key,
        ca_pem=ca_pem.encode(),
    )


def _write_admin_key(path: Path, admin_key: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    write_private(path, admin_key + "\n")


def presented_key(request: web.Request) -> str | None:
    """The key a caller presents: ``Authorization: Bearer <key>``, else ``?api_key=``
    (the console API and ``/route/`` accept both, as Vast's do)."""
    return bearer_token(request) or request.query.get("api_key")
