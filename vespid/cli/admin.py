"""The control plane's admin API from the command line: where the admin key is, and one call.

``vespid control`` keeps its admin key in ``STATE_DIR/admin.key`` (``VESPID_STATE_DIR``,
default ``~/.vespid``) unless ``VESPID_ADMIN_KEY`` gives one. ``vespid endpoint ...``
manages endpoints with it, and ``vespid call`` looks an endpoint's API key up with it
when none is given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

import aiohttp

__all__ = ["ADMIN_KEY_ENV", "admin_request", "find_admin_key", "key_file"]

ADMIN_KEY_ENV: Final = "VESPID_ADMIN_KEY"


def key_file() -> Path:
    """Where ``vespid control`` keeps its admin key: ``STATE_DIR/admin.key``."""
    state_dir = Path(os.environ.get("VESPID_STATE_DIR") or Path.home() / ".vespid")
    return state_dir / "admin.key"


def find_admin_key(given: str | None) -> str | None:
    """``given`` (a flag or ``VESPID_ADMIN_KEY``), else the key file's, else None."""
    if given:
        return given
    try:
        return key_file().read_text().strip() or None
    except OSError:
        return None


async def admin_request(
    url: str, key: str, method: str, path: str, body: Any = None, *, timeout_s: float = 30.0
) -> tuple[int, Any]:
    """``(status, JSON answer)`` of one admin API call (``aiohttp.ClientError`` if unreachable)."""
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as http, http.request(
        method, url.rstrip("/") + path, json=body, headers={"Authorization": f"Bearer {key}"},
    ) as resp:  # fmt: skip
        return resp.status, await resp.json(content_type=None)
