"""The control plane's state directory is private: the directory and everything directly in
it (``vespid.db`` and its ``-wal`` and ``-shm``, ``admin.key``) hold the router's key, the
secrets workers' keys derive from and the admin key, so only the owner may read them.

``secure_state_dir`` runs at every start, before the store opens: it makes the directory
(mode 700) if missing, refuses one owned by another user (a ``ConfigError`` naming
``VESPID_STATE_DIR``), and narrows anything looser than 700 (directories) or 600 (files),
logging one warning for each thing it fixed. ``create_private`` makes a file 600 from its
first byte; SQLite gives the ``-wal`` and ``-shm`` files it creates the database's mode.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import Final

from vespid.errors import ConfigError

__all__ = ["DIR_MODE", "FILE_MODE", "create_private", "secure_state_dir", "write_private"]

log = logging.getLogger("vespid.control")

DIR_MODE: Final = 0o700
FILE_MODE: Final = 0o600


def secure_state_dir(path: Path) -> list[Path]:
    """Make ``path`` private (see the module docstring); the paths whose mode it narrowed."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        raise ConfigError(
            f"VESPID_STATE_DIR {path} belongs to user {info.st_uid}, not to this one "
            f"({os.getuid()}); use a directory of your own: it holds the control plane's keys"
        )
    fixed = [path] if _narrow(path, info.st_mode, DIR_MODE) else []
    for entry in path.iterdir():
        entry_info = entry.lstat()
        if stat.S_ISLNK(entry_info.st_mode) or entry_info.st_uid != os.getuid():
            continue  # not ours to change; a link's target is not in the state dir
        private = DIR_MODE if stat.S_ISDIR(entry_info.st_mode) else FILE_MODE
        if _narrow(entry, entry_info.st_mode, private):
            fixed.append(entry)
    return fixed


def _narrow(path: Path, mode: int, private: int) -> bool:
    """Take away what ``mode`` gives beyond ``private``; whether anything was."""
    loose = stat.S_IMODE(mode) & ~private
    if not loose:
        return False
    log.warning(
        "%s was readable or writable by others (mode %o); now %o: it holds the control "
        "plane's secrets",
        path, stat.S_IMODE(mode), stat.S_IMODE(mode) & private,
    )  # fmt: skip
    path.chmod(stat.S_IMODE(mode) & private)
    return True


def create_private(path: Path) -> bool:
    """Create ``path`` empty with mode 600 unless it exists; whether it was created."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, mode 600 before the text is in it (and made so if the
    file was looser). Blocking: call it in a thread from the event loop."""
    create_private(path)
    path.chmod(FILE_MODE)
    path.write_text(text)
